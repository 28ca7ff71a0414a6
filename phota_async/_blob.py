"""Image blobs as data: what a checked local image is and how it is sent, without reading it.

Pure (no I/O), so that the wire code (``_protocol``) can describe a streamed body and check a
downloaded image's first bytes without importing the file readers of ``_inputs``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Final, Protocol

import attrs

# Raw bytes per chunk: a multiple of 3 so that every chunk encodes to whole base64 quanta.
# 192 KiB measured best (benchmarks/README.md): 384 KiB cost more CPU and memory (larger
# buffers outside the CPU caches), 96 KiB no less CPU but twice the thread hops for a file
# that is not in the page cache.
CHUNK: Final = 3 * 64 * 1024


def sniff_format(head: bytes) -> str | None:
    """The image format named by a file's first bytes, or ``None``."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[4:8] == b"ftyp" and head[8:12] in (
        b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1",
    ):  # fmt: skip
        return "heic"
    return None


@attrs.frozen
class ImageBlob:
    """Where an image's bytes are: a file on disk, bytes in memory, or an open seekable file.

    Reading them is ``_inputs``' business (``encoded_chunks``, ``raw_chunk``, ``read_all``).
    """

    size: int
    format: str
    path: Path | None = None
    data: bytes | None = attrs.field(default=None, repr=False)
    file: IO[bytes] | None = attrs.field(default=None, repr=False)
    offset: int = 0
    identity: tuple[int, int] | None = attrs.field(default=None, repr=False, eq=False)
    """``(st_dev, st_ino)`` of a file on disk when it was checked."""

    @property
    def encoded_size(self) -> int:
        """Length of the base64 text for this blob."""
        return 4 * ((self.size + 2) // 3)

    @property
    def chunk_count(self) -> int:
        """How many ``CHUNK``-sized pieces the blob is sent in."""
        return (self.size + CHUNK - 1) // CHUNK


class Closable(Protocol):
    """A decoded image held in a temporary file, as far as closing it goes."""

    def close(self) -> None: ...


def close_images(images: Iterable[bytes | Closable]) -> None:
    """Close the spooled files among decoded ``images`` (bytes are left alone)."""
    for image in images:
        if not isinstance(image, bytes):
            image.close()
