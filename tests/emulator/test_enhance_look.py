"""Contract: enhance makes the demo's dark, noisy photo better by measurable criteria.

Less grain in flat areas, brighter, colour no stronger than a little above the input's
(no neon skin), and almost nothing pushed to pure black or white. And what a person looks at
first: edges as sharp as the input's, no halo round the face, the skin's hue and saturation
kept (lighter, not greyer), no dark specks in the backdrop.

The demo's portrait is drawn by ``sample_photo``: a face ellipse over 0.3-0.7 of the width
and 0.2-0.7 of the height, a shirt from 0.72 of the height down, the backdrop around them.
An output variant is cropped by up to 1.5 % and scaled back, so regions keep a margin.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import aiohttp
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageStat

from phota_async._cli.demo import _make_inputs
from phota_async.testing import PhotaEmulator, _images
from tests.conftest import decode
from tests.emulator.helpers import P

FLAT = (8, 8, 96, 96)  # a corner of plain backdrop: any variation there is noise
SIDE = 384  # the demo's photo is square
# Boxes that each straddle one boundary: face/backdrop left and right, shirt/backdrop, chin.
EDGES = [(90, 150, 140, 200), (250, 150, 300, 200), (60, 290, 120, 370), (150, 255, 230, 290)]
FOREHEAD = (150, 100, 230, 140)  # plain skin, away from the eyes and the face's edge


@pytest.fixture
def poor(tmp_path: Path) -> Image.Image:
    """The demo's deliberately poor photo: dim, flat, grainy."""
    return Image.open(_make_inputs(tmp_path)["poor"]).convert("RGB")


@pytest.fixture
async def enhanced(poor: Image.Image) -> Image.Image:
    """The poor photo through enhance, on an emulator set up as the demo's (seeded)."""
    return await enhance_on_emulator(poor)


@pytest.fixture
def portrait(tmp_path: Path) -> Image.Image:
    """One of the demo's training portraits: well lit, clean."""
    return Image.open(_make_inputs(tmp_path)["portraits"][0]).convert("RGB")


async def enhance_on_emulator(photo: Image.Image) -> Image.Image:
    """``photo`` through enhance, on an emulator set up as the demo's (seeded)."""
    buf = io.BytesIO()
    photo.save(buf, format="JPEG", quality=90)
    body = {"image": base64.b64encode(buf.getvalue()).decode(), "output_format": "png"}
    async with (
        PhotaEmulator(max_output_side=768, seed=1) as emu,
        aiohttp.ClientSession(base_url=emu.origin, headers={"X-API-Key": emu.api_key}) as http,
        http.post(f"{P}/enhance", json=body) as resp,
    ):
        answer = await resp.json()
    assert resp.status == 200, answer
    out = decode(base64.b64decode(answer["images"][0])).convert("RGB")
    assert out.size == photo.size
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


def edge_sharpness(img: Image.Image, box: tuple[int, int, int, int]) -> float:
    """The steepest two-pixel step inside ``box`` as a fraction of the box's tonal range.

    A sharp boundary steps across most of its range within two pixels, wherever it falls
    between them; a smeared one needs several, so its steepest step is a small fraction. Being
    relative to the range, the figure does not change when the picture is brightened.
    """
    crop = img.convert("L").crop(box)
    w, h = crop.size
    right = crop.transform(crop.size, Image.Transform.AFFINE, (1, 0, 2, 0, 1, 0))
    down = crop.transform(crop.size, Image.Transform.AFFINE, (1, 0, 0, 0, 1, 2))
    steps = ImageChops.lighter(
        ImageChops.difference(crop, right), ImageChops.difference(crop, down)
    )
    low, high = crop.getextrema()
    return steps.crop((0, 0, w - 2, h - 2)).getextrema()[1] / max(1, high - low)


def face_ring(inner: float, outer: float) -> Image.Image:
    """A mask of the band between ``inner`` and ``outer`` px outside the face, above the shirt."""

    def grown(by: float) -> Image.Image:
        mask = Image.new("L", (SIDE, SIDE), 0)
        box = (0.3 * SIDE - by, 0.2 * SIDE - by, 0.7 * SIDE + by, 0.7 * SIDE + by)
        ImageDraw.Draw(mask).ellipse(box, fill=255)
        ImageDraw.Draw(mask).rectangle((0, 0.70 * SIDE, SIDE, SIDE), fill=0)
        return mask

    return ImageChops.subtract(grown(outer), grown(inner))


def backdrop_mask() -> Image.Image:
    """The backdrop, 12 px clear of the face and the shirt."""
    mask = Image.new("L", (SIDE, SIDE), 255)
    draw = ImageDraw.Draw(mask)
    draw.ellipse((0.3 * SIDE - 12, 0.2 * SIDE - 12, 0.7 * SIDE + 12, 0.7 * SIDE + 12), fill=0)
    draw.rectangle((0.25 * SIDE - 12, 0.72 * SIDE - 12, SIDE, SIDE), fill=0)
    return mask


def hue_degrees(img: Image.Image, box: tuple[int, int, int, int]) -> float:
    """The mean hue of ``box`` in degrees (skin is near 20-40, far from the wrap at 0)."""
    return ImageStat.Stat(img.convert("HSV").crop(box)).mean[0] * 360 / 256


def box_saturation(img: Image.Image, box: tuple[int, int, int, int]) -> float:
    return float(ImageStat.Stat(img.convert("HSV").crop(box)).mean[1])


def dark_specks(img: Image.Image, depth: int = 10) -> int:
    """Backdrop pixels at least ``depth`` levels darker than the median of their 5x5 block."""
    grey = img.convert("L")
    below = ImageChops.subtract(grey.filter(ImageFilter.MedianFilter(5)), grey)
    below = ImageChops.multiply(below, backdrop_mask())
    return sum(below.histogram()[depth:])


@pytest.mark.parametrize("box", EDGES)
def test_enhance_keeps_edges_sharp(
    poor: Image.Image, enhanced: Image.Image, box: tuple[int, int, int, int]
) -> None:
    """Across each face or shirt boundary the output steps at least 0.8x as sharply as the input."""
    assert edge_sharpness(enhanced, box) >= 0.8 * edge_sharpness(poor, box)


def test_enhance_draws_no_halo_round_the_face(enhanced: Image.Image) -> None:
    """The band just outside the face is no more than 3 levels darker than the backdrop beyond."""
    grey = enhanced.convert("L")
    near = ImageStat.Stat(grey, face_ring(6, 20)).mean[0]
    far = ImageStat.Stat(grey, face_ring(30, 70)).mean[0]
    assert near >= far - 3


def test_enhance_keeps_the_skin_s_hue(poor: Image.Image, enhanced: Image.Image) -> None:
    """The face's mean hue moves by less than 8 degrees."""
    assert abs(hue_degrees(enhanced, FOREHEAD) - hue_degrees(poor, FOREHEAD)) < 8


def test_enhance_keeps_the_skin_s_saturation(poor: Image.Image, enhanced: Image.Image) -> None:
    """The face's saturation falls by at most a tenth: lighter skin, not greyer skin."""
    assert box_saturation(enhanced, FOREHEAD) >= 0.9 * box_saturation(poor, FOREHEAD)


def test_enhance_lifts_the_skin(poor: Image.Image, enhanced: Image.Image) -> None:
    """The face is brighter by at least half: the lift reaches the subject, not only the backdrop."""
    assert brightness(enhanced.crop(FOREHEAD)) > 1.5 * brightness(poor.crop(FOREHEAD))


def test_enhance_leaves_no_dark_specks_in_the_backdrop(enhanced: Image.Image) -> None:
    """Fewer than 10 backdrop pixels sit 10 levels or more below their 5x5 median."""
    assert dark_specks(enhanced) < 10


def test_enhance_lifts_the_backdrop(poor: Image.Image, enhanced: Image.Image) -> None:
    """The dark backdrop is at least 1.6 times as bright: a dim room opens up, not only the face."""
    assert brightness(enhanced.crop(FLAT)) > 1.6 * brightness(poor.crop(FLAT))


def test_enhance_leaves_a_well_lit_photo_nearly_as_it_was(portrait: Image.Image) -> None:
    """A clean, well-lit portrait keeps its backdrop within a tenth and its face within a fifth.

    Measured on the enhance itself, before a variant's jitter of a few levels.
    """
    out = _images.enhance(portrait)
    before, after = brightness(portrait.crop(FLAT)), brightness(out.crop(FLAT))
    assert abs(after - before) < 0.1 * before
    assert brightness(out.crop(FOREHEAD)) < 1.2 * brightness(portrait.crop(FOREHEAD))
    assert abs(hue_degrees(out, FOREHEAD) - hue_degrees(portrait, FOREHEAD)) < 8
