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
import threading
import warnings
from collections.abc import Sequence
from statistics import NormalDist

from PIL import (
    Image,
    ImageChops,
    ImageDraw,
    ImageEnhance,
    ImageFilter,
    ImageMath,
    ImageOps,
    ImageStat,
)

MAX_INPUT_SIDE = 4096
# Inputs with more pixels than these (read from the header, before any decoding) answer 400
# INVALID_IMAGE. A JPEG is decoded at 1/8 scale at most (draft mode), so even the limit costs
# about 15 MP of memory; other formats (PNG, WebP, HEIF, ...) can only be decoded at full
# size, so their limit bounds the decode's memory: 50 MP is 200 MB in RGBA.
MAX_JPEG_PIXELS = 120_000_000
MAX_OTHER_PIXELS = 50_000_000
# Transparent pixels are laid on this neutral grey, not on the black their RGB values hold.
BACKDROP = (128, 128, 128)
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
    """Raised when bytes are not an image Pillow can decode, or one over the pixel limit."""


# Image.open runs Pillow's own bomb check, which warns (an error under a strict warnings
# filter) past its MAX_IMAGE_PIXELS: that warning is silenced while the header is read, under
# a lock because the warnings filters are process-wide, so the emulator's own limit decides
# and answers the same whatever the filter.
_OPEN_LOCK = threading.Lock()


def _open(data: bytes) -> Image.Image:
    """Open ``data`` (the header only) and refuse it if it has too many pixels."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError:
            raise ImageDecodeError(f"more than {MAX_JPEG_PIXELS} pixels") from None
    w, h = img.size
    limit = MAX_JPEG_PIXELS if img.format == "JPEG" else MAX_OTHER_PIXELS
    if w * h > limit:
        img.close()
        raise ImageDecodeError(f"{w}x{h} is more than {limit} pixels ({img.format})")
    return img


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
        with _open(data) as img:
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
            out = _flatten(ImageOps.exif_transpose(out))
    except ImageDecodeError:
        raise
    except Exception as exc:  # Pillow raises many unrelated types for bad input
        raise ImageDecodeError(f"not a decodable image ({type(exc).__name__})") from exc
    if max(out.size) > side:
        out.thumbnail((side, side), Image.Resampling.BICUBIC)
    # The size the photo has, upright, before any scaling: outputs are sized from it.
    out.info["source_size"] = (h, w) if (out.width > out.height) != (w > h) else (w, h)
    return out


def _flatten(img: Image.Image) -> Image.Image:
    """``img`` in RGB, any transparency laid on the neutral ``BACKDROP`` (not on black)."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKDROP)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        flat.info = img.info
        return flat
    return img.convert("RGB")


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
BLACK, WHITE = 6, 247  # every output channel lands inside these: nothing pure black or white
MAX_STRETCH = 3.0  # levels widen the tonal range at most this much (noise grows with it)
TARGET_MEAN = 0.42  # a dark photo's mean luminance is lifted towards this (0-1)
MAX_LIFT = 6.0  # the strongest shadow lift (log1p(k x) / log1p(k)), for the dimmest photos
NOISE_SIDE = 512  # grain is measured on a central crop this large at most
VIBRANCE = 1.15  # a dim photo's colour is spread this much from grey: it is faded too


def working_copy(img: Image.Image) -> Image.Image:
    """A small copy for measuring: a box reduction (cheap), about WORK_SIDE."""
    factor = max(img.size) // WORK_SIDE
    return img.reduce(factor) if factor >= 2 else img


def noise_sigmas(img: Image.Image) -> list[float]:
    """Each band's grain as a standard deviation, robust to edges.

    Measured on a pixel's distance from its 5x5 mean, as an RMS over the distances up to three
    times their median: the grain's, whatever the few edges do. A central crop of at most
    512 px is enough to measure it (grain is everywhere) and costs a fraction of the photo.
    """
    w, h = img.size
    cw, ch = min(w, NOISE_SIDE), min(h, NOISE_SIDE)
    work = img.crop(((w - cw) // 2, (h - ch) // 2, (w + cw) // 2, (h + ch) // 2))
    diff = ImageChops.difference(work, work.filter(ImageFilter.BoxBlur(2)))
    hist = diff.histogram()
    sigmas = []
    for b in range(len(work.getbands())):
        band = hist[b * 256 : (b + 1) * 256]
        # The RMS of the deviations up to 3x their median: the grain's, without the edges'.
        cut = 3 * _percentile(band, 0.5) + 2
        kept = band[: cut + 1]
        rms = math.sqrt(sum(d * d * c for d, c in enumerate(kept)) / max(1, sum(kept)))
        sigmas.append(max(0.5, rms / 0.98))  # a pixel minus its 5x5 mean: 0.98 sigma
    return sigmas


def _percentile(histogram: list[int], fraction: float) -> int:
    target = sum(histogram) * fraction
    seen = 0
    for value, count in enumerate(histogram):
        seen += count
        if seen >= target:
            return value
    return len(histogram) - 1


def denoise(img: Image.Image, sigmas: Sequence[float], radius: int = 2) -> Image.Image:
    """An edge-keeping denoise: a local Wiener (Lee) filter with a robust edge test.

    Each pixel moves towards its ``radius`` box mean by how much its neighbourhood varies
    beyond the grain (``sigmas``, one per band): in a flat area all the way (the grain goes),
    across an edge not at all (the edge stays as sharp as it was, and no mean from the other
    side leaks into a halo). Deviations count at most four sigmas, so one lone outlier does not
    make its neighbourhood an "edge" and is taken back to its neighbours (no specks). 8-bit
    Pillow operations only (box blurs, lookup tables, channel arithmetic): no numpy.
    """
    mean = img.filter(ImageFilter.BoxBlur(radius))
    dev = ImageChops.difference(img, mean)
    # Squared deviations in units of each band's own cap (4 sigmas: beyond it a deviation is an
    # edge's or an outlier's and counts as 4 sigmas), 255 at the cap.
    square = []
    for s in sigmas:
        cap = 4 * s
        square += [round(255 * min(d, cap) ** 2 / cap**2) for d in range(256)]
    # An edge in any band is an edge for all of them (no colour fringe where only one band
    # is smoothed), and one band is a third of the blurring.
    bands = dev.point(square).split()
    spread = bands[0]
    for band in bands[1:]:
        spread = ImageChops.lighter(spread, band)
    spread = spread.filter(ImageFilter.BoxBlur(1))
    # Weight of the local mean: 1 where the neighbourhood varies as grain does (up to 3
    # sigma squared), falling fast as the variation beyond that outgrows the grain.
    strength = []
    for v in range(256):
        excess = max(0.0, 16 * v / 255 - 3)  # variance beyond the grain's, in sigma squared
        strength.append(round(255 / (1 + (excess / 3) ** 2)))
    weight = spread.point(strength)
    weight = Image.merge(img.mode, [weight] * len(bands))
    up, down = ImageChops.subtract(img, mean), ImageChops.subtract(mean, img)
    out = ImageChops.subtract(img, ImageChops.multiply(up, weight))
    return ImageChops.add(out, ImageChops.multiply(down, weight))


def _tone_curve(work: Image.Image) -> tuple[list[float], float]:
    """A luminance curve (256 values): levels, then a lift of the shadows and mid-tones.

    The black point is the 0.5th percentile (at most half the median) and the white point the
    99.5th, but the range is widened at most ``MAX_STRETCH`` times and the brightest tones keep
    headroom, so a dim photo's highlights do not turn white. A dim photo's mean is then lifted
    towards ``TARGET_MEAN`` by a curve of bounded slope, so shadows open up without their
    grain exploding. Also returns how dim the photo is, from 0 (its highlights are light) to 1.
    """
    hist = work.convert("L").histogram()
    low, high = _percentile(hist, 0.005), _percentile(hist, 0.995)
    dim = min(1.0, max(0.0, (0.6 - high / 255) / 0.3))  # 1: highlights below 30 % grey
    flat = min(1.0, max(0.0, (0.6 - (high - low) / 255) / 0.3))  # 1: tones within 30 %
    # A dim or flat photo gets full levels; one whose tones already reach from dark to light
    # (a dark scene well exposed) moves its black and white points only halfway, or its
    # backdrop would sink and its face bleach. Only a dim photo is lifted.
    full = 0.5 + 0.5 * max(dim, flat)
    low = min(low, 64)  # a photo with no shadows keeps its light look
    if dim > 0.5:  # a dim photo's most common tones are not taken for black
        low = min(low, _percentile(hist, 0.5) // 2)
    low = round(low * full)
    high = max(high, low + 48)
    span = max(high - low, round(255 / MAX_STRETCH))  # a very flat photo is not stretched flat out
    if low + span > 255:
        low = 255 - span
    levelled = [min(1.0, max(0.0, (v - low) / span)) for v in range(256)]
    total = max(1, sum(hist))

    def lifted(k: float) -> list[float]:
        # log(1 + k x) / log(1 + k): its slope never exceeds k / log(1 + k) (about 3 at most
        # here), unlike a gamma's, which is infinite at black and would make the shadows'
        # grain explode.
        return [math.log1p(k * x) / math.log1p(k) if k > 0 else x for x in levelled]

    most = MAX_LIFT * dim
    k = 0.0
    for candidate in (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0):
        if candidate > most:
            break
        curve = lifted(candidate)
        if sum(curve[v] * c for v, c in enumerate(hist)) / total > TARGET_MEAN:
            break
        k = candidate
    # The white point lands a little below WHITE (headroom), or halfway there.
    top = high + (WHITE - 12 - high) * full
    return [BLACK + (top - BLACK) * x for x in lifted(k)], dim


def _white_balance(work: Image.Image) -> list[float]:
    """Gentle grey-world gains, a quarter of the way and within 2 %: a scene keeps its colour."""
    means = ImageStat.Stat(work).mean
    grey = sum(means) / 3
    return [min(1.02, max(0.98, 1 + (grey / m - 1) / 4)) if m > 1 else 1.0 for m in means]


def enhance(img: Image.Image, out_side: int | None = None) -> Image.Image:
    """Improve a photo: denoise first, then levels on luminance, then colour.

    The grain is removed by an edge-keeping filter before any curve can amplify it. A tone
    curve then moves luminance only, and each pixel's three channels are scaled together by
    the same factor as its luminance, so hue and saturation stay as they were (skin keeps its
    tone: lifted, not greyed nor made neon); that factor is capped where a channel would
    pass ``WHITE``. White balance gains stay within 2 %. Every channel of the result is inside
    [``BLACK``, ``WHITE``]. The result is ``out_side`` px on its longer side at most (the
    input's size by default).
    """
    if out_side is not None:
        img = shrink(img, out_side)
    img = img.convert("RGB")
    sigmas = noise_sigmas(img)
    if max(sigmas) > 0.75:
        img = denoise(img, sigmas)
        # A dim photo's curve will be steep, and would make the grain's faint remains (a
        # mottle wider than the first pass's reach) visible: a wider, gentler pass takes them.
        if _tone_curve(working_copy(img))[1] > 0.5:
            img = denoise(img, [s / 2 for s in sigmas], 3)
    work = working_copy(img)
    curve, dim = _tone_curve(work)
    vibrance = 1 + (VIBRANCE - 1) * dim  # only a dim photo's colour is faded
    gains = _white_balance(work)
    balanced = img.point([min(255, round(v * g)) for g in gains for v in range(256)])
    luma = balanced.convert("L")
    # Each pixel's colour is first spread a little from its own grey (VIBRANCE: a dim photo's
    # colour is as faded as its light), then all three channels are scaled by curve(Y) / Y:
    # hue kept, saturation kept, chroma growing with the light. The factor is capped where the
    # largest channel would pass WHITE, so a saturated colour is not clipped into another hue.
    factor = luma.point([curve[y] / max(y, 0.5) for y in range(256)], "F")
    top = ImageChops.lighter(ImageChops.lighter(*balanced.split()[:2]), balanced.split()[2])

    def channel(band: Image.Image) -> Image.Image:
        out = ImageMath.lambda_eval(
            lambda m: m["convert"](
                (m["y"] + (m["c"] - m["y"]) * vibrance)
                * m["min"](m["k"], WHITE / m["max"](m["y"] + (m["top"] - m["y"]) * vibrance, 0.5)),
                "L",
            ),
            c=band,
            y=luma,
            k=factor,
            top=top,
        )
        assert isinstance(out, Image.Image)  # an expression of images gives an image
        return out

    bands = [channel(band) for band in balanced.split()]
    return clamp(Image.merge("RGB", bands), BLACK, WHITE)


def clamp(img: Image.Image, low: int, high: int) -> Image.Image:
    """``img`` with every channel inside [``low``, ``high``]."""
    lut = [min(high, max(low, v)) for v in range(256)]
    return img.point(lut * len(img.getbands()))


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
    out = img.resize(size, Image.Resampling.BICUBIC, box=box)
    # One curve for all channels, so a black-and-white output stays grey. The jitter (and the
    # bicubic's overshoot, and the grain) stay inside the picture's own range: a variant never
    # pushes to pure black or white a tone that its picture kept clear of.
    low = min(band[0] for band in img.getextrema())  # type: ignore[index]
    high = max(band[1] for band in img.getextrema())  # type: ignore[index]
    brightness, contrast = rng.uniform(0.97, 1.03), rng.uniform(0.97, 1.03)
    out = out.point(
        [min(high, max(low, round((v - 128) * contrast + 128 * brightness))) for v in range(256)]
        * 3
    )
    if grain < 0.5:  # would round to nothing in 8 bits
        return out
    out = ImageChops.add(out, _grain(out.size, rng, sigma=grain).convert("RGB"), 1.0, -128)
    return clamp(out, low, high)


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
