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
from PIL import Image, ImageChops, ImageFilter, ImageStat

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
    """The grain of the flat corner: its fine detail (what a light blur removes), as an RMS.

    Slow swells of tone (a denoised backdrop lifted by a steep curve) are not grain, so they
    do not count, and the figure does not hinge on where a curve's 8-bit steps fall.
    """
    grey = img.convert("L").crop(FLAT)
    fine = ImageChops.difference(grey, grey.filter(ImageFilter.GaussianBlur(2)))
    return float(ImageStat.Stat(fine).rms[0])


def brightness(img: Image.Image) -> float:
    return float(ImageStat.Stat(img.convert("L")).mean[0])


def saturation(img: Image.Image) -> float:
    return float(ImageStat.Stat(img.convert("HSV").getchannel("S")).mean[0])


def clipped(img: Image.Image) -> float:
    hist = img.convert("L").histogram()
    return (sum(hist[:3]) + sum(hist[253:])) / sum(hist)


def test_enhance_lowers_the_grain_of_flat_areas(poor: Image.Image, enhanced: Image.Image) -> None:
    """The backdrop's grain is at most half the input's, although the picture is brighter."""
    assert flat_noise(enhanced) < 0.5 * flat_noise(poor)


def test_the_demo_s_poor_photo_is_the_same_on_every_run(tmp_path: Path) -> None:
    """The poor photo's grain comes from a fixed seed: two makings give the same pixels."""
    first = Image.open(_make_inputs(tmp_path / "a")["poor"]).convert("RGB")
    second = Image.open(_make_inputs(tmp_path / "b")["poor"]).convert("RGB")
    assert first.tobytes() == second.tobytes()


def test_enhance_brightens_a_dark_photo(poor: Image.Image, enhanced: Image.Image) -> None:
    """The mean brightness rises by at least a fifth."""
    assert brightness(enhanced) > 1.2 * brightness(poor)


def test_enhance_keeps_colour_natural(poor: Image.Image, enhanced: Image.Image) -> None:
    """Saturation stays within 1.3 times the input's: no neon skin."""
    assert saturation(enhanced) < 1.3 * saturation(poor)


def test_enhance_clips_almost_nothing(poor: Image.Image, enhanced: Image.Image) -> None:
    """Under 1 % of pixels end at pure black or white."""
    assert clipped(enhanced) < 0.01
