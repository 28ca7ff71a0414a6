"""A hostile or broken server cannot hurt the client through the size of what it sends.

One loopback server, one handler per misbehaviour. Every body is refused past its cap with
``ResponseTooLargeError`` while the client's memory (``tracemalloc`` peak, which also counts
this process's server) stays far below what the server sent; large but legitimate results are
decoded into temporary files and read back whole.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import os
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from aiohttp import web

from phota_async import PhotaClient
from phota_async.errors import (
    InvalidRequestError,
    OutcomeUnknownError,
    ResponseTooLargeError,
)
from tests.conftest import jpeg_bytes, local_server

pytestmark = pytest.mark.usefixtures("no_backoff")

MIB = 1024 * 1024
WRITE = 64 * 1024
PHOTO = jpeg_bytes()


@dataclasses.dataclass
class State:
    """What the hostile server answered: paid calls seen, images to send, bytes compressed."""

    hits: list[str] = dataclasses.field(default_factory=list)
    images: list[bytes] = dataclasses.field(default_factory=list)  # base64 text of each
    compressed: int = 0


STATE = web.AppKey("state", State)


async def _drain(request: web.Request) -> None:
    while await request.content.readany():
        pass


async def _endless(request: web.Request, head: bytes, filler: bytes) -> web.StreamResponse:
    """Send ``head`` and then ``filler`` until the client hangs up."""
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        await resp.write(head)
        while True:
            await resp.write(filler)
            await asyncio.sleep(0)  # a write into free buffer space does not yield
    except (ConnectionError, RuntimeError):
        pass
    return resp


async def endless_string(request: web.Request) -> web.StreamResponse:
    """A JSON answer whose first string never ends (valid base64 all along)."""
    await _drain(request)
    request.app[STATE].hits.append(request.path)
    return await _endless(request, b'{"images": ["', b"A" * WRITE)


async def endless_array(request: web.Request) -> web.StreamResponse:
    """A JSON answer that is an array of numbers without end: no strings at all."""
    await _drain(request)
    request.app[STATE].hits.append(request.path)
    return await _endless(request, b"[0", b",0" * (WRITE // 2))


async def gzip_bomb(request: web.Request) -> web.StreamResponse:
    """An endless gzip stream of zeros: about 4 KiB on the wire per 4 MiB decompressed."""
    resp = web.StreamResponse(
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    await resp.prepare(request)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(4 * MIB)
    sent = 0
    try:
        await resp.write(packer.compress(b'{"profile_id": "x", "message": "'))
        while True:
            piece = packer.compress(zeros) + packer.flush(zlib.Z_SYNC_FLUSH)
            sent += len(piece)
            request.app[STATE].compressed = sent
            await resp.write(piece)
            await asyncio.sleep(0)
    except (ConnectionError, RuntimeError):
        pass
    return resp


def _image(size: int) -> bytes:
    """``size`` bytes of noise behind a JPEG signature."""
    return b"\xff\xd8\xff\xe0" + os.urandom(size - 4)


async def large_result(request: web.Request) -> web.StreamResponse:
    """A bytes-mode result with the app's ``images``, streamed in 64 KiB writes."""
    await _drain(request)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"known_subjects": {"counts": {"p1": 2}}, "images": [')
    for i, text in enumerate(request.app[STATE].images):
        await resp.write(b'"' if i == 0 else b', "')
        for start in range(0, len(text), WRITE):
            await resp.write(text[start : start + WRITE])
        await resp.write(b'"')
    await resp.write(b'], "download_urls": []}')
    await resp.write_eof()
    return resp


async def huge_image(request: web.Request) -> web.StreamResponse:
    """A bytes-mode result whose one image is 200 MB of base64."""
    await _drain(request)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    block = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(3 * WRITE - 4))
    try:
        await resp.write(b'{"known_subjects": {"counts": {}}, "images": ["')
        for _ in range(200 * MIB // len(block)):
            await resp.write(block)
            await asyncio.sleep(0)
        await resp.write(b'"], "download_urls": []}')
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass
    return resp


async def url_result(request: web.Request) -> web.Response:
    await _drain(request)
    url = f"{request.url.origin()}/endless-download"
    return web.json_response(
        {"known_subjects": {"counts": {}}, "images": [], "download_urls": [url]}
    )


async def endless_download(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
    await resp.prepare(request)
    try:
        await resp.write(b"\xff\xd8\xff\xe0")
        while True:
            await resp.write(bytes(WRITE))
            await asyncio.sleep(0)
    except (ConnectionError, RuntimeError):
        pass
    return resp


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[str, State]]:
    """The hostile server's origin and app (``hits`` records the paid calls it answered)."""
    app = web.Application()
    app[STATE] = State()
    app.router.add_get("/string/profiles/{pid}/status", endless_string)
    app.router.add_post("/string/enhance", endless_string)
    app.router.add_get("/array/profiles/{pid}/status", endless_array)
    app.router.add_post("/array/enhance", endless_array)
    app.router.add_get("/bomb/profiles/{pid}/status", gzip_bomb)
    app.router.add_post("/large/generate", large_result)
    app.router.add_post("/huge/generate", huge_image)
    app.router.add_post("/urls/enhance", url_result)
    app.router.add_get("/endless-download", endless_download)
    async with local_server(app) as origin:
        yield origin, app[STATE]


@pytest.fixture
def memory() -> Iterator[None]:
    """Trace allocations for the test (``tracemalloc.get_traced_memory()[1]`` is the peak)."""
    tracemalloc.start()
    try:
        yield
    finally:
        tracemalloc.stop()


def peak() -> int:
    return tracemalloc.get_traced_memory()[1]


async def test_endless_body_on_a_get_is_refused_with_memory_bounded(
    hostile: tuple[str, State], memory: None
) -> None:
    """An endless JSON body on a GET raises ResponseTooLargeError once past max_response_bytes."""
    origin, _ = hostile
    async with PhotaClient(
        api_key="k", base_url=f"{origin}/array", max_response_bytes=2 * MIB
    ) as phota:
        with pytest.raises(ResponseTooLargeError) as caught:
            await phota.profiles.get("p1")
    assert caught.value.limit == 2 * MIB
    assert peak() < 8 * MIB


async def test_endless_body_on_a_paid_call_is_refused_and_not_retried(
    hostile: tuple[str, State], memory: None
) -> None:
    """A paid call's endless answer is refused once, never re-sent, never 'outcome unknown'."""
    origin, state = hostile
    async with PhotaClient(
        api_key="k", base_url=f"{origin}/array", max_response_bytes=2 * MIB
    ) as phota:
        with pytest.raises(ResponseTooLargeError) as caught:
            await phota.enhance(PHOTO)
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert state.hits == ["/array/enhance"]
    assert peak() < 8 * MIB


async def test_endless_string_in_a_paid_answer_is_refused_by_the_image_cap(
    hostile: tuple[str, State], memory: None
) -> None:
    """An endless (valid base64) string in a studio answer stops at max_image_bytes."""
    origin, state = hostile
    async with PhotaClient(
        api_key="k", base_url=f"{origin}/string", max_image_bytes=4 * MIB
    ) as phota:
        with pytest.raises(ResponseTooLargeError) as caught:
            await phota.enhance(PHOTO)
    assert caught.value.limit == 4 * MIB
    assert state.hits == ["/string/enhance"]
    assert peak() < 8 * MIB


async def test_endless_string_on_a_get_is_refused(hostile: tuple[str, State], memory: None) -> None:
    """An endless string in a GET's JSON is held to max_response_bytes like any body."""
    origin, _ = hostile
    async with PhotaClient(
        api_key="k", base_url=f"{origin}/string", max_response_bytes=2 * MIB
    ) as phota:
        with pytest.raises(ResponseTooLargeError):
            await phota.profiles.get("p1")
    assert peak() < 8 * MIB


async def test_gzip_bomb_is_refused_by_its_decompressed_size(
    hostile: tuple[str, State], memory: None
) -> None:
    """A gzip body is counted after decompression: a bomb is refused, never inflated whole."""
    origin, state = hostile
    async with PhotaClient(
        api_key="k", base_url=f"{origin}/bomb", max_response_bytes=4 * MIB
    ) as phota:
        with pytest.raises(ResponseTooLargeError):
            await phota.profiles.get("p1")
    assert state.compressed < MIB  # it was a bomb: little on the wire
    assert peak() < 16 * MIB


async def test_huge_base64_image_is_refused_by_the_default_cap(
    hostile: tuple[str, State], memory: None
) -> None:
    """A 200 MB base64 image is refused at the default 64 MiB per image, memory flat."""
    origin, _ = hostile
    async with PhotaClient(api_key="k", base_url=f"{origin}/huge") as phota:
        with pytest.raises(ResponseTooLargeError) as caught:
            await phota.generate("a portrait")
    assert caught.value.limit == 64 * MIB
    assert peak() < 16 * MIB


async def test_endless_download_is_refused_and_leaves_no_file(
    hostile: tuple[str, State], tmp_path: Path, memory: None
) -> None:
    """Saving an output whose download never ends stops at max_image_bytes, no file left."""
    origin, _ = hostile
    async with PhotaClient(
        api_key="k", base_url=f"{origin}/urls", max_image_bytes=4 * MIB
    ) as phota:
        result = await phota.enhance(PHOTO, response_mode="urls")
        with pytest.raises(ResponseTooLargeError):
            await result.save(tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert peak() < 8 * MIB


async def test_endless_download_read_into_memory_is_refused(
    hostile: tuple[str, State], memory: None
) -> None:
    """Reading an endless URL output into memory stops at max_image_bytes."""
    origin, _ = hostile
    async with PhotaClient(
        api_key="k", base_url=f"{origin}/urls", max_image_bytes=2 * MIB
    ) as phota:
        result = await phota.enhance(PHOTO, response_mode="urls")
        with pytest.raises(ResponseTooLargeError):
            await result.read(0)
    assert peak() < 8 * MIB


async def test_large_result_images_go_to_files_and_read_back_whole(
    hostile: tuple[str, State], tmp_path: Path, memory: None
) -> None:
    """Two 12 MiB images are decoded into temporary files, not memory, and read back exact."""
    origin, state = hostile
    expected = [_image(12 * MIB), _image(12 * MIB)]
    state.images = [base64.b64encode(image) for image in expected]
    async with PhotaClient(api_key="k", base_url=f"{origin}/large") as phota:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        async with await phota.generate("a portrait", n=2) as result:
            during_call = peak() - before
            assert [o.data for o in result.outputs] == [None, None]
            assert result.known_subjects == {"p1": 2}
            assert await result.read(1) == expected[1]
            paths = await result.save(tmp_path)
    assert during_call < 8 * MIB
    assert [p.read_bytes() for p in paths] == expected
    assert [p.suffix for p in paths] == [".jpg", ".jpg"]


async def test_small_result_images_stay_in_memory(
    hostile: tuple[str, State],
) -> None:
    """An image under 1 MiB, even one diverted from the JSON as it streamed, is plain bytes."""
    origin, state = hostile
    image = _image(300 * 1024)
    state.images = [base64.b64encode(image)]
    async with PhotaClient(api_key="k", base_url=f"{origin}/large") as phota:
        result = await phota.generate("a portrait")
    assert result.outputs[0].data == image


async def test_closed_result_releases_its_files(hostile: tuple[str, State]) -> None:
    """After aclose() a spooled image can no longer be read; closing twice is harmless."""
    origin, state = hostile
    state.images = [base64.b64encode(_image(3 * MIB))]
    async with PhotaClient(api_key="k", base_url=f"{origin}/large") as phota:
        result = await phota.generate("a portrait")
    await result.aclose()
    await result.aclose()
    with pytest.raises(ValueError, match="aclose"):
        await result.read(0)


async def test_unclosed_result_releases_its_files_without_a_warning(
    hostile: tuple[str, State],
) -> None:
    """A result dropped without aclose() closes its files quietly (no ResourceWarning)."""
    origin, state = hostile
    state.images = [base64.b64encode(_image(3 * MIB))]
    async with PhotaClient(api_key="k", base_url=f"{origin}/large") as phota:
        result = await phota.generate("a portrait")
    spool = result.outputs[0]._spool
    assert spool is not None
    file = spool._file
    del result, spool
    gc.collect()
    assert file.closed


def open_temp_files() -> int:
    """How many unlinked files this process holds open (spooled images among them)."""
    fds = Path("/proc/self/fd")
    return sum("(deleted)" in os.readlink(fd) for fd in fds.iterdir() if fd.exists())


async def test_a_bad_later_image_closes_the_spooled_ones_at_once(
    hostile: tuple[str, State],
) -> None:
    """A result whose second image is not base64 closes the first one's file before raising."""
    origin, state = hostile
    state.images = [base64.b64encode(_image(3 * MIB)), b"!!!!"]
    before = open_temp_files()
    async with PhotaClient(api_key="k", base_url=f"{origin}/large") as phota:
        with pytest.raises(OutcomeUnknownError, match="not valid base64") as info:
            await phota.generate("a portrait")
        assert open_temp_files() == before
    del info


@pytest.mark.parametrize("limit", ["max_response_bytes", "max_image_bytes"])
def test_caps_must_be_positive(limit: str) -> None:
    """A zero or negative cap is refused when the client is built."""
    with pytest.raises(InvalidRequestError, match=limit):
        PhotaClient(api_key="k", **{limit: 0})  # type: ignore[arg-type]


async def test_more_long_strings_than_images_is_refused_by_count(
    hostile: tuple[str, State],
) -> None:
    """A result with 17 large images is ResponseTooLargeError saying it counts strings, not bytes."""
    origin, state = hostile
    state.images = [base64.b64encode(_image(100_000))] * 17
    async with PhotaClient(api_key="k", base_url=f"{origin}/large") as phota:
        with pytest.raises(ResponseTooLargeError) as info:
            await phota.generate("a portrait")
    assert info.value.limit == 16
    assert "byte limit" not in str(info.value)
