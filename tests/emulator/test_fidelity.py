"""Contract: output sizes follow the request, outputs are variants, a seed makes them repeat."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image, ImageChops, ImageStat

from phota_async import PhotaClient
from phota_async.testing import PhotaEmulator
from tests.conftest import b64, decode, jpeg_bytes, png_bytes
from tests.emulator.helpers import P


async def post(http: aiohttp.ClientSession, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    async with http.post(f"{P}/{endpoint}", json=body) as resp:
        answer: dict[str, Any] = await resp.json()
        assert resp.status == 200, answer
        return answer


def images_of(answer: dict[str, Any]) -> list[Image.Image]:
    return [decode(base64.b64decode(s)).convert("RGB") for s in answer["images"]]


def photo(size: tuple[int, int]) -> str:
    """A base64 JPEG of a photo-like picture (a sample portrait) of ``size``."""
    img = decode(jpeg_bytes(1)).convert("RGB").resize(size)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return b64(buf.getvalue())


@pytest.fixture
async def full_size() -> AsyncIterator[aiohttp.ClientSession]:
    """A session on an emulator with the real output sizes (no ``max_output_side``)."""
    async with (
        PhotaEmulator() as emulator,
        aiohttp.ClientSession(
            base_url=emulator.origin, headers={"X-API-Key": emulator.api_key}
        ) as session,
    ):
        yield session


@pytest.mark.parametrize("ratio", ["16:9", "1:1", "3:4", "9:16"])
async def test_edit_comes_back_at_generate_s_size_for_an_aspect_ratio(
    full_size: aiohttp.ClientSession, ratio: str
) -> None:
    """A 512x640 input edited with an aspect ratio at 1K is as large as generate's output."""
    body = {"aspect_ratio": ratio, "resolution": "1K", "output_format": "png"}
    edited = await post(full_size, "edit", {"prompt": "x", "images": [photo((512, 640))], **body})
    drawn = await post(full_size, "generate", {"prompt": "x", **body})
    assert images_of(edited)[0].size == images_of(drawn)[0].size


async def test_edit_16_9_at_1k_is_1024_by_576(full_size: aiohttp.ClientSession) -> None:
    """16:9 at 1K is 1024x576, whatever the input's shape."""
    body = {"prompt": "x", "images": [photo((512, 640))], "aspect_ratio": "16:9"}
    assert images_of(await post(full_size, "edit", body))[0].size == (1024, 576)


async def test_edit_auto_keeps_the_input_shape_at_the_resolution(
    full_size: aiohttp.ClientSession,
) -> None:
    """aspect_ratio auto (the default) keeps the input's shape, 1K on its longer side."""
    answer = await post(full_size, "edit", {"prompt": "x", "images": [photo((512, 640))]})
    assert images_of(answer)[0].size == (819, 1024)


async def test_edit_honours_2k(full_size: aiohttp.ClientSession) -> None:
    """resolution 2K gives 2048 px on the longer side, even from a small input."""
    body = {"prompt": "x", "images": [photo((300, 200))], "resolution": "2K", "aspect_ratio": "4:3"}
    assert images_of(await post(full_size, "edit", body))[0].size == (2048, 1536)


BODIES: dict[str, dict[str, Any]] = {
    "generate": {"prompt": "a lighthouse"},
    "edit": {"prompt": "make it warmer", "images": [photo((160, 120))]},
    "enhance": {"image": photo((160, 120))},
    "remix": {"input_image": photo((160, 120)), "reference_image": b64(png_bytes())},
}


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


@pytest.mark.parametrize("endpoint", sorted(BODIES))
async def test_two_outputs_are_two_variants_of_one_picture(
    http: aiohttp.ClientSession, endpoint: str
) -> None:
    """n=2 gives two different images that still look like the same picture."""
    body = {**BODIES[endpoint], "num_output_images": 2, "output_format": "png"}
    answer = await post(http, endpoint, body)
    assert answer["images"][0] != answer["images"][1]
    first, second = images_of(answer)
    assert first.size == second.size
    assert 0 < mean_difference(first, second) < 20


@pytest.mark.parametrize("endpoint", sorted(BODIES))
async def test_the_same_request_twice_gives_new_bytes(
    http: aiohttp.ClientSession, endpoint: str
) -> None:
    """Without a seed, repeating a call gives different outputs."""
    body = {**BODIES[endpoint], "output_format": "png"}
    assert (await post(http, endpoint, body))["images"] != (await post(http, endpoint, body))[
        "images"
    ]


async def run_sequence(seed: int | None) -> list[str]:
    """Every output of a fixed sequence of calls on a fresh emulator."""
    outputs: list[str] = []
    async with (
        PhotaEmulator(seed=seed, max_output_side=96) as emulator,
        aiohttp.ClientSession(
            base_url=emulator.origin, headers={"X-API-Key": emulator.api_key}
        ) as session,
    ):
        for endpoint in sorted(BODIES):
            body = {**BODIES[endpoint], "num_output_images": 2, "output_format": "png"}
            outputs += (await post(session, endpoint, body))["images"]
            outputs += (await post(session, endpoint, body))["images"]
    return outputs


async def test_a_seed_makes_the_same_calls_give_the_same_bytes() -> None:
    """Two emulators with the same seed answer the same sequence of calls byte for byte."""
    first = await run_sequence(seed=7)
    assert first == await run_sequence(seed=7)
    assert len(set(first)) == len(first)  # still a variant per output and per call


async def test_different_seeds_give_different_bytes() -> None:
    """Another seed, or none, gives other variants."""
    assert await run_sequence(seed=7) != await run_sequence(seed=8)
    assert await run_sequence(seed=None) != await run_sequence(seed=None)


def png_of(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return b64(buf.getvalue())


@pytest.mark.parametrize("mode", ["P", "1", "I;16"])
async def test_a_large_palette_1_bit_or_16_bit_png_is_enhanced(
    http: aiohttp.ClientSession, mode: str
) -> None:
    """A 3000x2000 PNG in palette, 1-bit or 16-bit grey mode answers 200, not INVALID_IMAGE."""
    img = Image.new("RGB", (3000, 2000), "white")
    img.paste((0, 0, 0), (0, 0, 1500, 2000))
    if mode == "I;16":
        img = img.convert("L").point(lambda v: v * 257, "I").convert("I;16")
    answer = await post(
        http, "enhance", {"image": png_of(img.convert(mode)), "output_format": "png"}
    )
    assert images_of(answer)[0].width > images_of(answer)[0].height


async def test_a_16_bit_grey_png_keeps_its_tones(http: aiohttp.ClientSession) -> None:
    """A mid-grey 16-bit PNG (32768 of 65535) is not turned white."""
    img = Image.new("I;16", (64, 48), 32768)
    answer = await post(
        http, "edit", {"prompt": "x", "images": [png_of(img)], "output_format": "png"}
    )
    assert 80 < ImageStat.Stat(images_of(answer)[0].convert("L")).mean[0] < 180


async def submitted_output(seed: int) -> bytes:
    """The output of one generate job submitted through the SDK to a fresh seeded emulator."""
    async with (
        PhotaEmulator(seed=seed, max_output_side=64) as emulator,
        PhotaClient(api_key=emulator.api_key, base_url=emulator.base_url) as phota,
    ):
        job = await phota.jobs.submit_generate("a lighthouse at dusk", output_format="png")
        result = await job.wait(timeout=30)
        return await result.read(0)


async def test_a_seed_repeats_job_outputs_whatever_their_client_request_id() -> None:
    """The SDK's fresh idempotency key per submit does not change a seeded emulator's bytes."""
    assert await submitted_output(seed=7) == await submitted_output(seed=7)
