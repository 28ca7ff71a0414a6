"""Contract: enhance makes the demo's dark, noisy photo better by measurable criteria.

Less grain in flat areas, brighter, colour no stronger than a little above the input's
(no neon skin), and almost nothing pushed to pure black or white.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import aiohttp
import pytest
from PIL import Image, ImageStat

from phota_async._cli.demo import _make_inputs
from phota_async.testing import PhotaEmulator
from tests.conftest import decode
from tests.emulator.helpers import P

FLAT = (8, 8, 96, 96)  # a corner of plain backdrop: any variation there is noise


@pytest.fixture
def poor(tmp_path: Path) -> Image.Image:
    """The demo's deliberately poor photo: dim, flat, grainy."""
    return Image.open(_make_inputs(tmp_path)["poor"]).convert("RGB")


@pytest.fixture
async def enhanced(poor: Image.Image) -> Image.Image:
    """The poor photo through enhance, on an emulator set up as the demo's (seeded)."""
    buf = io.BytesIO()
    poor.save(buf, format="JPEG", quality=90)
    body = {"image": base64.b64encode(buf.getvalue()).decode(), "output_format": "png"}
    async with (
        PhotaEmulator(max_output_side=768, seed=1) as emu,
        aiohttp.ClientSession(base_url=emu.origin, headers={"X-API-Key": emu.api_key}) as http,
        http.post(f"{P}/enhance", json=body) as resp,
    ):
        answer = await resp.json()
    assert resp.status == 200, answer
    out = decode(base64.b64decode(answer["images"][0])).convert("RGB")
    assert out.size == poor.size
    return out


def flat_noise(img: Image.Image) -> float:
    return float(ImageStat.Stat(img.convert("L").crop(FLAT)).stddev[0])


def brightness(img: Image.Image) -> float:
    return float(ImageStat.Stat(img.convert("L")).mean[0])


def saturation(img: Image.Image) -> float:
    return float(ImageStat.Stat(img.convert("HSV").getchannel("S")).mean[0])


def clipped(img: Image.Image) -> float:
    hist = img.convert("L").histogram()
    return (sum(hist[:3]) + sum(hist[253:])) / sum(hist)


def test_enhance_lowers_the_grain_of_flat_areas(poor: Image.Image, enhanced: Image.Image) -> None:
    """The backdrop's noise is lower after enhance, although the picture is brighter."""
    assert flat_noise(enhanced) < flat_noise(poor)


def test_enhance_brightens_a_dark_photo(poor: Image.Image, enhanced: Image.Image) -> None:
    """The mean brightness rises by at least a fifth."""
    assert brightness(enhanced) > 1.2 * brightness(poor)


def test_enhance_keeps_colour_natural(poor: Image.Image, enhanced: Image.Image) -> None:
    """Saturation stays within 1.3 times the input's: no neon skin."""
    assert saturation(enhanced) < 1.3 * saturation(poor)


def test_enhance_clips_almost_nothing(poor: Image.Image, enhanced: Image.Image) -> None:
    """Under 1 % of pixels end at pure black or white."""
    assert clipped(enhanced) < 0.01
