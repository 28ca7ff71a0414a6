"""The transport seam: foreign exceptions translated once, streamed bodies, MockTransport."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.client_reqrep import ConnectionKey

from phota_async import AiohttpTransport, MockTransport
from phota_async import _protocol as proto
from phota_async._decode import MAX_SPOOLED, Decoded, ResultDecoder, SpooledImage
from phota_async._inputs import CHUNK, ImageBlob
from phota_async._protocol import Request, Response
from phota_async._transport import (
    TURNS_PER_ITERATION,
    ForeignError,
    _decode_result,
    _payload,
    translate,
)
from phota_async.errors import (
    ConnectError,
    ConnectionLostError,
    InvalidRequestError,
    ReadTimeoutError,
    ResponseTooLargeError,
    ResponseValidationError,
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


async def test_a_borrowed_sessions_requests_carry_the_transport_timeouts() -> None:
    """With a borrowed session, the per-origin options carry the transport's own ClientTimeout
    (no total limit), so the session's timeout never applies; an owned session has it already."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
        transport = AiohttpTransport(session, connect_timeout=3, read_timeout=45)
        timeout = transport._options("http://127.0.0.1:1/x")["timeout"]
        assert timeout == aiohttp.ClientTimeout(total=None, connect=3, sock_connect=3, sock_read=45)
        assert transport._options("http://127.0.0.1:1/y")["timeout"] is timeout
    owned = AiohttpTransport(connect_timeout=3, read_timeout=45)
    assert "timeout" not in owned._options("http://127.0.0.1:1/x")


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


# -- studio results decoded as they stream in (``_decode.ResultDecoder``) -----------------


def _result_json(image: bytes) -> bytes:
    """A studio answer with one long image (``/`` written as ``\\/``, as some encoders do),
    one short one, and short strings full of escapes around them."""
    text = base64.b64encode(image).decode().replace("/", "\\/")
    return (
        '{"known_subjects": {"counts": {"a\\"b": 1}}, "note": "caf\\u00e9 \\\\ \\"q\\"", '
        f'"images": ["{text}", "{base64.b64encode(b"tiny").decode()}"], "download_urls": []}}'
    ).encode()


def _decode_in_chunks(body: bytes, size: int, **caps: int) -> tuple[object, Decoded]:
    decoder = ResultDecoder(caps.get("json", 1 << 20), caps.get("image", 1 << 24))
    for start in range(0, len(body), size):
        decoder.feed(body[start : start + size])
    return decoder.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("size", [1, 3, 4096, 65_537, 1 << 30])
def test_result_decoder_reads_the_same_json_whatever_the_chunking(size: int) -> None:
    """Chunk boundaries anywhere (inside escapes, quanta, quotes) give the same answer."""
    image = os.urandom(300_000) if size > 1 else os.urandom(90_000)
    body = _result_json(image)
    value, images = _decode_in_chunks(body, size)
    expected = json.loads(body)
    assert isinstance(value, dict)
    marker = value["images"][0]
    assert images == {marker: image}
    assert value["images"][1] == expected["images"][1]
    assert {k: v for k, v in value.items() if k != "images"} == {
        k: v for k, v in expected.items() if k != "images"
    }


def test_result_decoder_spools_a_large_image_to_a_file() -> None:
    """An image over 1 MiB is held in a file that reads back byte for byte."""
    image = os.urandom(3 * 1024 * 1024)
    value, images = _decode_in_chunks(_result_json(image), 200_000)
    assert isinstance(value, dict)
    spooled = images[value["images"][0]]
    assert isinstance(spooled, SpooledImage)
    assert (spooled.size, spooled.read()) == (len(image), image)
    spooled.close()
    assert spooled.closed


@pytest.mark.parametrize(
    "text", ["QUJD!ERF", "QUJD\\nREVG", "QUI=QUJD", "QUJDRA"], ids=["char", "escape", "pad", "cut"]
)
def test_result_decoder_refuses_a_long_string_that_is_not_base64(text: str) -> None:
    """Invalid base64 in a long string, even past a spooled megabyte, fails and closes files."""
    fds = _open_fds()
    good = base64.b64encode(os.urandom(3 * 1024 * 1024)).decode()
    body = f'{{"images": ["{good}{text}"]}}'.encode()
    with pytest.raises(ResponseValidationError, match="base64"):
        _decode_in_chunks(body, 65_536)
    assert _open_fds() == fds


def test_result_decoder_caps_each_image() -> None:
    """A long string decoding past max_image_bytes is refused."""
    body = _result_json(os.urandom(200_000))
    with pytest.raises(ResponseTooLargeError) as caught:
        _decode_in_chunks(body, 65_536, image=100_000)
    assert caught.value.limit == 100_000


def test_result_decoder_caps_the_json_besides_images() -> None:
    """The JSON around the long strings is held to max_json_bytes."""
    body = b"[" + b"0," * 100_000 + b"0]"
    with pytest.raises(ResponseTooLargeError):
        _decode_in_chunks(body, 65_536, json=50_000)


def test_result_decoder_caps_the_number_of_long_strings() -> None:
    """More long strings than any result has is refused, whatever their size."""
    one = '"' + "A" * 70_000 + '"'
    body = ("[" + ",".join([one] * (MAX_SPOOLED + 1)) + "]").encode()
    with pytest.raises(ResponseTooLargeError):
        _decode_in_chunks(body, 65_536)


def test_result_decoder_refuses_a_body_cut_inside_a_long_string() -> None:
    """A body that ends inside a long string is invalid JSON, and its file is closed."""
    fds = _open_fds()
    body = _result_json(os.urandom(2_000_000))
    with pytest.raises(ResponseValidationError, match="cut short"):
        _decode_in_chunks(body[: len(body) // 2], 65_536)
    assert _open_fds() == fds


def _stream(body: proto.StreamedBody) -> AsyncIterator[bytes]:
    """The chunks the transport sends for ``body``."""
    data, _ = _payload(Request("POST", "http://127.0.0.1:1/x", "/x", {}, body, "paid"))
    assert data is not None
    assert not isinstance(data, bytes)
    return data


class _Instant:
    """A response whose whole body is already buffered: ``readany`` never waits."""

    def __init__(self, body: bytes, chunk: int) -> None:
        self._chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)]
        self.content = self

    async def readany(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""

    def close(self) -> None:
        pass


async def _ticks_during(work: Awaitable[object]) -> tuple[int, object]:
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = ticks
    try:
        result = await work
    finally:
        done = True
        await task
    return ticks - started, result


async def test_result_decoding_yields_to_the_loop_between_slices() -> None:
    """Decoding a 7.5 MiB result that is already buffered still lets other tasks run."""
    images = [os.urandom(384 * 1024) for _ in range(15)]  # each kept in memory: no file writes
    texts = ", ".join(f'"{base64.b64encode(image).decode()}"' for image in images)
    body = f'{{"images": [{texts}]}}'.encode()
    fake: Any = _Instant(body, 64 * 1024)
    decoder = ResultDecoder(1 << 20, 1 << 24)
    ticks, (value, decoded) = await _ticks_during(_decode_result(fake, decoder))
    assert ticks >= len(body) // (64 * 1024) // TURNS_PER_ITERATION - 1
    assert [decoded[marker] for marker in value["images"]] == images


async def test_uploads_yield_to_the_loop_between_chunks() -> None:
    """Sending a 3 MiB image from memory lets other tasks run every few chunks."""
    raw = os.urandom(3 * 1024 * 1024)
    body = proto.json_body({"image": ImageBlob(size=len(raw), format="jpeg", data=raw)})
    assert isinstance(body, proto.StreamedBody)

    async def drain() -> bytes:
        return b"".join([piece async for piece in _stream(body)])

    ticks, sent = await _ticks_during(drain())
    assert isinstance(sent, bytes)
    assert base64.b64decode(json.loads(sent)["image"]) == raw
    assert ticks >= len(raw) // CHUNK // TURNS_PER_ITERATION - 1


async def test_many_uploads_share_the_loop_iteration_budget() -> None:
    """Sixteen uploads at once do no more chunks per loop iteration than one would."""
    raw = os.urandom(2 * 1024 * 1024)
    body = proto.json_body({"image": ImageBlob(size=len(raw), format="jpeg", data=raw)})
    assert isinstance(body, proto.StreamedBody)
    since_tick = worst = 0
    done = False

    async def ticker() -> None:
        nonlocal since_tick, worst
        while not done:
            worst = max(worst, since_tick)
            since_tick = 0
            await asyncio.sleep(0)

    async def drain() -> None:
        nonlocal since_tick
        async for piece in _stream(body):
            since_tick += len(piece) > 1024  # image chunks, not the JSON around them

    task = asyncio.create_task(ticker())
    await asyncio.gather(*(drain() for _ in range(16)))
    done = True
    await task
    # Between two ticks lie the end of one iteration and the start of the next.
    assert 0 < worst <= 2 * TURNS_PER_ITERATION


def test_urls_without_a_path_keep_their_own_origin_options() -> None:
    """Two hosts whose URLs have no path never share the options worked out for one origin."""
    transport = AiohttpTransport()
    first = transport._options("http://host1")
    assert transport._options("http://host2") is not first
    assert transport._options("http://host1") is first
