"""The one transport seam: ``Transport.send(Request) -> Response``.

``AiohttpTransport`` is the only place in the SDK that imports aiohttp's client. Every exception
aiohttp or asyncio can raise while sending is translated here, once, into ``phota_async.errors``
with ``raise ... from exc``; the distinction that matters downstream is whether the request
can have reached the server (``ConnectError``: certainly not) or not.

Every body is read against a cap, counted after decompression (aiohttp decompresses in
bounded steps as the body is read), so an endless body or a compression bomb is refused with
``ResponseTooLargeError`` without ever being held: ``max_response_bytes`` for what is held in
memory, ``max_image_bytes`` for each image streamed to a file or decoded out of a studio
result. Studio results are decoded as they stream in (``_decode``).

No stall: one piece of body work (encoding and sending an upload chunk, decoding a chunk of a
result) takes a turn from the loop's ``_Pacer``, which grants ``TURNS_PER_ITERATION`` turns per
event-loop iteration, however many bodies are under way; the rest wait for the next iteration.

``MockTransport(handler)`` serves unit tests: the handler receives each ``Request`` and returns
a ``Response`` (or raises a ``PhotaError``).
"""

from __future__ import annotations

import asyncio
import inspect
import ssl as ssl_module
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from ._decode import Decoded, ResultDecoder, too_large
from ._files import off_loop
from ._inputs import encoded_chunks, read_chunks
from ._protocol import FileBody, Request, Response, StreamedBody
from .errors import (
    ConnectError,
    ConnectionLostError,
    InvalidRequestError,
    PhotaError,
    ReadTimeoutError,
    TransportError,
)

DOWNLOAD_CHUNK = 256 * 1024
WRITE_BATCH = 1024 * 1024
HEAD_BYTES = 16  # what a download hands back: enough to tell the image format
UPLOAD_CHUNK = 1024 * 1024
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_IMAGE_BYTES = 64 * 1024 * 1024
TURNS_PER_ITERATION = 4  # pieces of body work (each up to 256 KiB) per event-loop iteration


class _Pacer:
    """Bounds the body work one iteration of an event loop does, across all tasks.

    Without it, a chunk of work between two awaits is short, but every task ready in an
    iteration runs its chunk before the loop looks at its timers again: ten uploads at once
    held the loop for ten chunks at a time. A yield after each chunk (``asyncio.sleep(0)``)
    does not help, since the ten tasks are all ready again in the next iteration; finer slices
    cost CPU on every call. Instead each chunk takes a turn: the first ``TURNS_PER_ITERATION``
    of an iteration go straight on; later ones wait for the next iteration, where the turns are
    handed out again. A lone body yields every ``TURNS_PER_ITERATION`` chunks.
    """

    __slots__ = ("__weakref__", "_loop", "_reset_due", "_used", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._used = 0
        self._reset_due = False
        self._waiters: list[asyncio.Future[None]] = []

    async def turn(self) -> None:
        """Return when this iteration has a turn left (at once, nearly always)."""
        while self._used >= TURNS_PER_ITERATION:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter
        self._used += 1
        if not self._reset_due:
            self._reset_due = True
            self._loop.call_soon(self._reset)  # runs in the next iteration

    def _reset(self) -> None:
        self._used = 0
        self._reset_due = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


_pacers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pacer] = weakref.WeakKeyDictionary()


def _pacer() -> _Pacer:
    """The running loop's pacer."""
    loop = asyncio.get_running_loop()
    pacer = _pacers.get(loop)
    if pacer is None:
        pacer = _pacers[loop] = _Pacer(loop)
    return pacer


class Transport(Protocol):
    """Sends requests. Implementations raise only ``PhotaError`` subclasses."""

    async def send(self, request: Request) -> Response:
        """Send one request and read its whole response."""
        ...

    async def download(self, request: Request, dest: Path) -> Response:
        """Send a GET and stream a 200 body into ``dest``.

        The returned response's body is the file's first 16 bytes (enough to tell its format),
        or the whole body of a non-200 answer.
        """
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...


def translate(exc: BaseException, request: Request) -> PhotaError:
    """Map an aiohttp/asyncio/OS exception to the SDK's error for it. The one place that does."""
    where = f"{request.method} {request.endpoint}"
    if isinstance(exc, PhotaError):
        return exc
    if isinstance(exc, aiohttp.InvalidURL):
        return InvalidRequestError("base_url", f"invalid URL for {where}")
    if isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        return ConnectError(f"{where}: cannot connect ({type(exc).__name__})")
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError, TimeoutError)):
        return ReadTimeoutError(f"{where}: no answer within the read timeout")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ConnectionLostError(f"{where}: the response body was cut short")
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, OSError)):
        return ConnectionLostError(f"{where}: the connection was lost ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientError):
        return TransportError(f"{where}: {type(exc).__name__}")
    raise exc


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
    """The whole (decompressed) body, or ``ResponseTooLargeError`` once it passes ``cap``."""
    content = resp.content
    chunks: list[bytes] = []
    total = 0
    while chunk := await content.readany():
        total += len(chunk)
        if total > cap:
            resp.close()  # the rest is never read: the connection cannot be reused
            raise too_large(what, cap)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _decode_result(
    resp: aiohttp.ClientResponse, decoder: ResultDecoder
) -> tuple[Any, Decoded]:
    """Feed a studio result to ``decoder`` as it arrives, a turn of the loop's pacer per
    chunk (a fast server keeps aiohttp's buffer full, and ``readany`` then never waits)."""
    content = resp.content
    pacer = _pacer()
    try:
        while chunk := await content.readany():
            await pacer.turn()
            decoder.feed(chunk)
            if decoder.backlog_bytes >= WRITE_BATCH:
                # Bytes bound for temporary files are written in a worker thread, a batch at
                # a time: a write into the page cache can wait for the disk.
                await off_loop(decoder.write_backlog)
        if decoder.backlog_bytes:
            await off_loop(decoder.write_backlog)
        return decoder.close()
    except BaseException:
        decoder.discard()
        resp.close()
        raise


async def _stream(body: StreamedBody) -> AsyncIterator[bytes]:
    """Yield the body's bytes; blobs as base64, chunk by chunk (``_inputs.encoded_chunks``).

    Each chunk takes a turn of the loop's pacer: aiohttp's writer waits only when the socket's
    buffer is full, and a fast reader never fills it, so without the turns one upload of 50 MB
    held the loop for 200 ms, and ten at once for a second.
    """
    pacer = _pacer()
    for part in body.parts:
        if isinstance(part, bytes):
            yield part
            continue
        async for chunk in encoded_chunks(part):
            await pacer.turn()
            yield chunk


async def _stream_file(body: FileBody) -> AsyncIterator[bytes]:
    """Yield a file's raw bytes, chunk by chunk (``_inputs.read_chunks``), a turn of the
    loop's pacer each (see ``_stream``)."""
    pacer = _pacer()
    async for view in read_chunks(body.path, body.size, UPLOAD_CHUNK):
        await pacer.turn()
        yield bytes(view)


def _write_and_close(handle: BinaryIO, chunks: list[bytes]) -> None:
    try:
        handle.writelines(chunks)
    finally:
        handle.close()


def _payload(
    request: Request,
) -> tuple[bytes | AsyncIterator[bytes] | None, Mapping[str, str]]:
    body = request.body
    if isinstance(body, StreamedBody):
        return _stream(body), {**request.headers, "Content-Length": str(body.length)}
    if isinstance(body, FileBody):
        return _stream_file(body), {**request.headers, "Content-Length": str(body.size)}
    return body, request.headers


class AiohttpTransport:
    """The production transport over one ``aiohttp.ClientSession``.

    Args:
        session: a session to borrow (never closed here); by default one is created on first
            use and closed by ``aclose()``.
        connect_timeout: seconds to open a connection.
        read_timeout: seconds to wait for each chunk of the response (synchronous image calls
            may legitimately take up to 600 s).
        ssl: passed through to aiohttp (``True``, ``False`` or an ``ssl.SSLContext``).
        trust_env: honour proxy settings from the environment (``HTTPS_PROXY``, ``NO_PROXY``
            ...), resolved once per scheme and host. Unlike aiohttp's own ``trust_env`` this
            never reads ``~/.netrc`` and costs no thread hop per request.
        limit: the connection pool size.
        max_response_bytes: the largest body held in memory (JSON answers, error bodies),
            counted after decompression; for a studio result, its JSON besides the images.
        max_image_bytes: the largest image: each one decoded from a bytes-mode result, each
            signed-URL output fetched or streamed to a file.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 630.0,
        ssl: bool | ssl_module.SSLContext = True,
        trust_env: bool = True,
        limit: int = 100,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_image_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        for name, value in (
            ("max_response_bytes", max_response_bytes),
            ("max_image_bytes", max_image_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidRequestError(
                    name, f"must be a positive number of bytes, got {value!r}"
                )
        self._max_response = max_response_bytes
        self._max_image = max_image_bytes
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._ssl = ssl
        self._trust_env = trust_env
        self._limit = limit
        self._closed = False
        self._origins: dict[str, dict[str, Any]] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise PhotaError("the transport is closed")
        if self._session is None:
            session = aiohttp.ClientSession(
                timeout=self._timeout, connector=aiohttp.TCPConnector(limit=self._limit)
            )
            # aiohttp silently resends an idempotent request once when a pooled connection was
            # closed under it. The SDK has one retry layer, which counts, logs and keeps the
            # request id of every attempt, so that hidden second attempt is switched off.
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            self._session = session
        return self._session

    def _options(self, url: str) -> dict[str, Any]:
        """The per-request options for ``url``'s origin (TLS, the environment's proxy), worked
        out once per origin; only those that differ from aiohttp's defaults are passed."""
        origin = url[: url.find("/", url.find("//") + 2)]
        found = self._origins.get(origin)
        if found is None:
            found = {} if self._ssl is True else {"ssl": self._ssl}
            if self._trust_env:
                try:
                    proxy, proxy_auth = get_env_proxy_for_url(URL(url))
                except LookupError:
                    pass
                else:
                    found.update(proxy=proxy, proxy_auth=proxy_auth)
            self._origins[origin] = found
        return found

    async def send(self, request: Request) -> Response:
        data, headers = _payload(request)
        try:
            async with self._get_session().request(
                request.method,
                request.url,
                data=data,
                headers=headers,
                allow_redirects=False,
                **self._options(request.url),
            ) as resp:
                expect = request.expect
                if expect == "json" or not 200 <= resp.status < 300:
                    body = await _read_capped(resp, self._max_response, "the response body")
                elif expect == "image":
                    body = await _read_capped(resp, self._max_image, "the image")
                else:
                    decoder = ResultDecoder(self._max_response, self._max_image)
                    decoded = await _decode_result(resp, decoder)
                    return Response(resp.status, resp.headers, b"", decoded)
                return Response(resp.status, resp.headers, body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise translate(exc, request) from exc

    async def download(self, request: Request, dest: Path) -> Response:
        try:
            async with self._get_session().request(
                request.method, request.url, headers=request.headers, **self._options(request.url)
            ) as resp:
                if resp.status != 200:
                    body = await _read_capped(resp, self._max_response, "the response body")
                    return Response(resp.status, resp.headers, body)
                head = b""
                total = 0
                # Chunks are written in batches of WRITE_BATCH bytes, one worker-thread hop per
                # batch (a hop costs more CPU than writing a chunk); the last batch is written
                # and the file closed in one hop.
                batch: list[bytes] = []
                batched = 0
                handle = await off_loop(dest.open, "wb")
                try:
                    async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
                        total += len(chunk)
                        if total > self._max_image:
                            resp.close()
                            raise too_large("the download", self._max_image)
                        if len(head) < HEAD_BYTES:
                            head += chunk[: HEAD_BYTES - len(head)]
                        batch.append(chunk)
                        batched += len(chunk)
                        if batched >= WRITE_BATCH:
                            await off_loop(handle.writelines, batch)
                            batch, batched = [], 0
                finally:
                    await off_loop(_write_and_close, handle, batch)
                return Response(resp.status, resp.headers, head)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise translate(exc, request) from exc

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session:
            await session.close()


Handler = Callable[[Request], "Response | Awaitable[Response]"]


class MockTransport:
    """A transport that answers from a function, for tests without sockets.

    The handler gets every ``Request`` (streamed bodies already joined into ``bytes``) and
    returns a ``Response`` or raises a ``PhotaError`` such as ``ConnectError``.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.closed = False

    async def send(self, request: Request) -> Response:
        data, _ = _payload(request)
        if data is not None and not isinstance(data, bytes):
            chunks = [chunk async for chunk in data]
            request = Request(
                request.method,
                request.url,
                request.endpoint,
                request.headers,
                b"".join(chunks),
                request.retry,
            )
        self.requests.append(request)
        result = self.handler(request)
        return await result if inspect.isawaitable(result) else result

    async def download(self, request: Request, dest: Path) -> Response:
        response = await self.send(request)
        if response.status == 200:
            await off_loop(dest.write_bytes, response.body)
            return Response(response.status, response.headers, response.body[:HEAD_BYTES])
        return response

    async def aclose(self) -> None:
        self.closed = True
