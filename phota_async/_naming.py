"""Output names for batches: one distinct base name per input, whatever the inputs are called.

An input's outputs are written as ``{base}-{index}.{ext}``. Because the index and extension
never contain ``-``, a file name determines its ``(base, index, ext)`` by splitting from the
right, so distinct bases give distinct files for every index. Bases are compared casefolded
(macOS and Windows folders ignore case). Pure functions: no I/O.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Collection, Sequence
from pathlib import Path

# File systems cap a name at 255 bytes; keep room for "~" + a 10-digit counter, "-3" and ".webp".
MAX_BASE_BYTES = 200


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _fit(base: str, origin: str) -> str:
    """``base`` cut to ``MAX_BASE_BYTES`` bytes, with a digest of ``origin`` when it was cut."""
    raw = base.encode("utf-8", "surrogateescape")
    if len(raw) <= MAX_BASE_BYTES and base not in ("", ".", ".."):
        return base
    cut = raw[: MAX_BASE_BYTES - 9].decode("utf-8", "ignore")
    return f"{cut}~{_digest(origin)}"


def _origin(value: object, index: int) -> str:
    if isinstance(value, Path):
        return str(value.absolute())
    if isinstance(value, str):
        return value
    return f"item-{index}"


def _short(value: object, index: int) -> str:
    if isinstance(value, Path):
        return value.stem or value.name
    if isinstance(value, str):
        return f"url-{_digest(value)}"
    return f"item-{index}"


def _long(value: object, index: int) -> str:
    return value.name if isinstance(value, Path) else _short(value, index)


def output_bases(values: Sequence[object], taken: Collection[str] = ()) -> list[str]:
    """A distinct base name per input, stable for the same inputs in the same order.

    A photo's stem is used when no other input shares it (``p00.jpg`` -> ``p00``); stems that
    clash fall back to the whole file name (``photo.png``), then to the name plus a digest of
    the absolute path (``x.jpg~1a2b3c4d`` for ``a/x.jpg`` and ``b/x.jpg``); any clash left
    (adversarial names) gets a ``~N`` counter. URLs get ``url-<digest>``; other inputs
    ``item-<index>``.

    Args:
        values: the inputs, in order.
        taken: bases already used by other inputs (planned in an earlier run), casefolded.

    Returns:
        One base per input, casefolded-distinct from each other and from ``taken``.
    """
    used = set(taken)
    shorts = [_fit(_short(v, i), _origin(v, i)) for i, v in enumerate(values)]
    short_count = Counter(s.casefold() for s in shorts)
    candidates = []
    for i, value in enumerate(values):
        short = shorts[i]
        if short_count[short.casefold()] == 1 and short.casefold() not in used:
            candidates.append(short)
        else:
            candidates.append(_fit(_long(value, i), _origin(value, i)))
    long_count = Counter(c.casefold() for c in candidates)
    for i, value in enumerate(values):
        if candidates[i] != shorts[i] and (
            long_count[candidates[i].casefold()] > 1 or candidates[i].casefold() in used
        ):
            origin = _origin(value, i)
            cut = _fit(candidates[i], origin)
            candidates[i] = _fit(f"{cut}~{_digest(origin)}", origin)
    bases = []
    for candidate in candidates:
        base, n = candidate, 1
        while base.casefold() in used:
            n += 1
            base = f"{candidate}~{n}"
        used.add(base.casefold())
        bases.append(base)
    return bases


def output_name(base: str, index: int, ext: str) -> str:
    """The file name of output ``index`` of the input whose base is ``base``."""
    return f"{base}-{index}.{ext}"
