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
import inspect
import ssl as ssl_module
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from ._files import off_loop
from ._inputs import BodyChunks
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


def _write_and_close(handle: BinaryIO, chunks: list[bytes]) -> None:
    try:
        handle.writelines(chunks)
    finally:
        handle.close()


def _payload(
    request: Request,
) -> tuple[bytes | AsyncIterator[bytes] | None, Mapping[str, str]]:
    body = request.body
    # Streamed bodies are BodyChunks, which send() closes however it ends: a cancelled upload
    # closes its input file at once, not when the event loop gets round to it.
    if isinstance(body, StreamedBody):
        return BodyChunks(body.parts), {**request.headers, "Content-Length": str(body.length)}
    if isinstance(body, FileBody):
        stream = BodyChunks.of_file(body.path, body.size, UPLOAD_CHUNK)
        return stream, {**request.headers, "Content-Length": str(body.size)}
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
                body = await resp.read()
                return Response(resp.status, resp.headers, body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise translate(exc, request) from exc
        finally:
            if isinstance(data, BodyChunks):
                data.close()

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
