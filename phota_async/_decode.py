"""Studio results decoded as they stream in, so that memory stays flat whatever their size.

A bytes-mode answer with four 4K images can carry 100-300 MB of JSON, nearly all of it the
base64 strings in ``images``. ``ResultDecoder`` is fed the body chunk by chunk. It copies the
JSON around the strings (the skeleton) as it is, but any string longer than ``INLINE_STRING``
is diverted, as it arrives, through an incremental base64 decoder into a spool: a buffer in
memory that moves to an unlinked temporary file past ``SPOOL_BYTES``. The skeleton holds a
marker in the string's place; at the end it is parsed with ``json.loads`` and validated by the
converter like any other answer, and each marker is swapped for its decoded image.

The work per chunk is bounded (one network read: a scan for quotes and backslashes, one
``a2b_base64`` call, one write), so a transport that feeds chunks from the event loop never
stalls it for long; the transport yields to the loop between chunks.

Bounds: the skeleton (everything but the large strings) is held to ``max_json_bytes``, each
decoded image to ``max_image_bytes``, and an answer to ``MAX_SPOOLED`` large strings; past any
of them ``ResponseTooLargeError``. Nothing here blocks on the network: feeding is synchronous.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import threading
import weakref
from binascii import Error as BinasciiError
from binascii import a2b_base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Final

from ._blob import close_images
from ._files import write_chunks
from .errors import ResponseTooLargeError, ResponseValidationError

INLINE_STRING: Final = 64 * 1024
"""Strings up to this many bytes stay in the skeleton; longer ones are decoded as base64."""
SPOOL_BYTES: Final = 1024 * 1024
"""A decoded image up to this size stays in memory; a larger one goes to a temporary file."""
MAX_SPOOLED: Final = 16
"""The most large strings one answer may hold (the API returns at most 4 images)."""
COPY_CHUNK: Final = 1024 * 1024

_NOT_BASE64 = "result: an output image is not valid base64"


def too_large(what: str, limit: int) -> ResponseTooLargeError:
    """The error for a body or image past its cap, with ``limit`` set."""
    error = ResponseTooLargeError(f"{what} is larger than the {limit:,} byte limit")
    error.limit = limit
    return error


def _special(chunk: bytes, start: int, n: int) -> int:
    """The index of the first quote or backslash from ``start`` (``n`` if none): two C-speed
    ``find`` calls, twenty times faster than a regular expression over base64 text."""
    quote = chunk.find(b'"', start)
    end = n if quote < 0 else quote
    backslash = chunk.find(b"\\", start, end)
    return end if backslash < 0 else backslash


class SpooledImage:
    """One decoded output image held in an unlinked temporary file.

    The file is closed by ``close()`` (``ImageResult.aclose()``), or at the latest when this
    object is garbage-collected. Reads use positional I/O, so concurrent reads do not clash.
    """

    __slots__ = ("__weakref__", "_close", "_file", "head", "size")

    def __init__(self, file: IO[bytes], size: int, head: bytes) -> None:
        self._file = file
        self.size = size
        self.head = head
        # A safety net, not the contract: closing the file when the result is dropped unclosed
        # keeps "unclosed file" ResourceWarnings out of the caller's process.
        self._close = weakref.finalize(self, file.close)

    @property
    def closed(self) -> bool:
        return not self._close.alive

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._close()

    def _chunks(self) -> Iterator[bytes]:
        if self.closed:
            raise ValueError("this image's data was released by ImageResult.aclose()")
        fd = self._file.fileno()
        offset = 0
        while offset < self.size:
            chunk = os.pread(fd, min(COPY_CHUNK, self.size - offset), offset)
            if not chunk:
                raise OSError("a spooled image file shrank")
            offset += len(chunk)
            yield chunk

    def read(self) -> bytes:
        """All the image's bytes (blocking: run it off the event loop)."""
        return b"".join(self._chunks())

    def save(self, path: Path) -> Path:
        """Copy the image to ``path`` atomically: a temporary file beside it, fsynced, renamed
        into place (blocking: run it off the event loop)."""
        return write_chunks(path, self._chunks())


Queue = Callable[[IO[bytes], bytes], None]


class _Base64Sink:
    """An incremental base64 decoder writing into memory, then into a temporary file (through
    ``queue``, which batches the writes so that they can run off the event loop)."""

    def __init__(self, max_bytes: int, queue: Queue) -> None:
        self._max_bytes = max_bytes
        self._queue = queue
        self._pending = b""  # the 0-3 characters of an incomplete quantum
        self._ended = False  # a padded quantum was seen: nothing may follow
        self._memory = bytearray()
        self._file: IO[bytes] | None = None
        self._head = b""
        self.size = 0

    def feed(self, text: bytes) -> None:
        if self._pending:
            text = self._pending + text
        cut = len(text) - len(text) % 4
        self._pending = text[cut:]
        if not cut:
            return
        if self._ended:
            raise ResponseValidationError(_NOT_BASE64)
        try:
            data = a2b_base64(memoryview(text)[:cut], strict_mode=True)
        except BinasciiError:
            raise ResponseValidationError(_NOT_BASE64) from None
        self._ended = text[cut - 1] == 0x3D  # "="
        self._write(data)

    def _write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._max_bytes:
            raise too_large("an output image", self._max_bytes)
        if self._file is None:
            if self.size <= SPOOL_BYTES:
                self._memory += data
                return
            self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by discard/SpooledImage
            self._head = bytes(self._memory[:16])
            self._queue(self._file, bytes(self._memory))
            self._memory = bytearray()
        self._queue(self._file, data)

    def finish(self) -> bytes | SpooledImage:
        """The decoded image: bytes when it stayed small, else a ``SpooledImage``."""
        if self._pending:
            raise ResponseValidationError(_NOT_BASE64)
        if self._file is None:
            return bytes(self._memory)
        file, self._file = self._file, None
        return SpooledImage(file, self.size, self._head)

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


Decoded = dict[str, "bytes | SpooledImage"]


class ResultDecoder:
    """Parse one JSON answer fed in chunks, decoding its large strings as base64 images.

    ``feed()`` each chunk, then ``close()`` for ``(value, images)``: the parsed JSON, in which
    each large string is replaced by a marker, and the decoded image of each marker. On any
    error (or when the caller gives up, ``discard()``) every temporary file is closed.

    Decoded bytes bound for temporary files wait in a backlog (``backlog_bytes``) until
    ``write_backlog()``, which blocks and belongs in a worker thread: a write into the page
    cache can wait for the disk. ``close()`` writes what is left itself.

    Args:
        max_json_bytes: the most bytes of JSON held besides the large strings.
        max_image_bytes: the most bytes of one decoded image.
    """

    def __init__(self, max_json_bytes: int, max_image_bytes: int) -> None:
        self._max_json = max_json_bytes
        self._max_image = max_image_bytes
        self._skeleton = bytearray()
        self._string: bytearray | None = None  # inside a short string: its bytes so far
        self._sink: _Base64Sink | None = None  # inside a long string: its decoder
        self._escape = False  # the previous byte was a backslash inside a string
        self._marker = "\x00spool-" + secrets.token_hex(6) + "-"
        self.images: Decoded = {}
        self._backlog: list[tuple[IO[bytes], bytes]] = []
        self.backlog_bytes = 0
        self._lock = threading.Lock()  # a backlog write in a thread, against discard()
        self._discarded = False

    def _queue(self, file: IO[bytes], data: bytes) -> None:
        self._backlog.append((file, data))
        self.backlog_bytes += len(data)

    def write_backlog(self) -> None:
        """Write the decoded bytes waiting for temporary files (blocking: call it off the loop
        when ``backlog_bytes`` has grown; nothing is fed meanwhile)."""
        with self._lock:
            if self._discarded:
                return
            backlog, self._backlog, self.backlog_bytes = self._backlog, [], 0
            for file, data in backlog:
                file.write(data)
            for file in {id(file): file for file, _ in backlog}.values():
                file.flush()

    def feed(self, chunk: bytes) -> None:
        """Take the next piece of the body (bounded work: one scan, one decode, one write)."""
        try:
            self._feed(chunk)
        except BaseException:
            self.discard()
            raise

    def _feed(self, chunk: bytes) -> None:
        i, n = 0, len(chunk)
        while i < n:
            string, sink = self._string, self._sink
            if string is None and sink is None:
                quote = chunk.find(b'"', i)
                end = n if quote < 0 else quote + 1
                self._skeleton += chunk[i:end]
                if len(self._skeleton) > self._max_json:
                    raise too_large("the JSON answer", self._max_json)
                if quote < 0:
                    return
                self._string = bytearray()
                i = end
                continue
            if self._escape:
                self._escape = False
                if string is not None:
                    string += chunk[i : i + 1]
                elif chunk[i] == 0x2F:  # "\/" is how some encoders write "/"
                    assert sink is not None
                    sink.feed(b"/")
                else:
                    raise ResponseValidationError(_NOT_BASE64)
                i += 1
                continue
            end = _special(chunk, i, n)
            if string is not None:
                string += chunk[i:end]
                if len(string) > INLINE_STRING:
                    sink = self._divert(string)
            elif end > i:
                assert sink is not None
                sink.feed(chunk[i:end])
            if end == n:
                return
            i = end + 1
            if chunk[end] == 0x5C:  # a backslash: the next byte is escaped
                if string is not None and sink is None:
                    string += b"\\"
                self._escape = True
            else:
                self._end_string()

    def _divert(self, string: bytearray) -> _Base64Sink:
        if len(self.images) >= MAX_SPOOLED:
            error = ResponseTooLargeError(
                f"the answer holds more than {MAX_SPOOLED} strings of over {INLINE_STRING:,} bytes"
            )
            error.limit = MAX_SPOOLED  # a count of strings, not bytes
            raise error
        if b"\\" in string:  # only "\/" can appear in base64 text
            if re.search(rb"\\[^/]", string):
                raise ResponseValidationError(_NOT_BASE64)
            string = bytearray(string.replace(b"\\/", b"/"))
        sink = _Base64Sink(self._max_image, self._queue)
        sink.feed(bytes(string))
        self._string, self._sink = None, sink
        return sink

    def _end_string(self) -> None:
        if self._string is not None:
            self._skeleton += self._string
            self._skeleton += b'"'
            self._string = None
            if len(self._skeleton) > self._max_json:
                raise too_large("the JSON answer", self._max_json)
            return
        assert self._sink is not None
        sink, self._sink = self._sink, None
        marker = f"{self._marker}{len(self.images)}"
        try:
            self.images[marker] = sink.finish()
        except BaseException:
            sink.discard()
            raise
        self._skeleton += json.dumps(marker)[1:-1].encode() + b'"'  # "\u0000spool-..."

    def close(self) -> tuple[Any, Decoded]:
        """The parsed answer and its decoded images.

        Raises:
            ResponseValidationError: the body was not complete, valid JSON.
        """
        try:
            self.write_backlog()
            if self._string is not None or self._sink is not None:
                raise ResponseValidationError("result: the response is not valid JSON (cut short)")
            try:
                value = json.loads(self._skeleton)
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                raise ResponseValidationError(
                    f"result: the response is not valid JSON ({exc})"
                ) from None
        except BaseException:
            self.discard()
            raise
        self._skeleton = bytearray()
        return value, self.images

    def discard(self) -> None:
        """Close every temporary file this decoder made (idempotent). A backlog write under
        way in a thread is waited for first (it is at most a few MiB)."""
        with self._lock:
            self._discarded = True
            self._backlog, self.backlog_bytes = [], 0
            if self._sink is not None:
                self._sink.discard()
                self._sink = None
            close_images(self.images.values())
            self.images = {}
