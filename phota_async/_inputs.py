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

What a file may do behind the SDK's back: files are opened non-blocking and checked on the
opened descriptor (``fstat``: a regular file, the same file that was checked), so a path
swapped for a FIFO or a device after its check is refused instead of blocking an I/O thread
forever. A file being streamed is closed as soon as its last chunk is read, when the stream is
closed, or at once when it is dropped (a cancelled upload), never left to the garbage collector.

Cheap structural checks catch truncated files before anything is sent, reading only a file's
first and last bytes (images are never decoded): a JPEG must end with its end-of-image marker
(``FF D9``, trailing padding allowed), a PNG with its ``IEND`` chunk, and a WebP file must be
at least as long as its RIFF header says. HEIC files are checked by their header only.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import stat as stat_module
import struct
import threading
import weakref
from binascii import b2a_base64
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any, TypeVar
from urllib.parse import urlsplit

from ._blob import CHUNK, ImageBlob, sniff_format
from ._files import off_loop
from .errors import InvalidRequestError

MAX_IMAGE_BYTES = 50 * 1024 * 1024
_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None) if hasattr(os, "preadv") else None
T = TypeVar("T")
# How many of a file's last bytes the structural check reads, which bounds the trailing padding
# a JPEG may carry after its end-of-image marker.
TAIL = 4096
_JPEG_PADDING = b"\x00\xff\r\n\t "
_PNG_END = b"IEND\xaeB`\x82"
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


def structure_problem(fmt: str, size: int, head: bytes, tail: bytes) -> str | None:
    """Why an image of ``size`` bytes whose first and last bytes are ``head`` and ``tail`` is
    cut short or malformed, or ``None`` when its ends look whole (the image is not decoded)."""
    if fmt == "jpeg" and not tail.rstrip(_JPEG_PADDING).endswith(b"\xff\xd9"):
        return "the JPEG has no end-of-image marker: the file is truncated or damaged"
    if fmt == "png" and not tail.rstrip(b"\x00").endswith(_PNG_END):
        return "the PNG has no IEND chunk at its end: the file is truncated or damaged"
    if fmt == "webp":
        declared = struct.unpack("<I", head[4:8])[0] + 8 if len(head) >= 8 else size + 1
        if declared > size:
            return (
                f"the WebP file says it is {declared} bytes long but has {size}: "
                "the file is truncated"
            )
    return None


def _check_structure(fmt: str, size: int, head: bytes, tail: bytes, field: str, name: str) -> None:
    problem = structure_problem(fmt, size, head, tail)
    if problem is not None:
        raise InvalidRequestError(field, f"{problem}{name}")


def raw_chunk(blob: ImageBlob, index: int) -> bytes:
    """Raw bytes of chunk ``index`` of a blob in memory or in an open file object (blocking:
    run it in a worker thread). Files on disk are read by ``read_chunks``."""
    start = index * CHUNK
    length = min(CHUNK, blob.size - start)
    if blob.data is not None:
        return blob.data[start : start + length]
    assert blob.file is not None, "a blob on disk is read by read_chunks"
    blob.file.seek(blob.offset + start)
    raw = blob.file.read(length)
    if len(raw) != length:
        raise InvalidRequestError("image", "the file shrank while it was being sent")
    return raw


def read_all(blob: ImageBlob) -> bytes:
    """All raw bytes of a blob in memory or in an open file object (blocking), for uploads
    that need them whole."""
    return b"".join(raw_chunk(blob, i) for i in range(blob.chunk_count))


def encoded_chunks(blob: ImageBlob) -> AsyncIterator[bytes]:
    """The blob's base64 text, chunk by chunk, never more than one raw chunk in memory.

    A file on disk is open only while it is streamed: it is closed after its last chunk, by
    ``aclose()``, or at once when the iterator is dropped unfinished (a cancelled call).

    Raises:
        InvalidRequestError: a file shrank, or was replaced, while it was being sent (field
            ``image``).
    """
    if blob.path is not None:
        return _Encoded(read_chunks(blob.path, blob.size, CHUNK, blob.identity))
    return _encoded_other(blob)


async def _encoded_other(blob: ImageBlob) -> AsyncIterator[bytes]:
    if blob.data is not None:
        data = memoryview(blob.data)
        for start in range(0, blob.size, CHUNK):
            yield b2a_base64(data[start : start + CHUNK], newline=False)
    else:
        for index in range(blob.chunk_count):
            yield b2a_base64(await off_loop(raw_chunk, blob, index), newline=False)


class _Encoded:
    """Base64 of a file's chunks. A plain iterator object rather than an async generator, so
    that dropping it closes the file at once (an abandoned async generator is only closed
    later, by the event loop)."""

    __slots__ = ("_chunks",)

    def __init__(self, chunks: FileChunks) -> None:
        self._chunks = chunks

    def __aiter__(self) -> _Encoded:
        return self

    async def __anext__(self) -> bytes:
        return b2a_base64(await self._chunks.__anext__(), newline=False)

    def close(self) -> None:
        self._chunks.close()

    async def aclose(self) -> None:
        self._chunks.close()


def read_chunks(
    path: Path, size: int, chunk: int, identity: tuple[int, int] | None = None
) -> FileChunks:
    """The first ``size`` bytes of a file, ``chunk`` bytes at a time, into one reused buffer:
    each view is valid until the next one is asked for. Use ``async for``; the file is closed
    after the last chunk, by ``close()``/``aclose()``, or when the iterator is dropped.

    Raises:
        InvalidRequestError: the file is no longer a regular file, is another file than the
            one checked (``identity``), or shrank while it was being read (field ``image``).
    """
    return FileChunks(path, size, chunk, identity)


class _Descriptor:
    """A file descriptor opened and read in worker threads, closed exactly once, and never
    under an open or a read still running in a thread (a cancelled wait does not stop that
    work, and closing the number under it could let another file reuse it mid-read): a close
    asked for meanwhile is done by the thread as soon as its work returns."""

    __slots__ = ("_busy", "_closed", "_lock", "fd")

    def __init__(self) -> None:
        self.fd: int | None = None
        self._lock = threading.Lock()
        self._busy = False
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._busy:
                return  # the thread closes it when its work returns
            fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def _start(self, path: Path) -> None:
        with self._lock:
            if self._closed:
                raise InvalidRequestError("image", f"{path} was closed while it was being sent")
            self._busy = True

    def _finish(self) -> None:
        with self._lock:
            self._busy = False
            fd = self.fd if self._closed else None
            if fd is not None:
                self.fd = None
        if fd is not None:
            os.close(fd)

    def open(self, path: Path, identity: tuple[int, int] | None, size: int) -> None:
        """Open and check the file (blocking: run it in a worker thread)."""
        self._start(path)
        try:
            self.fd = _open_checked(path, identity, size)
        finally:
            self._finish()

    def read_into(self, view: memoryview, offset: int, path: Path) -> None:
        """Fill ``view`` from ``offset`` (blocking: run it in a worker thread)."""
        self._start(path)
        try:
            assert self.fd is not None
            _read_into(self.fd, view, offset, path)
        finally:
            self._finish()


class FileChunks:
    """The async iterator behind ``read_chunks``."""

    __slots__ = ("__weakref__", "_buffer", "_chunk", "_closer", "_file", "_identity",
                 "_path", "_size", "_start")  # fmt: skip

    def __init__(self, path: Path, size: int, chunk: int, identity: tuple[int, int] | None) -> None:
        self._path, self._size, self._chunk, self._identity = path, size, chunk, identity
        self._buffer = memoryview(bytearray(min(chunk, size)))
        self._file = _Descriptor()
        # Dropped unfinished (a cancelled upload whose body is abandoned), the file is closed
        # at once by this finalizer rather than whenever the collector runs.
        self._closer = weakref.finalize(self, self._file.close)
        self._start = 0

    def __aiter__(self) -> FileChunks:
        return self

    async def __anext__(self) -> memoryview:
        if self._start >= self._size:
            self.close()
            raise StopAsyncIteration
        file = self._file
        try:
            if file.fd is None:
                await off_loop(file.open, self._path, self._identity, self._size)
            start = self._start
            view = self._buffer[: min(self._chunk, self._size - start)]
            fd = file.fd
            if fd is None:
                raise InvalidRequestError("image", f"{self._path} was closed while being sent")
            got = _read_cached(fd, view, start)
            if got < len(view):
                await off_loop(file.read_into, view[got:], start + got, self._path)
        except BaseException:
            self.close()
            raise
        self._start = start + len(view)
        if self._start >= self._size:
            self.close()  # the last chunk is in the buffer: the file is not needed any more
        return view

    def close(self) -> None:
        """Close the file now (idempotent; work running in a thread closes it on return)."""
        self._closer()

    async def aclose(self) -> None:
        """Close the file now (idempotent)."""
        self.close()


def _unreadable(name: object, exc: OSError) -> InvalidRequestError:
    """An input that failed while its body was being sent: the server got a cut-short body,
    which it cannot have processed, so this is the caller's error, not an unknown outcome."""
    return InvalidRequestError(
        "image",
        f"{name} could not be read while the request was being sent "
        f"({exc.strerror or type(exc).__name__}); the request was abandoned unfinished, so "
        "nothing was processed",
    )


class BodyChunks:
    """The bytes of a request body made of literal parts and blobs (base64-encoded), as an
    async iterator that ``close()`` stops at once, closing any file it is reading, even while
    the sender's task is suspended inside it. Transports close it when a send ends, however
    it ends, so a cancelled upload never keeps an input file open.

    Args:
        parts: ``bytes`` sent as they are, and blobs sent as their base64 text.
        raw: when not 0, send files' raw bytes in chunks of this size instead (an upload of
            one file as the whole body).
        pace: awaited before each chunk of a blob is handed out (the transport's pacer, which
            bounds the body work of one event-loop iteration across all sends).
    """

    __slots__ = ("_current", "_name", "_pace", "_parts", "_raw")

    def __init__(
        self,
        parts: tuple[bytes | ImageBlob, ...],
        *,
        raw: int = 0,
        pace: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._parts = list(reversed(parts))
        self._pace = pace
        self._current: FileChunks | _Encoded | AsyncIterator[bytes] | None = None
        self._name: object = "an image file"
        self._raw = raw

    @classmethod
    def of_file(
        cls, path: Path, size: int, chunk: int, pace: Callable[[], Awaitable[None]] | None = None
    ) -> BodyChunks:
        """A whole body that is one file's raw bytes, ``chunk`` bytes at a time."""
        return cls((ImageBlob(size=size, format="raw", path=path),), raw=chunk, pace=pace)

    def __aiter__(self) -> BodyChunks:
        return self

    async def __anext__(self) -> bytes:
        while True:
            if self._current is not None:
                try:
                    chunk = await self._current.__anext__()
                except StopAsyncIteration:
                    self._current = None
                    continue
                except OSError as exc:
                    raise _unreadable(self._name, exc) from exc
                if self._pace is not None:
                    await self._pace()
                return bytes(chunk) if isinstance(chunk, memoryview) else chunk
            if not self._parts:
                raise StopAsyncIteration
            part = self._parts.pop()
            if isinstance(part, bytes):
                return part
            self._name = part.path or "an image file"
            if self._raw and part.path is not None:
                self._current = read_chunks(part.path, part.size, self._raw, part.identity)
            else:
                self._current = encoded_chunks(part)

    def close(self) -> None:
        """Stop now: no more chunks, and the file being read (if any) is closed."""
        self._parts.clear()
        current, self._current = self._current, None
        if isinstance(current, (FileChunks, _Encoded)):
            current.close()

    async def aclose(self) -> None:
        """Stop now (see ``close``)."""
        current = self._current
        self.close()
        if current is not None and not isinstance(current, (FileChunks, _Encoded)):
            await current.aclose()  # type: ignore[attr-defined]


def _read_cached(fd: int, view: memoryview, offset: int) -> int:
    """Read what the page cache holds at ``offset`` without waiting for a disk; 0 if nothing
    can be read that way (not cached, or no ``RWF_NOWAIT`` on this system)."""
    if _NOWAIT is None:
        return 0
    try:
        return os.preadv(fd, [view], offset, _NOWAIT)
    except OSError:  # EAGAIN: not cached; EOPNOTSUPP: a file system without non-blocking reads
        return 0


def _read_into(fd: int, view: memoryview, offset: int, path: Path) -> None:
    """Fill ``view`` from ``offset`` (blocking: run it in a worker thread)."""
    while len(view):
        got = os.preadv(fd, [view], offset) if hasattr(os, "preadv") else _pread(fd, view, offset)
        if not got:
            raise InvalidRequestError("image", f"{path} shrank while it was being sent")
        view, offset = view[got:], offset + got


def _pread(fd: int, view: memoryview, offset: int) -> int:
    data = os.pread(fd, len(view), offset)
    view[: len(data)] = data
    return len(data)


def open_regular(path: Path, field: str) -> tuple[int, os.stat_result]:
    """Open ``path`` without blocking and check the opened file itself is a regular file.

    ``O_NONBLOCK`` makes opening a FIFO return at once instead of waiting for a writer, and
    ``fstat`` of the descriptor sees what was really opened, even if the path was swapped
    after an earlier check. (Reads of a regular file ignore ``O_NONBLOCK``.)
    """
    try:
        before = os.stat(path)
    except FileNotFoundError:
        raise InvalidRequestError(field, f"no such file: {path}") from None
    except OSError as exc:
        raise InvalidRequestError(field, f"cannot read {path}: {exc.strerror}") from None
    if not stat_module.S_ISREG(before.st_mode):
        raise InvalidRequestError(field, f"not a regular file: {path}")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise InvalidRequestError(field, f"no such file: {path}") from None
    except OSError as exc:
        raise InvalidRequestError(field, f"cannot read {path}: {exc.strerror}") from None
    try:
        opened = os.fstat(fd)
        if not stat_module.S_ISREG(opened.st_mode):
            raise InvalidRequestError(field, f"not a regular file: {path}")
    except BaseException:
        os.close(fd)
        raise
    return fd, opened


def _open_checked(path: Path, identity: tuple[int, int] | None, size: int) -> int:
    """Open a checked file again for streaming (blocking: run it in a worker thread)."""
    fd, opened = open_regular(path, "image")
    problem = None
    if identity is not None and (opened.st_dev, opened.st_ino) != identity:
        problem = f"{path} was replaced by another file after it was checked"
    elif opened.st_size < size:
        problem = f"{path} shrank while it was being sent"
    if problem is not None:
        os.close(fd)
        raise InvalidRequestError("image", problem)
    return fd


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


async def _own_thread(fn: Callable[..., T], *args: object) -> T:
    """Run ``fn`` on a new daemon thread; the result comes back through a loop future."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def work() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the waiting task, not lost in the thread
            error = exc
            hand_over(lambda: future.set_exception(error))
        else:
            hand_over(lambda: future.set_result(result))

    def hand_over(outcome: Callable[[], None]) -> None:
        # The loop may have closed while this thread was stuck: then nobody waits.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=work, name="phota-input", daemon=True).start()
    return await future


def _blob_from_bytes(data: bytes, field: str) -> ImageBlob:
    if not data:
        raise InvalidRequestError(field, "the image is empty (0 bytes)")
    if len(data) > MAX_IMAGE_BYTES:
        raise InvalidRequestError(field, f"the image is larger than {MAX_IMAGE_BYTES} bytes")
    fmt = sniff_format(data[:16])
    if fmt is None:
        raise InvalidRequestError(field, "not a JPEG, PNG, WebP or HEIC image")
    _check_structure(fmt, len(data), data[:16], data[-TAIL:], field, "")
    return ImageBlob(size=len(data), format=fmt, data=data)


def _blob_from_path(path: Path, field: str) -> ImageBlob:
    fd, opened = open_regular(path, field)
    try:
        size = opened.st_size
        if size == 0:
            raise InvalidRequestError(field, f"the file is empty: {path}")
        if size > MAX_IMAGE_BYTES:
            raise InvalidRequestError(
                field, f"the file is larger than {MAX_IMAGE_BYTES} bytes: {path}"
            )
        head = os.pread(fd, 16, 0)
        fmt = sniff_format(head)
        if fmt is None:
            raise InvalidRequestError(field, f"not a JPEG, PNG, WebP or HEIC image: {path}")
        tail = os.pread(fd, TAIL, max(0, size - TAIL))
        _check_structure(fmt, size, head, tail, field, f": {path}")
    finally:
        os.close(fd)
    return ImageBlob(size=size, format=fmt, path=path, identity=(opened.st_dev, opened.st_ino))


def _blob_from_file(handle: IO[bytes], field: str) -> ImageBlob:
    if handle.seekable():
        offset = handle.tell()
        size = handle.seek(0, os.SEEK_END) - offset
        handle.seek(offset)
        head = handle.read(16)
        handle.seek(max(offset, offset + size - TAIL))
        tail = handle.read(TAIL)
        handle.seek(offset)
        if size <= 0:
            raise InvalidRequestError(field, "the file object has no bytes left to read")
        if size > MAX_IMAGE_BYTES:
            raise InvalidRequestError(field, f"the image is larger than {MAX_IMAGE_BYTES} bytes")
        fmt = sniff_format(head)
        if fmt is None:
            raise InvalidRequestError(field, "not a JPEG, PNG, WebP or HEIC image")
        _check_structure(fmt, size, head, tail, field, "")
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
    raise _unsupported(value, field)


def _unsupported(value: object, field: str) -> InvalidRequestError:
    return InvalidRequestError(
        field,
        f"unsupported image type {type(value).__name__}: use a Path, an http(s) URL, bytes, "
        "a binary file object or a PIL image",
    )


def check_input_type(value: object, field: str) -> None:
    """Refuse a value that is no kind of image input, without reading anything (the type
    test of ``prepare_image``, for inputs checked long before they are read)."""
    if not (
        isinstance(value, (str, os.PathLike, bytes, bytearray, memoryview))
        or hasattr(value, "read")
        or _is_pil_image(value)
    ):
        raise _unsupported(value, field)


async def prepare_image(value: Any, field: str, timeout: float | None = None) -> ImageSource:
    """Check one image input and describe where its bytes are, without loading a file.

    Args:
        value: the input.
        field: its name in error messages, such as ``"images[2]"``.
        timeout: seconds allowed for reading what the checks need (the call's deadline);
            ``None`` for no bound here.

    Returns:
        The URL, or an ``ImageBlob``.

    Raises:
        InvalidRequestError: the input is missing, empty, too large, not an image, truncated,
            not a regular file, of an unsupported type, or could not be read within
            ``timeout``; the message names ``field``.
    """
    if isinstance(value, str):
        return check_url(value, field)
    # A caller's file object may block on anything (a pipe, a socket, a stalled mount): it is
    # read on a thread of its own, so that a stuck one cannot hold one of the few I/O threads
    # every other call shares. Paths only open regular files, without blocking.
    run = _own_thread if hasattr(value, "read") else off_loop
    if timeout is None or not 0 < timeout < math.inf:
        return await run(_prepare_sync, value, field)
    try:
        async with asyncio.timeout(timeout):
            return await run(_prepare_sync, value, field)
    except TimeoutError:
        raise InvalidRequestError(
            field, f"could not be read within the call's {timeout:g} s deadline"
        ) from None
