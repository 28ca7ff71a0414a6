"""Real image work for the emulator, done with Pillow.

Every studio endpoint of the emulator returns a genuine PNG or JPEG derived from its inputs, so
that code under test sees realistic bytes (right magic numbers, right sizes) and a human looking
at the output can tell what each call did.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import re
from collections.abc import Sequence
from statistics import NormalDist

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps, ImageStat

MAX_INPUT_SIDE = 4096
DRAFT_SLACK = 0.6
RESOLUTION_SIDES = {"1K": 1024, "2K": 2048, "4K": 4096}
ASPECT_RATIOS = {
    "1:1": (1, 1),
    "3:4": (3, 4),
    "4:3": (4, 3),
    "9:16": (9, 16),
    "16:9": (16, 9),
}


class ImageDecodeError(ValueError):
    """Raised when bytes are not an image Pillow can decode."""


def _register_heif() -> None:
    """Teach Pillow HEIC/HEIF through ``pillow-heif`` (the ``emulator`` extra), once, lazily."""
    global _heif_registered
    if _heif_registered is not None:
        return
    try:
        from pillow_heif import register_heif_opener
    except ImportError:  # without the extra, HEIC inputs answer 400 INVALID_IMAGE
        _heif_registered = False
        return
    register_heif_opener()
    _heif_registered = True


_heif_registered: bool | None = None
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif")


def decode(data: bytes, max_side: int = MAX_INPUT_SIDE) -> Image.Image:
    """Decode image bytes to RGB no larger than ``max_side`` (4096 px at most, as the service).

    A JPEG is decoded in draft mode (the decoder's own 1/2, 1/4 or 1/8 scaling) at the smallest
    scale that still covers 60 % of ``max_side``, and other formats are shrunk with ``reduce``,
    so that a 12-megapixel photo bound for a 1024 px output never exists at full size in
    memory. ``info["source_size"]`` keeps the photo's own upright size.
    """
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        _register_heif()
    side = min(max_side, MAX_INPUT_SIDE)
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if max(w, h) > side and img.format == "JPEG":
                # The decoder's own scaling, down to 60 % of the size asked for: the last
                # resize to the output size makes up the rest at a fraction of the cost.
                scale = DRAFT_SLACK * side / max(w, h)
                img.draft("RGB", (math.ceil(w * scale), math.ceil(h * scale)))
            img.load()
            out = _reducible(img)
            factor = max(out.size) // side
            out = out.reduce(factor) if factor >= 2 else out.copy()
            out.info = img.info
            out = ImageOps.exif_transpose(out).convert("RGB")
    except Exception as exc:  # Pillow raises many unrelated types for bad input
        raise ImageDecodeError(f"not a decodable image ({type(exc).__name__})") from exc
    if max(out.size) > side:
        out.thumbnail((side, side), Image.Resampling.BICUBIC)
    # The size the photo has, upright, before any scaling: outputs are sized from it.
    out.info["source_size"] = (h, w) if (out.width > out.height) != (w > h) else (w, h)
    return out


def _reducible(img: Image.Image) -> Image.Image:
    """``img`` in a mode ``reduce`` accepts: palette and 1-bit become RGB(A), 16-bit grey 8-bit.

    A 16-bit grey image is scaled down to 8 bits, not clipped (Pillow's own conversion would
    turn everything above 255 of 65535 white).
    """
    if img.mode.startswith("I;16"):
        return img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if img.mode == "1":
        return img.convert("L")
    if img.mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    return img


def encode(img: Image.Image, fmt: str) -> bytes:
    """Encode an RGB image as ``png`` or ``jpg`` bytes."""
    buf = io.BytesIO()
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=1)
    else:
        img.convert("RGB").save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def has_subject(img: Image.Image) -> bool:
    """Tell whether a photo plausibly shows a subject: a flat, featureless frame does not."""
    stddev = ImageStat.Stat(img.convert("L")).stddev[0]
    return stddev >= 4.0


def profile_picture(img: Image.Image, side: int = 256) -> bytes:
    """Make a square JPEG portrait from a training image."""
    return encode(ImageOps.fit(img, (side, side)), "jpg")


def fit_side(size: tuple[int, int], longest: int) -> tuple[int, int]:
    """Scale ``size`` so that its longer side is ``longest`` pixels."""
    w, h = size
    scale = longest / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def target_size(
    aspect_ratio: str, resolution: str, like: tuple[int, int], cap: int | None
) -> tuple[int, int]:
    """Output size for an aspect ratio (``auto`` keeps ``like``'s) at a resolution."""
    longest = RESOLUTION_SIDES[resolution]
    if cap is not None:
        longest = min(longest, cap)
    if aspect_ratio == "auto":
        return fit_side(like, longest)
    rw, rh = ASPECT_RATIOS[aspect_ratio]
    return fit_side((rw * 1000, rh * 1000), longest)


def shrink(img: Image.Image, longest: int) -> Image.Image:
    """``img`` with its longer side at most ``longest`` (never enlarged)."""
    if max(img.size) <= longest:
        return img
    return img.resize(fit_side(img.size, longest), Image.Resampling.BICUBIC, reducing_gap=2.0)


# -- enhance ----------------------------------------------------------------------------------

WORK_SIDE = 768  # statistics (noise, levels, white balance) are measured at this size at most
BLACK, WHITE = 6, 247  # levels land inside these, so nothing is pushed to pure black or white
MAX_STRETCH = 3.5  # levels widen the tonal range at most this much (noise grows with it)


def working_copy(img: Image.Image) -> Image.Image:
    """A small copy for measuring and wide blurs: a box reduction (cheap), about WORK_SIDE."""
    factor = max(img.size) // WORK_SIDE
    return img.reduce(factor) if factor >= 2 else img


def noise_level(img: Image.Image) -> float:
    """Grain of a photo: the spread of its luminance minus a lightly blurred copy of it."""
    grey = working_copy(img).convert("L")
    high = ImageChops.difference(grey, grey.filter(ImageFilter.GaussianBlur(1.5)))
    return float(ImageStat.Stat(high).rms[0])


def _percentile(histogram: list[int], fraction: float) -> int:
    target = sum(histogram) * fraction
    seen = 0
    for value, count in enumerate(histogram):
        seen += count
        if seen >= target:
            return value
    return len(histogram) - 1


def _tone_curve(work: Image.Image) -> tuple[list[float], float]:
    """One curve for every channel: levels inside [BLACK, WHITE], then lift the mid-tones.

    The same curve on the three channels keeps hues; the gamma is bounded so a dark photo
    becomes brighter without its shadows turning grey. Also returns the curve's steepness
    around the photo's mid-tones: how much it will amplify the photo's noise.
    """
    hist = work.convert("L").histogram()
    low, high = _percentile(hist, 0.005), _percentile(hist, 0.995)
    low = min(low, 64)  # a photo with no shadows keeps its light look
    high = max(high, low + 48)
    span = max(high - low, round(255 / MAX_STRETCH))  # a very flat photo is not stretched flat out
    if low + span > 255:
        low = 255 - span
    levelled = [min(1.0, max(0.0, (v - low) / span)) for v in range(256)]
    mean = sum(levelled[v] * c for v, c in enumerate(hist)) / max(1, sum(hist))
    # Lift a dark result towards a mean of 0.42: gamma = log(0.42)/log(mean), bounded.
    gamma = 1.0 if mean <= 0 or mean >= 0.42 else max(0.6, math.log(0.42) / math.log(mean))
    curve = [BLACK + (WHITE - BLACK) * (x**gamma) for x in levelled]
    mid = _percentile(hist, 0.5)
    lo, hi = max(0, mid - 8), min(255, mid + 8)
    return curve, max(1.0, (curve[hi] - curve[lo]) / max(1, hi - lo))


def _smooth(img: Image.Image, work: Image.Image, radius: float, threshold: float) -> Image.Image:
    """An edge-keeping blur: flat areas take the blurred picture, edges keep their own pixels.

    Where the picture differs from its blur by more than ``threshold`` (an edge, not grain),
    only a light blur (two working pixels) takes its grain. The mask is found at the working size, eroded (so lone noisy pixels
    do not count as edges), widened to the blur's reach and softened, so no halo shows.
    """
    factor = max(img.size) / max(work.size)
    # A wide blur loses nothing by being done at the working size and scaled back up.
    soft = work.filter(ImageFilter.GaussianBlur(radius / factor))
    blurred = soft if soft.size == img.size else soft.resize(img.size, Image.Resampling.BILINEAR)
    diff = ImageChops.difference(work, soft).convert("L")
    edges = diff.point(lambda v: 255 if v > threshold else 0)
    edges = edges.filter(ImageFilter.BoxBlur(1)).point(lambda v: 255 if v > 150 else 0)
    # Widen the kept band to the blur's reach, or the blur would smear each edge into a halo.
    reach = radius / factor
    edges = edges.filter(ImageFilter.GaussianBlur(reach)).point(lambda v: 255 if v > 6 else 0)
    edges = edges.filter(ImageFilter.GaussianBlur(1.5)).resize(img.size, Image.Resampling.BILINEAR)
    near = img.filter(ImageFilter.GaussianBlur(2 * factor))  # two working pixels: grain only
    return Image.composite(near, blurred, edges)


def enhance(img: Image.Image, out_side: int | None = None) -> Image.Image:
    """Improve a photo: denoise first, then gentle white balance, levels and a mild lift.

    Everything is decided on a copy at a bounded working size: the tone curve, then the noise
    as it would be once that curve has stretched it. The blur that removes that noise is
    followed by an unsharp mask with a threshold above it, so edges come back and grain does
    not. One curve for all channels lands inside [6, 247] (no clipping), white balance gains
    stay within 4 %, and colour keeps its own spread while luminance is lifted (no neon skin). The result is
    ``out_side`` px on its longer side at most (the input's size by default).
    """
    if out_side is not None:
        img = shrink(img, out_side)
    work = working_copy(img)
    curve, steepness = _tone_curve(work)
    noise = noise_level(work) * steepness  # what the levels would make of the grain
    scale = max(img.size) / max(work.size)  # blur radii are set in working-size pixels
    if noise > 2.0:
        img = _smooth(img, work, min(8.0, noise) * scale, 2.5 * noise / steepness + 1)
    else:
        img = img.filter(ImageFilter.UnsharpMask(1.5 * scale, 40, 3))
    means = ImageStat.Stat(work).mean  # denoising moves no means: the first look will do
    grey = sum(means) / 3
    # Gentle grey-world gains, halfway and within 4 %: a coloured scene stays coloured.
    gains = [min(1.04, max(0.96, 1 + (grey / m - 1) / 2)) if m > 1 else 1.0 for m in means]
    balanced = img.point([min(255, round(v * g)) for g in gains for v in range(256)])
    # The curve moves luminance only; colour keeps its own spread (a touch more, never the
    # curve's stretch), so a lifted dark photo does not turn neon.
    y, cb, cr = balanced.convert("YCbCr").split()
    before = ImageStat.Stat(y).mean[0]
    y = y.point([round(v) for v in curve])
    if steepness > 2:  # a steep curve turns 8-bit levels into visible steps: melt them
        y = y.filter(ImageFilter.BoxBlur(0.3 * steepness * scale))
    # Colour grows with brightness, more slowly: saturation ends near the input's.
    gain = min(1.6, max(1.0, 1.1 * ImageStat.Stat(y).mean[0] / max(1.0, before)))
    chroma = [max(0, min(255, round(128 + (v - 128) * gain))) for v in range(256)]
    return Image.merge("YCbCr", (y, cb.point(chroma), cr.point(chroma))).convert("RGB")


def vary(
    img: Image.Image,
    rng: random.Random,
    size: tuple[int, int] | None = None,
    grain: float = 1.2,
) -> Image.Image:
    """A plausible variant of an output: a slight crop, a touch of tone, a little grain.

    What a generative service's variants differ by, kept small so that every variant still
    looks like the same picture; ``rng`` decides it all, so a seeded emulator repeats itself.
    The variant is ``size`` (``img``'s own size by default); ``grain`` is the noise's sigma.
    """
    w, h = img.size
    size = size or (w, h)
    dx, dy = w * 0.015, h * 0.015
    left, top = rng.uniform(0, dx), rng.uniform(0, dy)
    box = (left, top, w - rng.uniform(0, dx), h - rng.uniform(0, dy))
    out = img.resize(size, Image.Resampling.BILINEAR, box=box)
    # One curve for all channels, so a black-and-white output stays grey.
    brightness, contrast = rng.uniform(0.97, 1.03), rng.uniform(0.97, 1.03)
    out = out.point(
        [min(255, max(0, round((v - 128) * contrast + 128 * brightness))) for v in range(256)] * 3
    )
    if grain < 0.5:  # would round to nothing in 8 bits
        return out
    return ImageChops.add(out, _grain(out.size, rng, sigma=grain).convert("RGB"), 1.0, -128)


def _grain(size: tuple[int, int], rng: random.Random, sigma: float) -> Image.Image:
    """Gaussian grain around 128, drawn from ``rng`` (Pillow's own noise is not seedable)."""
    small = (max(1, size[0] // 2), max(1, size[1] // 2))
    uniform = Image.frombytes("L", small, rng.randbytes(small[0] * small[1]))
    normal = NormalDist(128, sigma)
    lut = [max(0, min(255, round(normal.inv_cdf((v + 0.5) / 256)))) for v in range(256)]
    return uniform.point(lut).resize(size, Image.Resampling.BILINEAR)


def remix(content: Image.Image, style: Image.Image) -> Image.Image:
    """Transfer the per-channel mean and spread of ``style`` onto ``content``."""
    cs, ss = ImageStat.Stat(shrink(content, WORK_SIDE)), ImageStat.Stat(shrink(style, WORK_SIDE))
    bands = []
    for band, cm, csd, sm, ssd in zip(
        content.split(), cs.mean, cs.stddev, ss.mean, ss.stddev, strict=True
    ):
        ratio = ssd / csd if csd > 1e-6 else 1.0
        lut = [max(0, min(255, round((v - cm) * ratio + sm))) for v in range(256)]
        bands.append(band.point(lut))
    return Image.merge("RGB", bands)


def _words(prompt: str) -> str:
    return " " + re.sub(r"[^a-z0-9 ]+", " ", prompt.lower()) + " "


def edit(images: Sequence[Image.Image], prompt: str, size: tuple[int, int]) -> Image.Image:
    """Apply the prompt words the emulator recognises to the first image, at ``size``.

    The first image is cropped to the aspect ratio of ``size`` around its centre and scaled to
    it, as the service's ``aspect_ratio``/``resolution`` ask. Recognised words: brighter/darker,
    warmer/cooler, black and white (or grayscale), blur, sharpen, more contrast, crop,
    flip/mirror, rotate. Further input images are inset in a corner so that multi-image edits
    visibly use every input.
    """
    out = ImageOps.fit(images[0], size, Image.Resampling.BICUBIC)
    words = _words(prompt)
    if " brighter " in words or " brighten " in words:
        out = ImageEnhance.Brightness(out).enhance(1.35)
    if " darker " in words or " darken " in words:
        out = ImageEnhance.Brightness(out).enhance(0.7)
    if " warmer " in words or " warm " in words:
        r, g, b = out.split()
        out = Image.merge(
            "RGB", (r.point(lambda v: min(255, v + 25)), g, b.point(lambda v: max(0, v - 25)))
        )
    if " cooler " in words or " cool " in words:
        r, g, b = out.split()
        out = Image.merge(
            "RGB", (r.point(lambda v: max(0, v - 25)), g, b.point(lambda v: min(255, v + 25)))
        )
    if " black and white " in words or " grayscale " in words or " greyscale " in words:
        out = ImageOps.grayscale(out).convert("RGB")
    if " blur " in words or " blurry " in words:
        out = out.filter(ImageFilter.GaussianBlur(4 * max(size) / 1024))
    if " sharpen " in words or " sharper " in words:
        out = out.filter(ImageFilter.UnsharpMask(radius=2, percent=200))
    if " contrast " in words:
        out = ImageEnhance.Contrast(out).enhance(1.5)
    if " crop " in words:
        w, h = out.size
        out = out.resize(size, Image.Resampling.BICUBIC, box=(w / 8, h / 8, w - w / 8, h - h / 8))
    if " flip " in words or " mirror " in words:
        out = ImageOps.mirror(out)
    if " rotate " in words:
        out = ImageOps.fit(out.rotate(90, expand=True), size, Image.Resampling.BICUBIC)
    for i, extra in enumerate(images[1:4]):
        thumb = ImageOps.fit(extra, (max(1, out.width // 5), max(1, out.height // 5)))
        out.paste(thumb, (out.width - thumb.width * (i + 1), out.height - thumb.height))
    return out


def generate(prompt: str, size: tuple[int, int], subjects: Sequence[Image.Image]) -> Image.Image:
    """Draw a picture from the prompt and the named subjects' pictures (the same prompt draws
    the same scene; ``vary`` makes each output its own take on it)."""
    digest = hashlib.sha256(prompt.encode()).digest()
    top = tuple(digest[0:3])
    bottom = tuple(digest[3:6])
    w, h = size
    gradient = Image.linear_gradient("L").resize((w, h))
    img = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), gradient)
    draw = ImageDraw.Draw(img)
    for i in range(6):
        x, y = digest[6 + i] / 255 * w, digest[12 + i] / 255 * h
        r = (digest[18 + i] / 255 * 0.15 + 0.03) * min(w, h)
        colour = tuple(digest[(20 + i * 2) % 32 : (20 + i * 2) % 32 + 3].ljust(3, b"\x80"))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    if subjects:
        side = max(1, min(w // (len(subjects) + 1), h // 2))
        gap = (w - side * len(subjects)) // (len(subjects) + 1)
        for i, face in enumerate(subjects):
            thumb = ImageOps.fit(face, (side, side))
            mask = Image.new("L", (side, side), 0)
            ImageDraw.Draw(mask).ellipse((0, 0, side - 1, side - 1), fill=255)
            img.paste(thumb, (gap + i * (side + gap), (h - side) // 2), mask)
    return img


def sample_photo(seed: int, size: tuple[int, int] = (256, 256)) -> Image.Image:
    """A synthetic portrait-like photo: a face-ish ellipse on a coloured backdrop."""
    digest = hashlib.sha256(str(seed).encode()).digest()
    w, h = size
    img = Image.new("RGB", size, tuple(digest[0:3]))
    draw = ImageDraw.Draw(img)
    skin = (200 + digest[3] % 40, 150 + digest[4] % 40, 120 + digest[5] % 40)
    draw.ellipse((w * 0.3, h * 0.2, w * 0.7, h * 0.7), fill=skin)
    draw.rectangle((w * 0.25, h * 0.72, w * 0.75, h), fill=tuple(digest[6:9]))
    eye = (30, 30, 30)
    draw.ellipse((w * 0.40, h * 0.38, w * 0.45, h * 0.43), fill=eye)
    draw.ellipse((w * 0.55, h * 0.38, w * 0.60, h * 0.43), fill=eye)
    draw.arc((w * 0.42, h * 0.48, w * 0.58, h * 0.6), 20, 160, fill=eye, width=max(1, w // 100))
    return img
