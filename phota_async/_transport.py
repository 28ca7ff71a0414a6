"""The one transport seam: ``Transport.send(Request) -> Response``.

``AiohttpTransport`` is the only place in the SDK that imports aiohttp's client. Every exception
aiohttp or asyncio can raise while sending is translated here, once, into ``phota_async.errors``
with ``raise ... from exc``; the distinction that matters downstream is whether the request
can have reached the server (``ConnectError``: certainly not) or not.

``MockTransport(handler)`` serves unit tests: the handler receives each ``Request`` and returns
a ``Response`` (or raises a ``PhotaError``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

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

# The request whose attempt is being sent by this task, for ``_MarkingConnector``.
_SENDING: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "phota_sending", default=None
)


class Transport(Protocol):
    """Sends requests. Implementations raise only ``PhotaError`` subclasses."""

    async def send(self, request: Request) -> Response:
        """Send one request and read its whole response.

        Sets ``request.sent = True`` once the request may reach the server (it has a
        connection); a call whose deadline passes before that is known to be unsent.
        """
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


def _unreadable(name: object, exc: OSError) -> InvalidRequestError:
    """An input that failed while its body was being sent: the server got a cut-short body,
    which it cannot have processed, so this is the caller's error, not an unknown outcome."""
    return InvalidRequestError(
        "image",
        f"{name} could not be read while the request was being sent "
        f"({exc.strerror or type(exc).__name__}); the request was abandoned unfinished, so "
        "nothing was processed",
    )


async def _stream(body: StreamedBody) -> AsyncIterator[bytes]:
    """Yield the body's bytes; blobs as base64, chunk by chunk (``_inputs.encoded_chunks``)."""
    for part in body.parts:
        if isinstance(part, bytes):
            yield part
            continue
        try:
            async for chunk in encoded_chunks(part):
                yield chunk
        except OSError as exc:
            raise _unreadable(part.path or "an image file", exc) from exc


async def _stream_file(body: FileBody) -> AsyncIterator[bytes]:
    """Yield a file's raw bytes, chunk by chunk (``_inputs.read_chunks``)."""
    try:
        async for view in read_chunks(body.path, body.size, UPLOAD_CHUNK):
            yield bytes(view)
    except OSError as exc:
        raise _unreadable(body.path, exc) from exc


def _local_failure(exc: BaseException) -> InvalidRequestError | None:
    """The input error behind a failed send, if the body itself failed (aiohttp wraps it)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, InvalidRequestError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class _MarkingConnector(aiohttp.TCPConnector):
    """A connector that marks the request being sent once it has a connection: from then on
    the request may reach the server. Before that (waiting for a pooled connection, DNS,
    connecting) nothing can have been sent."""

    async def connect(
        self, req: aiohttp.ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> Any:
        connection = await super().connect(req, traces, timeout)
        request = _SENDING.get()
        if request is not None:
            request.sent = True
        return connection


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
    ) -> None:
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
                timeout=self._timeout, connector=_MarkingConnector(limit=self._limit)
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
        if self._owns_session:
            token = _SENDING.set(request)
        else:
            request.sent = True  # a borrowed session's connector cannot tell: assume sent
        try:
            async with self._get_session().request(
                request.method,
                request.url,
                data=data,
                headers=headers,
                allow_redirects=False,
                **self._options(request.url),
            ) as resp:
                body = await resp.read()
                return Response(resp.status, resp.headers, body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            local = _local_failure(exc) if data is not None else None
            if local is not None:
                raise local from local.__cause__
            raise translate(exc, request) from exc
        finally:
            if self._owns_session:
                _SENDING.reset(token)

    async def download(self, request: Request, dest: Path) -> Response:
        try:
            async with self._get_session().request(
                request.method, request.url, headers=request.headers, **self._options(request.url)
            ) as resp:
                if resp.status != 200:
                    return Response(resp.status, resp.headers, await resp.read())
                head = b""
                # Chunks are written in batches of WRITE_BATCH bytes, one worker-thread hop per
                # batch (a hop costs more CPU than writing a chunk); the last batch is written
                # and the file closed in one hop.
                batch: list[bytes] = []
                batched = 0
                handle = await off_loop(dest.open, "wb")
                try:
                    async for chunk in resp.content.iter_chunked(DOWNLOAD_CHUNK):
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
        request.sent = True
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
