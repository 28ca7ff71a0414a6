"""Contract: enhance's edge cases: transparency, the tonal range, oversized images.

Transparent pixels are laid on a neutral grey, not on the black their colour values hold;
no output channel is pushed to pure black or white, whatever the input and the variant's
jitter; an image over the pixel limit is refused from its header, before any decoding, with
the same 400 INVALID_IMAGE whatever the warnings filter (Pillow's own bomb warning is an
error under a strict filter and a mere message otherwise).
"""

from __future__ import annotations

import base64
import io
import struct
import warnings
import zlib

import aiohttp
import pytest
from PIL import Image

from phota_async.testing._images import (
    MAX_JPEG_PIXELS,
    MAX_OTHER_PIXELS,
    ImageDecodeError,
    decode,
)
from tests.emulator.helpers import P


def png_of(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


async def enhance(http: aiohttp.ClientSession, data: bytes, n: int = 1) -> list[Image.Image]:
    """Enhance ``data`` on the emulator; return its PNG outputs."""
    body = {
        "image": base64.b64encode(data).decode(),
        "output_format": "png",
        "num_output_images": n,
    }
    async with http.post(f"{P}/enhance", json=body) as resp:
        answer = await resp.json()
    assert resp.status == 200, answer
    return [Image.open(io.BytesIO(base64.b64decode(s))).convert("RGB") for s in answer["images"]]


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` and whose pixel data is empty."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


def jpeg_header(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose frame header is rewritten to claim ``width`` x ``height``."""
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 60, 30)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_pixels_decode_as_neutral_grey(mode: str) -> None:
    """A fully transparent image whose colour values are black decodes as neutral mid grey."""
    clear = Image.new(mode, (32, 24), (0, 0, 0, 0) if mode == "RGBA" else (0, 0))
    img = decode(png_of(clear))
    assert img.mode == "RGB"
    assert img.getextrema() == ((128, 128), (128, 128), (128, 128))


def test_opaque_pixels_of_a_transparent_image_keep_their_colour() -> None:
    """The opaque part of a partly transparent image keeps its own colour."""
    img = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    img.paste((200, 40, 40, 255), (0, 0, 16, 32))
    out = decode(png_of(img))
    assert out.getpixel((4, 4)) == (200, 40, 40)
    assert out.getpixel((28, 4)) == (128, 128, 128)


async def test_enhance_of_a_transparent_photo_is_not_black(http: aiohttp.ClientSession) -> None:
    """A transparent photo's enhance shows a neutral backdrop, not black, where it was clear."""
    img = Image.new("RGBA", (96, 96), (0, 0, 0, 0))
    img.paste((180, 120, 90, 255), (32, 32, 64, 64))
    (out,) = await enhance(http, png_of(img))
    r, g, b = out.getpixel((4, 4))  # type: ignore[misc]
    assert min(r, g, b) > 60
    assert max(r, g, b) - min(r, g, b) <= 6  # neutral: no colour cast


@pytest.mark.parametrize(
    ("size", "first", "second"),
    [
        ((2, 2), (0, 0, 0), (255, 255, 255)),
        ((2, 1), (255, 0, 0), (0, 0, 255)),
        ((64, 64), (255, 255, 255), (0, 0, 0)),
        ((64, 48), (250, 200, 10), (10, 20, 30)),
    ],
    ids=["black-white-2x2", "red-blue-2x1", "white-black-64", "yellow-navy-64x48"],
)
async def test_enhance_never_pushes_a_channel_to_0_or_255(
    http: aiohttp.ClientSession,
    size: tuple[int, int],
    first: tuple[int, int, int],
    second: tuple[int, int, int],
) -> None:
    """Across four jittered variants of a two-colour image, no channel is at 0 or 255."""
    picture = Image.new("RGB", size, first)
    picture.paste(second, (size[0] // 2, 0, size[0], size[1]))
    for out in await enhance(http, png_of(picture), n=4):
        for low, high in out.getextrema():  # type: ignore[misc]
            assert low > 0
            assert high < 255


@pytest.mark.parametrize(
    ("data", "limit"),
    [
        (png_header(10_000, 6_000), MAX_OTHER_PIXELS),  # under Pillow's own bomb limit
        (jpeg_header(12_000, 11_000), MAX_JPEG_PIXELS),  # in Pillow's warning range
        (jpeg_header(15_000, 14_000), MAX_JPEG_PIXELS),  # in Pillow's error range
    ],
    ids=["png-60MP", "jpeg-132MP", "jpeg-210MP"],
)
@pytest.mark.parametrize("action", ["error", "ignore", "default"])
def test_oversized_images_are_refused_from_the_header_whatever_the_warnings_filter(
    data: bytes, limit: int, action: str
) -> None:
    """An image over the pixel limit is refused with the same error under any warnings filter.

    The files hold no pixel data: a refusal that names the limit was made from the header.
    """
    with warnings.catch_warnings():
        warnings.simplefilter(action)  # type: ignore[arg-type]
        with pytest.raises(ImageDecodeError, match=f"more than {limit} pixels"):
            decode(data)


def test_an_image_just_under_the_limit_is_not_refused_for_its_size() -> None:
    """A header within the limit is decoded (and fails here only for want of pixel data)."""
    with pytest.raises(ImageDecodeError, match="not a decodable image"):
        decode(png_header(5_000, 5_000))


async def test_an_oversized_image_answers_400_invalid_image(http: aiohttp.ClientSession) -> None:
    """Through the API, an image over the pixel limit answers 400 INVALID_IMAGE."""
    body = {"image": base64.b64encode(jpeg_header(12_000, 11_000)).decode()}
    async with http.post(f"{P}/enhance", json=body) as resp:
        answer = await resp.json()
    assert (resp.status, answer["code"]) == (400, "INVALID_IMAGE")
    assert "pixels" in answer["detail"]
