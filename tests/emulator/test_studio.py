"""Contract: the four image endpoints, their validation rules, outputs, billing and 504s."""

from __future__ import annotations

import asyncio
import base64
import io

import aiohttp
import pytest
from PIL import ImageChops, ImageStat

from phota_async.testing import ManualClock, PhotaEmulator
from tests.conftest import b64, decode, jpeg_bytes, png_bytes
from tests.emulator.helpers import P, create, manual, ready_profile, training_urls, until


async def post(
    http: aiohttp.ClientSession, endpoint: str, body: dict[str, object]
) -> tuple[int, dict]:
    async with http.post(f"{P}/{endpoint}", json=body) as resp:
        return resp.status, await resp.json()


def images_of(body: dict) -> list:
    return [decode(base64.b64decode(s)) for s in body["images"]]


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("generate", {"prompt": "a lighthouse"}),
        ("edit", {"prompt": "make it brighter", "images": [b64(jpeg_bytes())]}),
        ("enhance", {"image": b64(jpeg_bytes())}),
        ("remix", {"input_image": b64(jpeg_bytes()), "reference_image": b64(png_bytes())}),
    ],
)
async def test_each_endpoint_returns_real_images(
    http: aiohttp.ClientSession, endpoint: str, body: dict[str, object]
) -> None:
    """Every studio endpoint answers 200 with decodable images and both list fields."""
    status, result = await post(
        http, endpoint, {**body, "num_output_images": 2, "output_format": "png"}
    )
    assert status == 200, result
    assert result["download_urls"] == []
    assert result["known_subjects"] == {"counts": {}}
    assert [img.format for img in images_of(result)] == ["PNG", "PNG"]


async def test_jpg_output_format_gives_jpeg(http: aiohttp.ClientSession) -> None:
    """output_format jpg yields JPEG bytes."""
    _, result = await post(http, "generate", {"prompt": "x", "output_format": "jpg"})
    assert images_of(result)[0].format == "JPEG"


async def test_generate_draws_the_same_scene_in_new_bytes_each_call(
    http: aiohttp.ClientSession,
) -> None:
    """The same generate prompt twice gives two takes of one scene, never the same bytes."""
    _, a = await post(http, "generate", {"prompt": "a red barn", "output_format": "png"})
    _, b = await post(http, "generate", {"prompt": "a red barn", "output_format": "png"})
    assert a["images"] != b["images"]
    first, second = images_of(a)[0], images_of(b)[0]
    assert first.size == second.size
    assert ImageStat.Stat(ImageChops.difference(first, second)).mean[0] < 20


@pytest.mark.parametrize(("ratio", "expected"), [("16:9", 16 / 9), ("3:4", 3 / 4), ("1:1", 1.0)])
async def test_generate_honours_aspect_ratio(
    http: aiohttp.ClientSession, ratio: str, expected: float
) -> None:
    """Generated images have the requested aspect ratio."""
    _, result = await post(http, "generate", {"prompt": "x", "aspect_ratio": ratio})
    img = images_of(result)[0]
    assert img.width / img.height == pytest.approx(expected, rel=0.03)


async def test_enhance_spreads_the_levels_of_a_dull_photo(http: aiohttp.ClientSession) -> None:
    """Enhance widens the tonal range of a low-contrast photo."""
    dull = decode(jpeg_bytes(3)).point(lambda v: 100 + v // 5)
    buf = io.BytesIO()
    dull.save(buf, format="PNG")
    _, result = await post(http, "enhance", {"image": b64(buf.getvalue()), "output_format": "png"})
    out = images_of(result)[0]
    before = ImageStat.Stat(dull.convert("L")).extrema[0]
    after = ImageStat.Stat(out.convert("L")).extrema[0]
    assert after[1] - after[0] > before[1] - before[0] + 50


async def test_remix_moves_colours_towards_the_reference(http: aiohttp.ClientSession) -> None:
    """Remix brings the input's mean colour close to the reference's."""
    _, result = await post(
        http,
        "remix",
        {
            "input_image": b64(jpeg_bytes(4)),
            "reference_image": b64(png_bytes((200, 30, 30))),
            "output_format": "png",
        },
    )
    r, g, _b = ImageStat.Stat(images_of(result)[0]).mean
    assert r > 150
    assert g < 80


async def test_edit_black_and_white_gives_grey_pixels(http: aiohttp.ClientSession) -> None:
    """An edit asking for black and white removes colour."""
    _, result = await post(
        http,
        "edit",
        {
            "prompt": "make it black and white",
            "images": [b64(jpeg_bytes())],
            "output_format": "png",
        },
    )
    img = images_of(result)[0].convert("RGB")
    pixels = [img.getpixel((x, y)) for x in range(0, img.width, 7) for y in range(0, img.height, 7)]
    assert all(len(set(px)) == 1 for px in pixels)


async def test_edit_accepts_ten_images_and_refuses_eleven(http: aiohttp.ClientSession) -> None:
    """images may hold 1-10 entries; 11 answers 422 on images."""
    one = b64(jpeg_bytes())
    ok, _ = await post(http, "edit", {"prompt": "x", "images": [one] * 10})
    status, body = await post(http, "edit", {"prompt": "x", "images": [one] * 11})
    assert ok == 200
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "images"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "x", "num_output_images": 5}, "num_output_images"),
        ({"prompt": "x", "num_output_images": "two"}, "num_output_images"),
        ({"prompt": "x", "output_format": "gif"}, "output_format"),
        ({"prompt": "x", "response_mode": "stream"}, "response_mode"),
        ({"prompt": "x", "aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"prompt": "x", "resolution": "8K"}, "resolution"),
        ({"prompt": "x", "base_model": "dall-e"}, "base_model"),
        ({"prompt": "x", "quality": "ultra", "base_model": "gpt-image-2"}, "quality"),
        ({"prompt": "x", "profile_ids": ["abc"]}, "profile_ids"),
        ({"prompt": "x", "async": True}, "response_mode"),
        ({"prompt": "x", "callback_url": "https://h/x"}, "callback_url"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": 5}, "prompt"),
    ],
)
async def test_generate_schema_errors_name_the_field(
    http: aiohttp.ClientSession, body: dict[str, object], field: str
) -> None:
    """Each invalid generate field answers 422 with that field in loc."""
    status, result = await post(http, "generate", body)
    assert status == 422
    assert ["body", field] in [d["loc"] for d in result["detail"]]


async def test_quality_needs_gpt_image_2(http: aiohttp.ClientSession) -> None:
    """quality with another model answers 400 QUALITY_NOT_SUPPORTED."""
    status, body = await post(http, "generate", {"prompt": "x", "quality": "high"})
    assert (status, body["code"]) == (400, "QUALITY_NOT_SUPPORTED")
    ok, _ = await post(
        http, "generate", {"prompt": "x", "quality": "high", "base_model": "gpt-image-2"}
    )
    assert ok == 200


@pytest.mark.parametrize(
    ("model", "resolution", "status"),
    [("reve", "2K", 400), ("flux-2", "4K", 400), ("qwen-image-2", "2K", 200), ("nb2", "4K", 200)],
)
async def test_model_resolution_rules(
    http: aiohttp.ClientSession, model: str, resolution: str, status: int
) -> None:
    """A resolution the model cannot make answers 400 UNSUPPORTED_RESOLUTION."""
    got, body = await post(
        http, "generate", {"prompt": "x", "base_model": model, "resolution": resolution}
    )
    assert got == status
    if status == 400:
        assert body["code"] == "UNSUPPORTED_RESOLUTION"


async def test_unknown_profile_token_is_404(http: aiohttp.ClientSession) -> None:
    """A [[token]] naming no profile answers 404 PROFILE_NOT_FOUND."""
    status, body = await post(http, "generate", {"prompt": "portrait of [[ghost]]"})
    assert (status, body["code"]) == (404, "PROFILE_NOT_FOUND")


async def test_malformed_profile_token_is_422(http: aiohttp.ClientSession) -> None:
    """A [[token]] that is not a valid id answers 422 on prompt."""
    status, body = await post(http, "generate", {"prompt": "portrait of [[../etc]]"})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "prompt"]


async def test_profile_not_ready_is_400(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """Naming a profile still training answers 400 PROFILE_NOT_READY."""
    profile_id = await create(http, training_urls(emu, 5))
    status, body = await post(
        http, "enhance", {"image": b64(jpeg_bytes()), "profile_ids": [profile_id]}
    )
    assert (status, body["code"]) == (400, "PROFILE_NOT_READY")


async def test_known_subjects_counts_named_profiles(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """known_subjects counts each named profile once per output image, tokens and ids merged."""
    a = await ready_profile(http, emu)
    b = await ready_profile(http, emu)
    status, body = await post(
        http,
        "edit",
        {
            "prompt": f"[[{a}]] and [[{b}]] smiling",
            "profile_ids": [a],
            "images": [b64(jpeg_bytes())],
            "num_output_images": 2,
        },
    )
    assert status == 200
    assert body["known_subjects"] == {"counts": {a: 2, b: 2}}


async def test_generate_draws_named_subjects(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A generate naming a profile differs from the same prompt without it."""
    profile_id = await ready_profile(http, emu)
    _, plain = await post(http, "generate", {"prompt": "in a garden", "output_format": "png"})
    _, named = await post(
        http, "generate", {"prompt": f"[[{profile_id}]] in a garden", "output_format": "png"}
    )
    assert named["known_subjects"]["counts"] == {profile_id: 1}
    assert plain["images"] != named["images"]


async def test_undecodable_input_is_400(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """An input that is not an image answers 400 INVALID_IMAGE and is not charged."""
    status, body = await post(http, "enhance", {"image": b64(b"hello world")})
    assert (status, body["code"]) == (400, "INVALID_IMAGE")
    assert emu.net_spent() == 0


async def test_invalid_base64_is_400(http: aiohttp.ClientSession) -> None:
    """A string that is neither a URL nor base64 answers 400."""
    status, body = await post(http, "enhance", {"image": "not base64 !!"})
    assert (status, body["code"]) == (400, "INVALID_IMAGE")


async def test_url_inputs_are_downloaded(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """An input given as an http URL is fetched and processed."""
    url = emu.store_file(jpeg_bytes(), "image/jpeg")
    status, _ = await post(http, "enhance", {"image": url})
    assert status == 200


async def test_content_moderation_is_400(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """A blocked prompt answers 400 CONTENT_MODERATION and charges nothing."""
    status, body = await post(http, "generate", {"prompt": "some forbidden-content here"})
    assert (status, body["code"]) == (400, "CONTENT_MODERATION")
    assert emu.ledger == []


@pytest.mark.parametrize(
    ("endpoint", "body", "expected"),
    [
        ("enhance", {"image": b64(jpeg_bytes()), "num_output_images": 3}, 0.36),
        ("remix", {"input_image": b64(jpeg_bytes()), "reference_image": b64(png_bytes())}, 0.12),
        ("generate", {"prompt": "x", "base_model": "gpt-image-2", "resolution": "2K"}, 0.285),
    ],
)
async def test_each_call_is_charged_by_the_price_table(
    http: aiohttp.ClientSession, emu: PhotaEmulator, endpoint: str, body: dict, expected: float
) -> None:
    """A successful call adds one charge with the table price and lowers the balance."""
    status, _ = await post(http, endpoint, body)
    assert status == 200
    assert [e["amount"] for e in emu.charges()] == [pytest.approx(expected)]
    assert emu.balance == pytest.approx(1000 - expected)


async def test_recognised_subject_raises_enhance_price(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """Enhance with a trained subject costs $0.15 an image instead of $0.12."""
    profile_id = await ready_profile(http, emu)
    status, _ = await post(
        http, "enhance", {"image": b64(jpeg_bytes()), "profile_ids": [profile_id]}
    )
    assert status == 200
    assert emu.charges()[-1]["amount"] == pytest.approx(0.15)


async def test_slow_sync_call_is_504_and_refunded() -> None:
    """A call still processing when the clock passes sync_timeout answers 504 and is refunded."""
    clock = ManualClock()
    async with (
        PhotaEmulator(
            clock=clock, processing_seconds=0.5, sync_timeout=0.05, max_output_side=64
        ) as emu,
        aiohttp.ClientSession(headers={"X-API-Key": emu.api_key}) as session,
    ):

        async def generate() -> tuple[int, dict]:
            async with session.post(f"{emu.base_url}/generate", json={"prompt": "x"}) as resp:
                return resp.status, await resp.json()

        call = asyncio.create_task(generate())
        await until(lambda: clock.sleepers == 2)  # the time limit and the processing time
        clock.advance(0.05)
        status, body = await call
        assert (status, body["code"]) == (504, "TIMEOUT")
        assert [e["kind"] for e in emu.ledger] == ["charge", "refund"]
        assert emu.net_spent() == 0


async def test_url_mode_returns_signed_downloads(http: aiohttp.ClientSession) -> None:
    """response_mode urls gives download URLs that serve the image without a key."""
    _, body = await post(
        http, "generate", {"prompt": "x", "response_mode": "urls", "output_format": "png"}
    )
    assert body["images"] == []
    async with aiohttp.ClientSession() as anon, anon.get(body["download_urls"][0]) as resp:
        data = await resp.read()
        assert resp.content_type == "image/png"
    assert decode(data).format == "PNG"


async def test_tampered_download_url_is_refused(http: aiohttp.ClientSession) -> None:
    """A download URL with a changed signature answers 403."""
    _, body = await post(http, "generate", {"prompt": "x", "response_mode": "urls"})
    url = body["download_urls"][0][:-4] + "0000"
    async with aiohttp.ClientSession() as anon, anon.get(url) as resp:
        assert resp.status == 403


async def test_download_url_expires_on_the_clock(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A download URL serves for its 24 hours on the clock, then answers 403 URL_EXPIRED."""
    _, body = await post(http, "generate", {"prompt": "x", "response_mode": "urls"})
    url = body["download_urls"][0]
    async with aiohttp.ClientSession() as anon:
        manual(emu).advance(24 * 3600 - 1)
        async with anon.get(url) as resp:
            assert resp.status == 200
        manual(emu).advance(2)
        async with anon.get(url) as resp:
            body = await resp.json()
        assert (resp.status, body["code"]) == (403, "URL_EXPIRED")
