"""Image inputs: checked before any request, then streamed as base64 straight from disk.

A studio call accepts an image as a ``Path``, an http(s) URL string, ``bytes``, a binary file
object, or a PIL image. URLs are passed through for the server to fetch. Everything else
becomes an ``ImageBlob``: a description of where the bytes are (never a base64 copy of them),
whose format has been checked by its magic bytes. ``encoded_chunks`` then reads a blob in
chunks and base64-encodes each one straight into the request body.

Where the work runs: base64 encoding holds the GIL whichever thread does it, so it runs on the
event loop (about 0.15 ms per chunk). Only reads that could wait for a disk go to a worker
thread: on Linux a file's bytes that are already in the page cache (the common case, just after
the file was written or checked) are read on the loop with a read that refuses to block
(``RWF_NOWAIT``); anything else is read in a worker thread. Each hop to a thread and back cost
about 0.1 ms of CPU, more than reading the chunk, which is why they are avoided.
"""

from __future__ import annotations

import io
import os
from binascii import b2a_base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import attrs

from ._files import off_loop
from .errors import InvalidRequestError

# Raw bytes per chunk: a multiple of 3 so that every chunk encodes to whole base64 quanta.
# 192 KiB measured best (benchmarks/README.md): 384 KiB cost more CPU and memory (larger
# buffers outside the CPU caches), 96 KiB no less CPU but twice the thread hops for a file
# that is not in the page cache.
CHUNK = 3 * 64 * 1024
MAX_IMAGE_BYTES = 50 * 1024 * 1024
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None
FORMATS = ("jpeg", "png", "webp", "heic")


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
    """Where an image's bytes are: a file on disk, bytes in memory, or an open seekable file."""

    size: int
    format: str
    path: Path | None = None
    data: bytes | None = attrs.field(default=None, repr=False)
    file: IO[bytes] | None = attrs.field(default=None, repr=False)
    offset: int = 0

    @property
    def encoded_size(self) -> int:
        """Length of the base64 text for this blob."""
        return 4 * ((self.size + 2) // 3)

    @property
    def chunk_count(self) -> int:
        """How many ``CHUNK``-sized pieces the blob is sent in."""
        return (self.size + CHUNK - 1) // CHUNK

    def raw_chunk(self, index: int) -> bytes:
        """Raw bytes of chunk ``index`` of a blob in memory or in an open file object
        (blocking: run it in a worker thread). Files on disk are read by ``read_chunks``."""
        start = index * CHUNK
        length = min(CHUNK, self.size - start)
        if self.data is not None:
            return self.data[start : start + length]
        assert self.file is not None, "a blob on disk is read by read_chunks"
        self.file.seek(self.offset + start)
        raw = self.file.read(length)
        if len(raw) != length:
            raise InvalidRequestError("image", "the file shrank while it was being sent")
        return raw

    def read_all(self) -> bytes:
        """All raw bytes of a blob in memory or in an open file object (blocking), for
        uploads that need them whole."""
        return b"".join(self.raw_chunk(i) for i in range(self.chunk_count))


async def encoded_chunks(blob: ImageBlob) -> AsyncIterator[bytes]:
    """The blob's base64 text, chunk by chunk, never more than one raw chunk in memory.

    Raises:
        InvalidRequestError: a file shrank while it was being sent (field ``image``).
    """
    if blob.data is not None:
        data = memoryview(blob.data)
        for start in range(0, blob.size, CHUNK):
            yield b2a_base64(data[start : start + CHUNK], newline=False)
    elif blob.path is not None:
        async for view in read_chunks(blob.path, blob.size, CHUNK):
            yield b2a_base64(view, newline=False)
    else:
        for index in range(blob.chunk_count):
            yield b2a_base64(await off_loop(blob.raw_chunk, index), newline=False)


async def read_chunks(path: Path, size: int, chunk: int) -> AsyncIterator[memoryview]:
    """The first ``size`` bytes of a file, ``chunk`` bytes at a time, into one reused buffer:
    each view is valid until the next one is asked for.

    Raises:
        InvalidRequestError: the file shrank while it was being read (field ``image``).
    """
    buffer = memoryview(bytearray(min(chunk, size)))
    handle = await off_loop(io.FileIO, path, "rb")
    try:
        for start in range(0, size, chunk):
            view = buffer[: min(chunk, size - start)]
            got = _read_cached(handle.fileno(), view, start)
            if got < len(view):
                await off_loop(_read_into, handle, view[got:], start + got, path)
            yield view
    finally:
        handle.close()


def _read_cached(fd: int, view: memoryview, offset: int) -> int:
    """Read what the page cache holds at ``offset`` without waiting for a disk; 0 if nothing
    can be read that way (not cached, or no ``RWF_NOWAIT`` on this system)."""
    if _NOWAIT is None:
        return 0
    try:
        return os.preadv(fd, [view], offset, _NOWAIT)
    except OSError:  # EAGAIN: not cached; EOPNOTSUPP: a file system without non-blocking reads
        return 0


def _read_into(handle: io.FileIO, view: memoryview, offset: int, path: Path) -> None:
    """Fill ``view`` from ``offset`` (blocking: run it in a worker thread)."""
    handle.seek(offset)
    while len(view):
        got = handle.readinto(view)
        if not got:
            raise InvalidRequestError("image", f"{path} shrank while it was being sent")
        view = view[got:]


ImageSource = str | ImageBlob


def check_url(url: str, field: str) -> str:
    """Accept an http(s) URL with a host; refuse anything else with a clear error."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidRequestError(
            field,
            "a string must be an http(s) URL; pass a pathlib.Path for a local file",
        )
    return url


def _blob_from_bytes(data: bytes, field: str) -> ImageBlob:
    if not data:
        raise InvalidRequestError(field, "the image is empty (0 bytes)")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidRequestError(field, f"the image is larger than {MAX_IMAGE_BYTES} bytes")
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise InvalidRequestError(field, "not a JPEG, PNG, WebP or HEIC image")
    return ImageBlob(size=len(data), format=fmt, data=data)


def _blob_from_path(path: Path, field: str) -> ImageBlob:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise InvalidRequestError(field, f"no such file: {path}") from None
    except OSError as exc:
        raise InvalidRequestError(field, f"cannot read {path}: {exc.strerror}") from None
    if not path.is_file():
        raise InvalidRequestError(field, f"not a regular file: {path}")
    if stat.st_size == 0:
        raise InvalidRequestError(field, f"the file is empty: {path}")
    if stat.st_size > MAX_IMAGE_BYTES:
        raise InvalidRequestError(field, f"the file is larger than {MAX_IMAGE_BYTES} bytes: {path}")
    with path.open("rb") as handle:
        fmt = sniff_format(handle.read(16))
    if fmt is None:
        raise InvalidRequestError(field, f"not a JPEG, PNG, WebP or HEIC image: {path}")
    return ImageBlob(size=stat.st_size, format=fmt, path=path)


def _blob_from_file(handle: IO[bytes], field: str) -> ImageBlob:
    if handle.seekable():
        offset = handle.tell()
        size = handle.seek(0, os.SEEK_END) - offset
        handle.seek(offset)
        head = handle.read(16)
        handle.seek(offset)
        if size <= 0:
            raise InvalidRequestError(field, "the file object has no bytes left to read")
        if size > MAX_IMAGE_BYTES:
            raise InvalidRequestError(field, f"the image is larger than {MAX_IMAGE_BYTES} bytes")
        fmt = sniff_format(head)
        if fmt is None:
            raise InvalidRequestError(field, "not a JPEG, PNG, WebP or HEIC image")
        return ImageBlob(size=size, format=fmt, file=handle, offset=offset)
    return _blob_from_bytes(handle.read(MAX_IMAGE_BYTES + 1), field)


def _blob_from_pil(image: Any) -> ImageBlob:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    data = buf.getvalue()
    return ImageBlob(size=len(data), format="png", data=data)


def _is_pil_image(value: Any) -> bool:
    module = type(value).__module__
    return module.startswith("PIL.") and hasattr(value, "save") and hasattr(value, "size")


def _prepare_sync(value: Any, field: str) -> ImageSource:
    if isinstance(value, str):
        return check_url(value, field)
    if isinstance(value, os.PathLike):
        return _blob_from_path(Path(value), field)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _blob_from_bytes(bytes(value), field)
    if hasattr(value, "read"):
        return _blob_from_file(value, field)
    if _is_pil_image(value):
        return _blob_from_pil(value)
    raise InvalidRequestError(
        field,
        f"unsupported image type {type(value).__name__}: use a Path, an http(s) URL, bytes, "
        "a binary file object or a PIL image",
    )


async def prepare_image(value: Any, field: str) -> ImageSource:
    """Check one image input and describe where its bytes are, without loading a file.

    Raises:
        InvalidRequestError: the input is missing, empty, too large, not an image, or of an
            unsupported type; the message names ``field``.
    """
    if isinstance(value, str):
        return check_url(value, field)
    return await off_loop(_prepare_sync, value, field)
