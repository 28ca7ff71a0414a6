"""Keeping API keys out of every text the SDK produces, whatever a server sends back.

A hostile or broken server can echo the key it received: in an error body, a ``detail``, an
``X-Request-Id`` header, a job's failure detail, a profile's message, even a status line. Rather
than trusting every place that turns server text into an error or a log line to remember to
scrub it, scrubbing happens where that text enters the SDK's own texts:

- every ``PhotaError`` scrubs its message and every attribute as it is set (``errors.py``), so
  an error built anywhere, by any code, from any answer, never holds the key;
- the ``phota_async`` logger carries a filter that scrubs each record it emits;
- the CLI scrubs the one line it prints.

Each client registers its key here (``register``) and holds the returned ``Secret``; the
registry keeps only weak references, so a key is forgotten with the last client using it.

Presigned URLs are bearer secrets too (whoever holds one reads the object until it expires):
in every text scrubbed here, a URL whose query string carries a signature (S3's
``X-Amz-Signature``/``X-Amz-Credential`` or ``Signature=``, GCS's ``X-Goog-Signature``, a SAS
``sig=``) keeps its scheme, host and path (the bucket and key) and shows ``?***`` for its
query. Data the SDK hands back (a result's download URLs) is never rewritten.

What is scrubbed: the key itself; the key written with any mix of URL-encoding (``%41``, either
case), JSON ``\\u0041`` escapes and HTML character references; and any run of at least
``FRAGMENT`` consecutive characters of it (a partial echo, or an echo cut by truncation). JSON
bodies are scrubbed after parsing, when their escapes are already decoded. Keys shorter than
``MIN_KEY`` characters are not scrubbed (they are test placeholders, not secrets, and scrubbing
them would garble ordinary words).
"""

from __future__ import annotations

import logging
import re
import reprlib
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

MASK: Final = "***"
FRAGMENT: Final = 12
MIN_KEY: Final = 6


def _char_pattern(char: str) -> str:
    """A pattern for one character of the key, in any of the encodings a server may echo."""
    forms = [re.escape(char)]
    forms.append("".join(f"%{b:02x}" for b in char.encode()))
    code = ord(char)
    if code < 0x10000:
        forms.append(f"\\\\u{code:04x}")
    if char in '/"\\':
        forms.append(re.escape("\\" + char))
    forms += [f"&#{code};", f"&#x{code:x};"]
    # Hex digits in escapes may come in either case: match them case-insensitively, but
    # only inside the escape forms (the key itself is case-sensitive).
    escaped = [forms[0]] + [f"(?i:{f})" for f in forms[1:]]
    return "(?:" + "|".join(escaped) + ")"


def _whole_key_pattern(key: str) -> re.Pattern[str]:
    return re.compile("".join(_char_pattern(c) for c in key))


class Secret:
    """One API key and how to scrub it from text. Never shows the key in its repr."""

    __slots__ = ("__weakref__", "_anchors", "_finder", "_fragments", "_key", "_pattern")

    def __init__(self, key: str) -> None:
        self._key = key
        self._pattern: re.Pattern[str] | None = None  # compiled on first use: about 10 ms
        self._finder: re.Pattern[str] | None = None  # any fragment; compiled on first use
        size = min(FRAGMENT, len(key))
        self._fragments = tuple(key[i : i + size] for i in range(len(key) - size + 1))
        # Every run of ``size`` key characters holds one of these short anchors (one starts in
        # any ``step`` consecutive positions), so a text holding none of them holds no echo:
        # a few substring tests clear the common answer instead of one search per fragment.
        width = min(4, size)
        step = size - width + 1
        self._anchors = tuple(key[j : j + width] for j in range(0, len(key) - width + 1, step))

    def __repr__(self) -> str:
        return "Secret(***)"

    def scrub(self, text: str) -> str:
        """``text`` with every echo of the key (whole, encoded, or a long fragment) masked."""
        return _mask(text, self.spans(text))

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where ``text`` echoes the key (whole, encoded, or a long fragment), unmerged."""
        found: list[tuple[int, int]] = []
        if self._maybe_encoded(text):
            if self._pattern is None:
                self._pattern = _whole_key_pattern(self._key)
            found += (m.span() for m in self._pattern.finditer(text))
        for anchor in self._anchors:
            if anchor in text:
                return found + self._fragment_spans(text)
        return found

    def _maybe_encoded(self, text: str) -> bool:
        # The whole-key pattern is slower than a plain search; run it only when the text could
        # hold an encoded or escaped form at all. A raw echo needs no pattern: the fragments
        # find it (a key shorter than ``FRAGMENT`` is one fragment whole).
        return "%" in text or "\\" in text or "&#" in text

    def _fragment_spans(self, text: str) -> list[tuple[int, int]]:
        """Spans of ``text`` that are runs of ``FRAGMENT`` or more key characters.

        One left-to-right scan: after a run is found, the search resumes where a fragment
        could still reach past its end, so a body of repeated echoes costs one step per echo
        (searching every fragment through the whole text took 150 ms of the event loop for
        64 KiB of echoes). A fragment inside a run found already adds nothing to the mask.
        """
        key = self._key
        size = len(self._fragments[0])
        if self._finder is None:
            self._finder = re.compile("|".join(re.escape(f) for f in set(self._fragments)))
        spans: list[tuple[int, int]] = []
        pos = 0
        while (found := self._finder.search(text, pos)) is not None:
            at = found.start()
            reach = at + size
            offset = key.find(found.group())
            while offset >= 0:  # every place of the key this fragment comes from
                # Grow the match both ways while the text keeps following the key.
                start, k = at, offset
                while start > 0 and k > 0 and text[start - 1] == key[k - 1]:
                    start, k = start - 1, k - 1
                end, k = reach, offset + size
                if text.startswith(key[k:], end):  # the usual case: the rest of the key whole
                    end, k = end + len(key) - k, len(key)
                while end < len(text) and k < len(key) and text[end] == key[k]:
                    end, k = end + 1, k + 1
                spans.append((start, end))
                reach = max(reach, end)
                offset = key.find(found.group(), offset + 1)
            pos = max(at + 1, reach - size + 1)
        return spans


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with each run of overlapping or touching ``spans`` replaced by one mask."""
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    last = 0
    run_start, run_end = spans[0]
    for start, end in spans[1:]:
        if start <= run_end:
            run_end = max(run_end, end)
            continue
        out += [text[last:run_start], MASK]
        last = run_end
        run_start, run_end = start, end
    out += [text[last:run_start], MASK, text[run_end:]]
    return "".join(out)


# A signed query is found by its signature parameter, then masked from its "?" to the next
# space or quote (punctuation ending the token, a ";" or ")" after the URL, is the sentence's).
# Each piece of text is looked at a bounded number of times: a hostile body of megabytes of
# "http://?sig=" costs linear time, never quadratic.
_SIGNED = re.compile(
    r"[?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature"
    r"|x-goog-credential|signature|sig)=",
    re.IGNORECASE,
)
_TOKEN_END = re.compile(r"""[\s#"'<>\\]""")
_TRAILING = ";,.)]"
_QUERY_WINDOW = 8192  # the longest query looked back over, from its signature to its "?"


def mask_signed_urls(text: str) -> str:
    """``text`` with the query string of every presigned URL in it masked (``?***``)."""
    if "?" not in text:  # the common text: no query at all
        return text
    out: list[str] = []
    done = 0  # text[:done] is settled
    for found in _SIGNED.finditer(text):
        if found.start() < done:
            continue  # inside a query masked already
        start = found.start() if found.group()[0] == "?" else None
        if start is None:
            start = text.rfind("?", max(done, found.start() - _QUERY_WINDOW), found.start())
            if start < 0:
                continue
        stop = _TOKEN_END.search(text, found.end())
        end = stop.start() if stop else len(text)
        while end > found.end() and text[end - 1] in _TRAILING:
            end -= 1
        out += [text[done : start + 1], MASK]
        done = end
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


# Weak references to the live secrets, as a plain tuple (iterating a WeakSet costs
# microseconds on the path every answer takes); a secret's death drops its reference.
_refs: tuple[weakref.ref[Secret], ...] = ()


def _forget(ref: weakref.ref[Secret]) -> None:
    global _refs
    _refs = tuple(r for r in _refs if r is not ref)


def _secrets() -> list[Secret]:
    return [secret for ref in _refs if (secret := ref()) is not None]


def register(key: str) -> Secret:
    """Scrub ``key`` from every SDK text while the returned ``Secret`` is alive; hold it."""
    global _refs
    secret = Secret(key)
    if len(key) >= MIN_KEY:
        _refs = (*_refs, weakref.ref(secret, _forget))
    return secret


def scrub(text: str) -> str:
    """``text`` with every live key and every presigned URL's query masked. The echoes of all
    keys are found in the same text and masked at once, so one key's mask cannot hide part of
    another key's echo."""
    return mask_signed_urls(_scrub_keys(text))


def _scrub_keys(text: str) -> str:
    spans: list[tuple[int, int]] = []
    for secret in _secrets():
        spans += secret.spans(text)
    return _mask(text, spans)


SHOWN: Final = 60
"""The most characters of a caller's value an error message echoes."""
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 4 * SHOWN


def shown(value: object, limit: int = SHOWN) -> str:
    """A caller's value as an error message echoes it: its ``repr``, at most ``limit``
    characters, with any live key masked.

    A string is cut before its ``repr`` is built, so a 10 MB value costs no 10 MB message; it
    is scrubbed with some characters to spare before the final cut, so the cut cannot leave a
    piece of a key too short to be recognised.
    """
    text = scrub(_SHORT.repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def scrub_echoes(value: Any, raw: bytes) -> Any:
    """``value``, decoded from ``raw``, scrubbed only if ``raw`` echoes a live key: one scan of
    the raw text instead of a walk over every field, on the path every answer takes."""
    if not _refs:
        return value
    text = raw.decode("utf-8", "replace")
    for secret in _secrets():
        if secret.spans(text):
            # Keys only: the answer's data (download URLs) must stay usable.
            return _scrub(value, 0, _scrub_keys)
    return value


def scrub_value(value: Any) -> Any:
    """A copy of ``value`` with every live key and presigned URL query masked in its strings
    (and bytes), looking into mappings, lists, tuples and attrs models (their fields are
    replaced with ``evolve``)."""
    return _scrub(value, 0, scrub)


def _scrub(value: Any, depth: int, clean: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return clean(value)
    if depth > 20:  # a hostile body nests deeply: deeper than this, keep no text at all
        return MASK if isinstance(value, (Mapping, list, tuple)) else value
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).decode("utf-8", "surrogateescape")
        cleaned = clean(text)
        return value if cleaned == text else cleaned.encode("utf-8", "surrogateescape")
    if isinstance(value, Mapping):
        return {_scrub(k, depth + 1, clean): _scrub(v, depth + 1, clean) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, depth + 1, clean) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrub(v, depth + 1, clean) for v in value)
    if attrs.has(type(value)):
        changes = {}
        for field in attrs.fields(type(value)):
            current = getattr(value, field.name)
            cleaned = _scrub(current, depth + 1, clean)
            if cleaned is not current and cleaned != current:
                changes[field.alias or field.name] = cleaned
        return attrs.evolve(value, **changes) if changes else value
    return value


class ScrubFilter(logging.Filter):
    """Masks live keys and presigned URL queries in each log record's message (and drops its
    arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def install_log_filter(logger: logging.Logger) -> None:
    """Attach the scrubbing filter to ``logger`` once."""
    if not any(isinstance(f, ScrubFilter) for f in logger.filters):
        logger.addFilter(ScrubFilter())


# Every SDK module logs through the one "phota_async" logger (a filter on a logger sees only
# the records logged on that logger itself, not its children's).
install_log_filter(logging.getLogger("phota_async"))
