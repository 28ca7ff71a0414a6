"""A hostile or broken server at the edges of the client: foreign exceptions that would carry
the API key, redirected downloads, borrowed sessions' timeouts, errors that say what was tried,
and downloads cancelled or failed half-way.

Each misbehaviour is one small loopback server (port 0) started and cleaned up by the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import traceback
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from phota_async import PhotaClient, RetryPolicy
from phota_async.errors import (
    BadRequestError,
    ConnectError,
    NotFoundError,
    OutcomeUnknownError,
    PhotaError,
    ReadTimeoutError,
    ResponseValidationError,
    TransportError,
)
from phota_async.testing import PhotaEmulator
from tests.conftest import jpeg_bytes, local_server

SEEN = web.AppKey("seen", list)
KEY = "sk-live-0123456789abcdef-SECRET"
JPEG = jpeg_bytes()


pytestmark = pytest.mark.usefixtures("no_backoff")


def free_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_on(app: web.Application, host: str) -> AsyncIterator[str]:
    """Serve ``app`` on a free port of loopback address ``host``; yield its origin."""
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, 0).start()
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A loopback TCP server that answers every connection with ``answer`` (raw bytes, for
    replies aiohttp.web refuses to produce); yield its origin."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await reader.readuntil(b"\r\n\r\n")
            await answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or the test is over
        finally:
            writer.close()

    server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every exception chained to it, by cause or by context."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def every_text(error: BaseException) -> str:
    """All a user or a log could print of ``error``: str, repr, args and attributes of every
    exception in its chain, and the formatted traceback."""
    texts = ["".join(traceback.format_exception(error))]
    for exc in chain(error):
        texts += [str(exc), repr(exc), repr(exc.args), repr(vars(exc))]
    return "\n".join(texts)


def client(origin: str, **options: object) -> PhotaClient:
    return PhotaClient(
        api_key=KEY, base_url=f"{origin}/v1/phota", retry=RetryPolicy(max_attempts=2), **options
    )  # type: ignore[arg-type]


# -- foreign exceptions never carry the request's headers --------------------------------


async def _malformed_status(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 2OO OK " + KEY.encode() + b"\r\nContent-Length: 0\r\n\r\n")
    await writer.drain()


async def _huge_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    value = (KEY * 1000)[:20_000].encode()
    writer.write(b"HTTP/1.1 200 OK\r\nX-Echo: " + value + b"\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()


async def _cut_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"profile_id": "' + KEY.encode())
    await writer.drain()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # until the client gives up


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (_malformed_status, TransportError),
        (_huge_header, TransportError),
        (_cut_body, TransportError),
        (_silent, ReadTimeoutError),
    ],
    ids=["malformed status line", "20 KB header", "cut body", "timeout"],
)
async def test_broken_answers_never_expose_the_key(
    answer: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    expected: type[PhotaError],
) -> None:
    """No text of the error or of anything chained to it holds the API key, whatever the
    transport failure."""
    async with raw_server(answer) as origin, client(origin, read_timeout=0.2) as phota:
        with pytest.raises(expected) as info:
            await phota.profiles.get("p1")
    assert KEY not in every_text(info.value)
    assert not any(isinstance(exc, aiohttp.ClientError) for exc in chain(info.value))


async def test_paid_call_with_broken_answer_never_exposes_the_key() -> None:
    """A paid call answered with a malformed status line raises an error whose chain holds no
    API key."""
    async with raw_server(_malformed_status) as origin, client(origin) as phota:
        with pytest.raises(PhotaError) as info:
            await phota.generate("a lighthouse")
    assert KEY not in every_text(info.value)


async def test_a_garbled_answer_is_described_on_one_line() -> None:
    """A body overrunning its Content-Length (read as a bad status line) is a one-line error."""

    async def overrun(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}{"extra": 1}\r\n\r\n')
        await writer.drain()

    async with raw_server(overrun) as origin, client(origin) as phota:
        with pytest.raises(TransportError, match="malformed response") as info:
            await phota.profiles.get("p1")
    assert "\n" not in str(info.value)
    assert "\n" not in str(info.value.__cause__)


async def test_connection_refused_never_exposes_the_key() -> None:
    """A refused connection raises ConnectError whose chain holds no API key."""
    async with client(f"http://127.0.0.1:{free_port()}") as phota:
        with pytest.raises(ConnectError) as info:
            await phota.profiles.get("p1")
    assert KEY not in every_text(info.value)


# -- errors say what was tried and the likely fix -----------------------------------------


async def test_nothing_listening_names_host_port_and_fix() -> None:
    """With nothing listening, the error names the host and port, says the connection was
    refused and points at base_url."""
    port = free_port()
    async with client(f"http://127.0.0.1:{port}") as phota:
        with pytest.raises(ConnectError) as info:
            await phota.profiles.get("p1")
    message = str(info.value)
    assert f"cannot connect to 127.0.0.1:{port} (connection refused)" in message
    assert "check base_url" in message


async def test_tls_to_a_plain_server_says_the_handshake_failed() -> None:
    """An https base URL on a plain-http server reports a TLS failure with host and port."""
    app = web.Application()
    async with local_server(app) as origin, client(origin.replace("http:", "https:")) as phota:
        with pytest.raises(ConnectError) as info:
            await phota.profiles.get("p1")
    port = origin.rsplit(":", 1)[1]
    assert f"127.0.0.1:{port} (TLS handshake failed" in str(info.value)


async def test_base_url_without_api_path_says_so(emu: PhotaEmulator) -> None:
    """A base URL missing /v1/phota gets a 404 whose error says the base URL is probably wrong."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.origin) as phota:
        with pytest.raises(NotFoundError) as info:
            await phota.profiles.get("p1")
    assert "base_url" in str(info.value)
    assert "/v1/phota" in str(info.value)
    assert emu.api_key not in str(info.value)


async def test_plain_text_404_says_the_base_url_is_probably_wrong() -> None:
    """A proxy's plain-text 404 (no code, no request id) points at the base URL."""

    async def not_found(_: web.Request) -> web.Response:
        return web.Response(status=404, text="Not Found")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_found)
    async with local_server(app) as origin, client(origin) as phota:
        with pytest.raises(NotFoundError) as info:
            await phota.profiles.get("p1")
    assert "is base_url right? it should end in /v1/phota" in str(info.value)


async def test_api_404_has_no_base_url_hint(emu: PhotaEmulator) -> None:
    """An unknown profile on the real API path is an ordinary 404, with no base URL hint."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
        with pytest.raises(NotFoundError) as info:
            await phota.profiles.get("p1")
    assert info.value.code == "PROFILE_NOT_FOUND"
    assert "base_url" not in str(info.value)


# -- downloads and redirects ---------------------------------------------------------------


class Recorder:
    """A download host: serves a JPEG at /img, records every request's headers."""

    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []
        self.app = web.Application()
        self.app.router.add_get("/img", self.image)

    async def image(self, request: web.Request) -> web.Response:
        self.headers.append(dict(request.headers))
        return web.Response(body=JPEG, content_type="image/jpeg")


def api_app(
    *, urls: Callable[[], list[str]], redirect_to: Callable[[], str] | None
) -> web.Application:
    """A minimal API whose /generate answers with ``urls()`` and whose /dl redirects to
    ``redirect_to()``."""
    seen: list[dict[str, str]] = []

    async def generate(request: web.Request) -> web.Response:
        return web.json_response(
            {"known_subjects": {"counts": {}}, "images": [], "download_urls": urls()}
        )

    async def redirect(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        assert redirect_to is not None
        raise web.HTTPFound(redirect_to())

    app = web.Application()
    app[SEEN] = seen
    app.router.add_post("/v1/phota/generate", generate)
    app.router.add_get("/dl", redirect)
    return app


@contextlib.asynccontextmanager
async def redirecting(host_b: str) -> AsyncIterator[tuple[str, Recorder, list[dict[str, str]]]]:
    """An API on 127.0.0.1 whose one download URL redirects to a JPEG on ``host_b``."""
    recorder = Recorder()
    origins: dict[str, str] = {}
    app = api_app(
        urls=lambda: [f"{origins['a']}/dl?sig=s3cr3t"],
        redirect_to=lambda: f"{origins['b']}/img?sig=other",
    )
    async with serve_on(app, "127.0.0.1") as a, serve_on(recorder.app, host_b) as b:
        origins.update(a=a, b=b)
        yield a, recorder, app[SEEN]


async def test_download_redirect_to_another_host_is_refused(tmp_path: Path) -> None:
    """A download redirected from 127.0.0.1 to 127.0.0.2 is not followed by default: the other
    host gets no request, and no file is left behind."""
    async with redirecting("127.0.0.2") as (origin, recorder, _), client(origin) as phota:
        result = await phota.generate("x", response_mode="urls")
        with pytest.raises(TransportError) as info:
            await result.save(tmp_path)
    assert "another host (127.0.0.2:" in str(info.value)
    assert "follow_download_redirects=True" in str(info.value)
    assert "sig=" not in str(info.value)  # a signed URL's query is a credential
    assert recorder.headers == []
    assert os.listdir(tmp_path) == []


async def test_download_redirect_to_another_host_is_refused_in_memory_too() -> None:
    """``read()`` of a URL output applies the same redirect policy as ``save()``."""
    async with redirecting("127.0.0.2") as (origin, recorder, _), client(origin) as phota:
        result = await phota.generate("x", response_mode="urls")
        with pytest.raises(TransportError):
            await result.read()
    assert recorder.headers == []


async def test_opted_in_cross_host_redirect_is_followed_without_credentials(
    tmp_path: Path,
) -> None:
    """With follow_download_redirects=True the other host serves the image; neither host
    ever sees the API key."""
    async with (
        redirecting("127.0.0.2") as (origin, recorder, seen),
        client(origin, follow_download_redirects=True) as phota,
    ):
        result = await phota.generate("x", response_mode="urls")
        paths = await result.save(tmp_path)
    assert paths[0].read_bytes() == JPEG
    assert len(recorder.headers) == 1
    assert len(seen) == 1
    for headers in [*recorder.headers, *seen]:
        assert not any(name.lower() == "x-api-key" for name in headers)
        assert KEY not in repr(headers)


async def test_same_origin_download_redirect_is_followed(tmp_path: Path) -> None:
    """A redirect within the download URL's own origin (scheme, host, port) is followed by
    default."""
    recorder = Recorder()
    origins: dict[str, str] = {}
    app = api_app(urls=lambda: [f"{origins['a']}/dl"], redirect_to=lambda: f"{origins['a']}/img")
    app.router.add_get("/img", recorder.image)
    async with serve_on(app, "127.0.0.1") as a, client(a) as phota:
        origins["a"] = a
        result = await phota.generate("x", response_mode="urls")
        paths = await result.save(tmp_path)
    assert paths[0].read_bytes() == JPEG
    assert len(recorder.headers) == 1


async def test_redirect_to_another_port_of_the_same_host_is_refused(tmp_path: Path) -> None:
    """Another port of the same host is another origin: not followed by default."""
    async with redirecting("127.0.0.1") as (origin, recorder, _), client(origin) as phota:
        result = await phota.generate("x", response_mode="urls")
        with pytest.raises(TransportError, match="another host"):
            await result.save(tmp_path)
    assert recorder.headers == []


async def test_endless_download_redirects_stop(tmp_path: Path) -> None:
    """A download that redirects to itself forever fails after a few hops."""
    origins: dict[str, str] = {}
    app = api_app(urls=lambda: [f"{origins['a']}/dl"], redirect_to=lambda: f"{origins['a']}/dl")
    async with serve_on(app, "127.0.0.1") as a, client(a) as phota:
        origins["a"] = a
        result = await phota.generate("x", response_mode="urls")
        with pytest.raises(TransportError, match="more than 5 redirects"):
            await result.save(tmp_path)
    assert len(app[SEEN]) == 6
    assert os.listdir(tmp_path) == []


# -- a borrowed session's timeout never applies -----------------------------------------


def slow_app(delay: float) -> web.Application:
    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        return web.json_response({"profile_id": "p1", "status": "READY", "message": None})

    app = web.Application()
    app.router.add_get("/v1/phota/profiles/p1/status", slow)
    return app


async def test_borrowed_session_total_timeout_does_not_cut_a_call() -> None:
    """A session whose own total timeout is 0.2 s does not cut a 0.4 s answer the client allows."""
    async with (
        local_server(slow_app(0.4), shutdown_timeout=0.1) as origin,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as session,
        client(origin, session=session, read_timeout=30) as phota,
    ):
        profile = await phota.profiles.get("p1")
    assert profile.status == "READY"


async def test_client_read_timeout_applies_to_a_borrowed_session() -> None:
    """The client's read_timeout cuts a silent server even when the borrowed session has none."""
    async with (
        local_server(slow_app(5.0), shutdown_timeout=0.1) as origin,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session,
        client(origin, session=session, read_timeout=0.2) as phota,
    ):
        with pytest.raises(ReadTimeoutError):
            await phota.profiles.get("p1")


async def test_borrowed_session_raise_for_status_does_not_change_errors(
    emu: PhotaEmulator,
) -> None:
    """A borrowed session made with raise_for_status=True still yields the typed API error."""
    async with (
        aiohttp.ClientSession(raise_for_status=True) as session,
        PhotaClient(api_key=emu.api_key, base_url=emu.base_url, session=session) as phota,
    ):
        with pytest.raises(NotFoundError) as info:
            await phota.profiles.get("p1")
    assert info.value.code == "PROFILE_NOT_FOUND"


async def test_borrowed_session_total_timeout_does_not_cut_a_download(tmp_path: Path) -> None:
    """A download slower than the borrowed session's 0.2 s total timeout completes."""

    async def slow_image(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = len(JPEG)
        await response.prepare(request)
        await response.write(JPEG[:100])
        await asyncio.sleep(0.4)
        await response.write(JPEG[100:])
        return response

    origins: dict[str, str] = {}
    app = api_app(urls=lambda: [f"{origins['a']}/img"], redirect_to=None)
    app.router.add_get("/img", slow_image)
    async with (
        serve_on(app, "127.0.0.1") as a,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as session,
        client(a, session=session) as phota,
    ):
        origins["a"] = a
        result = await phota.generate("x", response_mode="urls")
        paths = await result.save(tmp_path)
    assert paths[0].read_bytes() == JPEG


# -- a cancelled or failed save leaves nothing behind ------------------------------------


class Download:
    """A download host whose /img sends ``head`` bytes of a 4 MiB body, then waits."""

    def __init__(self, head: int) -> None:
        self.head = head
        self.started = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/img", self.image)

    async def image(self, request: web.Request) -> web.StreamResponse:
        self.started.set()
        if self.head < 0:  # before the first byte: no status line yet
            await asyncio.sleep(30)
        body = JPEG + bytes(4 * 1024 * 1024)
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: self.head])
        await asyncio.sleep(30)
        return response


@contextlib.asynccontextmanager
async def download_api(download: Download) -> AsyncIterator[str]:
    origins: dict[str, str] = {}
    app = api_app(urls=lambda: [f"{origins['a']}/img"], redirect_to=None)
    app.router.add_get("/img", download.image)
    async with serve_on(app, "127.0.0.1") as a:
        origins["a"] = a
        yield a


@contextlib.contextmanager
def no_unclosed_files() -> Iterator[None]:
    """Fail if any file object is garbage-collected unclosed inside the block."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


async def wait_for_part_file(folder: Path, min_size: int) -> None:
    """Wait until a .part file in ``folder`` holds at least ``min_size`` bytes."""
    async with asyncio.timeout(20):
        while not any(
            p.suffix == ".part" and p.stat().st_size >= min_size for p in folder.iterdir()
        ):
            await asyncio.sleep(0.01)


@pytest.mark.parametrize(
    "head", [-1, 0, 2 * 1024 * 1024], ids=["before status", "before first byte", "mid-body"]
)
async def test_cancelled_save_leaves_no_part_file(tmp_path: Path, head: int) -> None:
    """A save cancelled before the answer, before its first body byte or mid-body leaves the
    folder empty and no file open."""
    download = Download(head)
    with no_unclosed_files():
        async with download_api(download) as origin, client(origin) as phota:
            result = await phota.generate("x", response_mode="urls")
            task = asyncio.create_task(result.save(tmp_path))
            await download.started.wait()
            if head > 0:
                await wait_for_part_file(tmp_path, 1024 * 1024)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert os.listdir(tmp_path) == []


async def test_save_cancelled_at_every_early_step_leaves_no_part_file(tmp_path: Path) -> None:
    """Cancelled after 0, 1, 2, ... loop turns (temporary name, open, request, write, rename),
    a save leaves either nothing or the finished image: never a .part file."""

    async def image(_: web.Request) -> web.Response:
        return web.Response(body=JPEG, content_type="image/jpeg")

    origins: dict[str, str] = {}
    app = api_app(urls=lambda: [f"{origins['a']}/img"], redirect_to=None)
    app.router.add_get("/img", image)
    with no_unclosed_files():
        async with serve_on(app, "127.0.0.1") as a, client(a) as phota:
            origins["a"] = a
            result = await phota.generate("x", response_mode="urls")
            finished = 0
            for turns in range(60):
                folder = tmp_path / str(turns)
                task = asyncio.create_task(result.save(folder))
                for _ in range(turns):
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                left = os.listdir(folder) if folder.exists() else []
                assert left in ([], ["image-0.jpg"]), (turns, left)
                finished += left == ["image-0.jpg"]
    assert finished < 60  # some cancellations did land before the end


async def test_failed_save_leaves_no_part_file(tmp_path: Path) -> None:
    """A download whose body is cut short on every attempt fails and leaves the folder empty."""

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
        response.content_length = len(JPEG) * 10
        await response.prepare(request)
        await response.write(JPEG)
        assert request.transport is not None
        request.transport.close()
        return response

    origins: dict[str, str] = {}
    app = api_app(urls=lambda: [f"{origins['a']}/img"], redirect_to=None)
    app.router.add_get("/img", cut)
    with no_unclosed_files():
        async with serve_on(app, "127.0.0.1") as a, client(a) as phota:
            origins["a"] = a
            result = await phota.generate("x", response_mode="urls")
            with pytest.raises(TransportError):
                await result.save(tmp_path)
    assert os.listdir(tmp_path) == []


# -- bodies nested deeper than Python's recursion limit ----------------------------------

DEEP = b"[" * 30_000 + b"]" * 30_000  # valid JSON of 60 KB, deeper than any recursion limit


def deep_app(status: int) -> web.Application:
    """Every route answers ``status`` with a body that nests ``DEEP`` inside an object."""

    async def answer(_: web.Request) -> web.Response:
        body = b'{"known_subjects": {"counts": {}}, "images": [], "x": ' + DEEP + b"}"
        return web.Response(status=status, body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def test_deeply_nested_answer_to_a_paid_call_is_an_unknown_outcome() -> None:
    """A 200 studio result nested too deeply to parse is OutcomeUnknownError, not RecursionError."""
    async with serve_on(deep_app(200), "127.0.0.1") as origin, client(origin) as phota:
        with pytest.raises(OutcomeUnknownError, match="not valid JSON"):
            await phota.generate("x")


async def test_deeply_nested_answer_to_a_get_is_a_validation_error() -> None:
    """A 200 profile answer nested too deeply to parse is ResponseValidationError."""
    async with serve_on(deep_app(200), "127.0.0.1") as origin, client(origin) as phota:
        with pytest.raises(ResponseValidationError, match="not valid JSON"):
            await phota.profiles.get("p1")


async def test_deeply_nested_error_body_is_an_api_error() -> None:
    """A 400 whose body is nested too deeply to parse is still a typed APIError."""
    async with serve_on(deep_app(400), "127.0.0.1") as origin, client(origin) as phota:
        with pytest.raises(BadRequestError):
            await phota.profiles.get("p1")
