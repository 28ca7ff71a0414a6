"""The one transport seam: ``Transport.send(Request) -> Response``.

``AiohttpTransport`` is the only place in the SDK that imports aiohttp's client. Every exception
aiohttp or asyncio can raise while sending is translated here, once, into ``phota_async.errors``,
chained to a ``ForeignError`` that describes it without the request headers that aiohttp's
own exceptions carry (the API key among them). The distinction that matters downstream is
whether the request can have reached the server (``ConnectError``: certainly not) or not.

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
import contextlib
import contextvars
import inspect
import socket
import ssl as ssl_module
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from ._decode import Decoded, ResultDecoder, too_large
from ._files import off_loop, settled
from ._inputs import BodyChunks
from ._protocol import FileBody, Request, Response, StreamedBody
from ._redact import shown
from .errors import (
    ConnectError,
    ConnectionLostError,
    InvalidRequestError,
    PhotaError,
    ReadTimeoutError,
    ResponseRefusedError,
    TransportError,
)

DOWNLOAD_CHUNK = 256 * 1024
WRITE_BATCH = 1024 * 1024
HEAD_BYTES = 16  # what a download hands back: enough to tell the image format
UPLOAD_CHUNK = 1024 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
MAX_DOWNLOAD_REDIRECTS = 5
MAX_ORIGINS = 64  # per-origin options kept; more (a redirecting server's hosts) start afresh

# The request whose attempt is being sent by this task, for ``_MarkingConnector``.
_SENDING: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "phota_sending", default=None
)

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
    """Sends requests. Implementations raise only ``PhotaError`` subclasses.

    A transport may declare ``marks_sent = True``: it sets ``request.sent`` itself, once the
    request may reach the server, so that a deadline passing before that reports the call as
    certainly unsent. Without it (the safe default for a third-party transport, read with
    ``getattr``) a request counts as possibly sent as soon as it is handed over. It is not a
    protocol member, so a transport written before it existed still type-checks.
    """

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


class ForeignError(Exception):
    """What is kept of an aiohttp/asyncio/OS exception once translated: its type and a
    description that holds no request header, no URL query and no proxy credential.

    aiohttp's own exceptions keep ``request_info`` (every request header, ``X-API-Key``
    included) and connection keys (proxy credentials), so they are never chained to an SDK
    error; this stand-in is, as the translated error's ``__cause__``.
    """


# Header values that must never reach an error text, whatever a foreign exception quotes.
_SECRET_HEADERS = frozenset({"x-api-key", "authorization", "proxy-authorization", "cookie"})


def _describe(exc: BaseException, request: Request) -> str:
    """The foreign exception as one line, without headers, URL queries or credentials."""
    if isinstance(exc, aiohttp.ClientResponseError):
        text = f"{exc.status}, message={exc.message!r}"  # str() would add the URL
    elif isinstance(exc, aiohttp.ClientConnectorError):
        text = f"{exc.host}:{exc.port}: {exc.os_error}"  # args hold the proxy credentials
    elif isinstance(exc, aiohttp.InvalidURL):
        text = "invalid URL"  # the URL may be a signed one
    else:
        text = str(exc)
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return f"{name}: {_scrub(text, request)}" if text else name


def _scrub(text: str, request: Request) -> str:
    """``text`` on one line (aiohttp's parser errors span several), cut to 300 characters,
    with the request's secret header values masked."""
    for name, value in request.headers.items():
        if name.lower() in _SECRET_HEADERS and value:
            text = text.replace(value, "***")
    return " ".join(text.split())[:300]


def _host_port(url: str) -> str:
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}"


def _cannot_connect(exc: BaseException, request: Request) -> str:
    """What was tried, what went wrong and the likely fix, for a connection that never opened."""
    fix = "check base_url" if request.endpoint.startswith("/") else "check the URL"
    if not isinstance(exc, aiohttp.ClientConnectorError):  # a connect timeout
        return f"no connection to {_host_port(request.url)} within the connect timeout: {fix}"
    target = f"{exc.host}:{exc.port}"
    reason = (exc.os_error.strerror or type(exc.os_error).__name__).lower()
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return f"cannot connect to the proxy {target} ({reason}): check HTTPS_PROXY/NO_PROXY"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return (
            f"cannot connect to {target} (TLS certificate not trusted: "
            f"{exc.certificate_error}): check ssl= or the system's CA store"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"cannot connect to {target} (TLS handshake failed: {reason}): {fix}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(
        exc.os_error, socket.gaierror
    ):
        return f"cannot resolve {exc.host} (DNS failure: {reason}): {fix} and the network"
    if isinstance(exc.os_error, ConnectionRefusedError):
        return f"cannot connect to {target} (connection refused): is the server running? {fix}"
    return f"cannot connect to {target} ({reason}): {fix} and the network"


def translate(exc: BaseException, request: Request) -> PhotaError:
    """Map an aiohttp/asyncio/OS exception to the SDK's error for it. The one place that does.

    The error returned is already chained: its ``__cause__`` is a ``ForeignError`` describing
    ``exc`` without its request headers. Raise it outside the ``except`` block that caught
    ``exc`` (``raise error``), so that ``exc`` is not kept as its ``__context__`` either.

    Args:
        exc: the exception raised while sending ``request``.
        request: the request being sent.

    Returns:
        The ``PhotaError`` to raise (``exc`` itself when it already is one).

    Raises:
        BaseException: ``exc`` itself when it is not a transport failure (a programming error).
    """
    if isinstance(exc, PhotaError):
        return exc
    where = f"{request.method} {request.endpoint}"
    error: PhotaError
    if isinstance(exc, aiohttp.InvalidURL):
        error = InvalidRequestError("base_url", f"invalid URL for {where}")
    elif isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)):
        error = ConnectError(f"{where}: {_cannot_connect(exc, request)}")
    elif isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError, TimeoutError)):
        error = ReadTimeoutError(f"{where}: no answer within the read timeout")
    elif isinstance(exc, aiohttp.ClientPayloadError):
        error = ConnectionLostError(f"{where}: the response body was cut short")
    elif isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, OSError)):
        error = ConnectionLostError(f"{where}: the connection was lost ({type(exc).__name__})")
    elif isinstance(exc, aiohttp.ClientResponseError):
        error = TransportError(f"{where}: malformed response ({_scrub(exc.message, request)})")
    elif isinstance(exc, aiohttp.ClientError):
        error = TransportError(f"{where}: {type(exc).__name__}")
    else:
        raise exc
    error.__cause__ = ForeignError(_describe(exc, request))
    error.__suppress_context__ = True
    return error


def _create(path: Path) -> BinaryIO:
    return path.open("wb")


def _close(handle: BinaryIO) -> None:
    handle.close()


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


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, what: str) -> bytes:
    """The whole (decompressed) body, or ``ResponseTooLargeError`` once it passes ``cap``."""
    headers = resp.headers
    length = headers.get("Content-Length")
    if (
        length is not None
        and length.isdigit()
        and int(length) <= cap
        and ("Content-Encoding" not in headers)
    ):
        # A plain body of a known length within the cap: aiohttp reads exactly that many
        # bytes, so its own read (the cheapest) is bounded too.
        return await resp.read()
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
    # closes its input file at once, not when the event loop gets round to it. Each chunk of
    # a file takes a turn of the loop's pacer: aiohttp's writer waits only when the socket's
    # buffer is full, and a fast reader never fills it, so without the turns one upload of
    # 50 MB held the loop for 200 ms, and ten at once for a second.
    if isinstance(body, StreamedBody):
        stream = BodyChunks(body.parts, pace=_pacer().turn)
        return stream, {**request.headers, "Content-Length": str(body.length)}
    if isinstance(body, FileBody):
        stream = BodyChunks.of_file(body.path, body.size, UPLOAD_CHUNK, pace=_pacer().turn)
        return stream, {**request.headers, "Content-Length": str(body.size)}
    return body, request.headers


class AiohttpTransport:
    """The production transport over one ``aiohttp.ClientSession``. It marks each request as
    sent once it has a connection (``marks_sent``).

    Timeouts are passed with every request, so a borrowed session behaves like an owned one:
    its own ``timeout`` (aiohttp's default cuts every request at 300 s) and its
    ``raise_for_status`` never apply.

    API requests follow no redirect. Downloads of signed URLs follow a redirect within the
    same origin (scheme, host and port), at most ``MAX_DOWNLOAD_REDIRECTS`` times; one to
    another origin only with ``follow_download_redirects=True``, and never from https to
    http. Downloads carry no API key, so no credential can cross to another host.

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
        follow_download_redirects: let downloads follow redirects to another host.
        max_response_bytes: the largest body held in memory (JSON answers, error bodies),
            counted after decompression; for a studio result, its JSON besides the images.
        max_image_bytes: the largest image: each one decoded from a bytes-mode result, each
            signed-URL output fetched or streamed to a file.
    """

    marks_sent = True  # its connector marks the request once it has a connection

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 630.0,
        ssl: bool | ssl_module.SSLContext = True,
        trust_env: bool = True,
        limit: int = 100,
        follow_download_redirects: bool = False,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_image_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        for name, value in (
            ("max_response_bytes", max_response_bytes),
            ("max_image_bytes", max_image_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidRequestError(
                    name, f"must be a positive number of bytes, got {shown(value)}"
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
        self._follow = follow_download_redirects
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
        """The per-request options for ``url``'s origin (timeouts, TLS, the environment's
        proxy), worked out once per origin; TLS and proxy only when they differ from aiohttp's
        defaults. Timeouts and ``raise_for_status`` override a borrowed session's own (aiohttp
        uses a request's ``ClientTimeout`` whole, instead of the session's, without merging); a
        session of our own already has ours, and passing them again costs every request."""
        end = url.find("/", url.find("//") + 2)
        origin = url if end < 0 else url[:end]  # a URL with no path is all origin
        found = self._origins.get(origin)
        if found is None:
            found = (
                {} if self._owns_session else {"timeout": self._timeout, "raise_for_status": False}
            )
            if self._ssl is not True:
                found["ssl"] = self._ssl
            if self._trust_env:
                try:
                    proxy, proxy_auth = get_env_proxy_for_url(URL(url))
                except LookupError:
                    pass
                else:
                    found.update(proxy=proxy, proxy_auth=proxy_auth)
            if len(self._origins) >= MAX_ORIGINS:  # redirects may name any number of hosts
                self._origins.clear()
            self._origins[origin] = found
        return found

    @contextlib.asynccontextmanager
    async def _follow_redirects(self, request: Request) -> AsyncIterator[aiohttp.ClientResponse]:
        """GET a download URL, following the redirects the policy allows (see the class)."""
        session = self._get_session()
        url = request.url
        for _ in range(MAX_DOWNLOAD_REDIRECTS + 1):
            resp = await session.get(
                url, headers=request.headers, allow_redirects=False, **self._options(url)
            )
            async with resp:
                location = resp.headers.get("Location")
                if resp.status not in REDIRECT_STATUSES or location is None:
                    yield resp
                    return
                url = self._redirect_target(request, url, location)
        raise ResponseRefusedError(
            f"{request.method} {request.endpoint}: more than {MAX_DOWNLOAD_REDIRECTS} redirects"
        )

    def _redirect_target(self, request: Request, url: str, location: str) -> str:
        """The URL a download redirect leads to, or ``TransportError`` if it is not followed.

        Messages name the hosts only: a signed URL's query is a credential.
        """
        here = URL(url)
        try:
            there = here.join(URL(location))
        except ValueError:
            there = URL()
        where = f"{request.method} {request.endpoint}"
        if there.scheme not in ("http", "https") or not there.host:
            raise ResponseRefusedError(f"{where}: redirected to an unusable URL; not followed")
        if (there.scheme, there.host, there.port) == (here.scheme, here.host, here.port):
            return str(there)
        if here.scheme == "https" and there.scheme == "http":
            raise ResponseRefusedError(
                f"{where}: redirected from https to http ({there.host}:{there.port}); not followed"
            )
        if not self._follow:
            raise ResponseRefusedError(
                f"{where}: redirected from {here.host}:{here.port} to another host "
                f"({there.host}:{there.port}); not followed. Pass "
                "PhotaClient(follow_download_redirects=True) to allow it"
            )
        return str(there)

    async def send(self, request: Request) -> Response:
        """Send one request on the session and read its whole response, capped at
        ``max_response_bytes``; aiohttp's errors become the SDK's transport errors."""
        data, headers = _payload(request)
        if self._owns_session:
            token = _SENDING.set(request)
        else:
            request.sent = True  # a borrowed session's connector cannot tell: assume sent
        try:
            opened: AbstractAsyncContextManager[aiohttp.ClientResponse]
            if request.endpoint == "download":
                opened = self._follow_redirects(request)
            else:  # the API path, spelt out: it is the one every call takes
                opened = self._get_session().request(
                    request.method,
                    request.url,
                    data=data,
                    headers=headers,
                    allow_redirects=False,
                    **self._options(request.url),
                )
            async with opened as resp:
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
            local = _local_failure(exc) if data is not None else None
            error = local if local is not None else translate(exc, request)
        finally:
            if self._owns_session:
                _SENDING.reset(token)
            if isinstance(data, BodyChunks):
                data.close()
        raise error  # outside the except block: ``exc`` must not become its __context__

    async def download(self, request: Request, dest: Path) -> Response:
        """Stream a 200 body into ``dest`` (capped at ``max_image_bytes``), following only
        the redirects allowed; the response's body is the file's first bytes."""
        try:
            async with self._follow_redirects(request) as resp:
                if resp.status != 200:
                    body = await _read_capped(resp, self._max_response, "the response body")
                    return Response(resp.status, resp.headers, body)
                head = b""
                total = 0
                # Chunks are written in batches of WRITE_BATCH bytes, one worker-thread hop per
                # batch (a hop costs more CPU than writing a chunk); the last batch is written
                # and the file closed in one hop. Each hop is settled: a cancellation waits
                # for the thread to finish with the file, so the caller can remove it.
                batch: list[bytes] = []
                batched = 0
                handle = await settled(_create, dest, undo=_close)
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
                            await settled(handle.writelines, batch)
                            batch, batched = [], 0
                finally:
                    await settled(_write_and_close, handle, batch, dropped=handle.close)
                return Response(resp.status, resp.headers, head)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = translate(exc, request)
        raise error  # outside the except block: ``exc`` must not become its __context__

    async def aclose(self) -> None:
        """Close the session if this transport made it (a borrowed one is left open).
        Idempotent."""
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

    marks_sent = True  # every request reaches the handler

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self.closed = False

    async def send(self, request: Request) -> Response:
        """Record the request (a streamed body joined into bytes) in ``requests`` and
        return the handler's answer."""
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
        """Answer as ``send`` does, writing a 200 body to ``dest``."""
        response = await self.send(request)
        if response.status == 200:
            await settled(dest.write_bytes, response.body)
            return Response(response.status, response.headers, response.body[:HEAD_BYTES])
        return response

    async def aclose(self) -> None:
        """Mark the transport closed (``closed``)."""
        self.closed = True
