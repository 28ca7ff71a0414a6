"""The transport seam: foreign exceptions translated once, streamed bodies, MockTransport."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import warnings
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey

from phota_async import AiohttpTransport, MockTransport
from phota_async import _protocol as proto
from phota_async._inputs import ImageBlob
from phota_async._protocol import Request, Response
from phota_async._transport import ForeignError, translate
from phota_async.errors import (
    ConnectError,
    ConnectionLostError,
    InvalidRequestError,
    ReadTimeoutError,
    TransportError,
)
from tests.conftest import local_server

GET = Request("GET", "http://127.0.0.1:1/x", "/x", {})


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (aiohttp.ServerDisconnectedError(), ConnectionLostError),
        (aiohttp.ClientPayloadError("cut"), ConnectionLostError),
        (aiohttp.ServerTimeoutError(), ReadTimeoutError),
        (TimeoutError(), ReadTimeoutError),
        (aiohttp.InvalidURL("::"), InvalidRequestError),
        (aiohttp.ClientError(), TransportError),
        (ConnectionResetError(), ConnectionLostError),
    ],
)
def test_foreign_exceptions_are_translated(exc: BaseException, expected: type) -> None:
    """Each aiohttp/asyncio/OS exception maps to its SDK error."""
    assert isinstance(translate(exc, GET), expected)


def test_unrelated_exceptions_are_not_swallowed() -> None:
    """A programming error passes through untranslated."""
    with pytest.raises(KeyError):
        translate(KeyError("bug"), GET)


async def test_connection_refused_is_connect_error() -> None:
    """Sending to a port nobody listens on raises ConnectError, chained to a scrubbed
    description of aiohttp's exception rather than to the exception itself."""
    transport = AiohttpTransport()
    try:
        with pytest.raises(ConnectError) as info:
            await transport.send(Request("GET", f"http://127.0.0.1:{free_port()}/x", "/x", {}))
    finally:
        await transport.aclose()
    assert isinstance(info.value.__cause__, ForeignError)
    assert "ClientConnectorError" in str(info.value.__cause__)


async def test_read_timeout_is_read_timeout_error() -> None:
    """A server slower than read_timeout raises ReadTimeoutError."""

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.Response()

    app = web.Application()
    app.router.add_get("/slow", slow)
    transport = AiohttpTransport(read_timeout=0.1)
    async with local_server(app, shutdown_timeout=0.1) as origin:
        try:
            with pytest.raises(ReadTimeoutError):
                await transport.send(Request("GET", f"{origin}/slow", "/slow", {}))
        finally:
            await transport.aclose()


async def test_streamed_body_arrives_whole_with_content_length(tmp_path: Path) -> None:
    """A blob from disk is sent as base64 inside the JSON, with an exact Content-Length."""
    raw = bytes(range(256)) * 5000  # 1.28 MB, spans several chunks
    path = tmp_path / "img.bin"
    path.write_bytes(raw)
    seen: dict[str, object] = {}

    async def echo(request: web.Request) -> web.Response:
        seen["length"] = request.content_length
        seen["body"] = await request.read()
        return web.json_response({})

    app = web.Application(client_max_size=10 * 1024 * 1024)
    app.router.add_post("/e", echo)
    transport = AiohttpTransport()
    async with local_server(app) as origin:
        try:
            body = proto.json_body({"image": ImageBlob(size=len(raw), format="png", path=path)})
            headers = {"Content-Type": "application/json"}
            await transport.send(Request("POST", f"{origin}/e", "/e", headers, body))
        finally:
            await transport.aclose()
    sent = seen["body"]
    assert isinstance(sent, bytes)
    assert seen["length"] == len(sent)
    assert base64.b64decode(json.loads(sent)["image"]) == raw


async def test_large_download_is_written_whole(tmp_path: Path) -> None:
    """A body of several write batches lands byte for byte; the answer carries its head."""
    raw = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 12_000  # about 2.9 MiB, not whole MiBs

    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=raw, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/out.jpg", serve)
    transport = AiohttpTransport()
    dest = tmp_path / "out.part"
    async with local_server(app) as origin:
        try:
            response = await transport.download(proto.download(f"{origin}/out.jpg"), dest)
        finally:
            await transport.aclose()
    assert (response.status, response.body) == (200, raw[:16])
    assert dest.read_bytes() == raw


async def test_borrowed_session_is_not_closed() -> None:
    """aclose() leaves a borrowed session open."""
    async with aiohttp.ClientSession() as session:
        transport = AiohttpTransport(session)
        await transport.aclose()
        assert not session.closed


async def test_mock_transport_joins_streamed_bodies() -> None:
    """MockTransport hands its handler the full body bytes."""
    transport = MockTransport(
        lambda r: Response(200, {}, r.body if isinstance(r.body, bytes) else b"")
    )
    body = proto.json_body({"image": ImageBlob(size=3, format="png", data=b"abc")})
    response = await transport.send(Request("POST", "http://x/y", "/y", {}, body))
    assert json.loads(response.body) == {"image": "YWJj"}


def _key(host: str, port: int, **extra: object) -> ConnectionKey:
    fields: dict[str, object] = {
        "host": host, "port": port, "is_ssl": False, "ssl": True, "proxy": None,
        "proxy_auth": None, "proxy_headers_hash": None,
    }  # fmt: skip
    fields.update(extra)
    return ConnectionKey(**fields)  # type: ignore[arg-type]


def test_dns_failure_names_the_host() -> None:
    """A name that does not resolve is reported as a DNS failure naming the host."""
    exc = aiohttp.ClientConnectorDNSError(
        _key("api.example.invalid", 443), socket.gaierror(-2, "Name or service not known")
    )
    message = str(translate(exc, GET))
    assert "cannot resolve api.example.invalid (DNS failure: name or service not known)" in message


def test_connect_timeout_names_host_and_port() -> None:
    """A connection not opened within connect_timeout is reported with host and port."""
    error = translate(aiohttp.ConnectionTimeoutError("Connection timeout to host"), GET)
    assert isinstance(error, ConnectError)
    assert "no connection to 127.0.0.1:1 within the connect timeout: check base_url" in str(error)


def test_proxy_failure_keeps_no_proxy_credentials() -> None:
    """A proxy that refuses the connection is named, its credentials appear nowhere."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # what the connector still builds
        auth = aiohttp.BasicAuth("user", "pr0xy-pa55")
    key = _key("proxy.local", 3128, proxy_auth=auth)
    exc = aiohttp.ClientProxyConnectionError(key, ConnectionRefusedError(111, "refused"))
    error = translate(exc, GET)
    assert "cannot connect to the proxy proxy.local:3128" in str(error)
    assert "pr0xy-pa55" not in repr(error) + repr(error.__cause__) + repr(vars(error.__cause__))


def test_foreign_exception_quoting_the_key_is_scrubbed() -> None:
    """A foreign exception whose text quotes the request's API key is chained with it masked."""
    request = Request("GET", "http://127.0.0.1:1/x", "/x", {"X-API-Key": "sk-abcdef123456"})
    error = translate(aiohttp.ClientPayloadError("echo sk-abcdef123456"), request)
    assert "sk-abcdef123456" not in repr(error.__cause__)
    assert "echo ***" in str(error.__cause__)


def test_every_request_carries_the_transport_timeouts() -> None:
    """The per-origin options carry the transport's own ClientTimeout, with no total limit,
    so a borrowed session's timeout never applies."""
    transport = AiohttpTransport(connect_timeout=3, read_timeout=45)
    timeout = transport._options("http://127.0.0.1:1/x")["timeout"]
    assert timeout == aiohttp.ClientTimeout(total=None, connect=3, sock_connect=3, sock_read=45)
    assert transport._options("http://127.0.0.1:1/y")["timeout"] is timeout


@pytest.mark.parametrize("follow", [False, True])
def test_download_redirect_from_https_to_http_is_never_followed(follow: bool) -> None:
    """A download redirected from https to plain http is refused, even when the caller opted
    in to cross-host redirects."""
    transport = AiohttpTransport(follow_download_redirects=follow)
    request = proto.download("https://a.example/out.jpg?sig=1")
    with pytest.raises(TransportError, match="from https to http"):
        transport._redirect_target(request, request.url, "http://a.example/out.jpg?sig=2")


def test_relative_download_redirect_resolves_against_the_url() -> None:
    """A relative Location stays on the URL's origin and is followed."""
    transport = AiohttpTransport()
    request = proto.download("https://a.example/x/out.jpg?sig=1")
    target = transport._redirect_target(request, request.url, "../y/out.jpg?sig=2")
    assert target == "https://a.example/y/out.jpg?sig=2"


async def test_mock_transport_download_writes_the_file(tmp_path: Path) -> None:
    """MockTransport's download writes a 200 body to the file and hands back its head."""
    raw = b"\xff\xd8\xff" + bytes(100)
    transport = MockTransport(lambda r: Response(200, {}, raw))
    dest = tmp_path / "x.part"
    response = await transport.download(proto.download("http://x/y"), dest)
    assert dest.read_bytes() == raw
    assert response.body == raw[:16]
