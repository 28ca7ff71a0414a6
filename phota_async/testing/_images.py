"""Real image work for the emulator, done with Pillow.

Every studio endpoint of the emulator returns a genuine PNG or JPEG derived from its inputs, so
that code under test sees realistic bytes (right magic numbers, right sizes) and a human looking
at the output can tell what each call did.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps, ImageStat

MAX_INPUT_SIDE = 4096
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


def decode(data: bytes) -> Image.Image:
    """Decode image bytes to RGB, downscaling sides over 4096 px as the real service does."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            out = ImageOps.exif_transpose(img).convert("RGB")
    except Exception as exc:  # Pillow raises many unrelated types for bad input
        raise ImageDecodeError(f"not a decodable image ({type(exc).__name__})") from exc
    if max(out.size) > MAX_INPUT_SIDE:
        out.thumbnail((MAX_INPUT_SIDE, MAX_INPUT_SIDE))
    return out


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


def enhance(img: Image.Image) -> Image.Image:
    """Improve a photo: denoise, gentle grey-world white balance, auto levels, then sharpen."""
    denoised = img.filter(ImageFilter.MedianFilter(5))
    means = ImageStat.Stat(denoised).mean
    grey = sum(means) / 3
    # Gentle gains: a strongly coloured scene should not be pushed to neutral.
    gains = [min(1.1, max(0.9, grey / m)) if m > 1 else 1.0 for m in means]
    balanced = Image.merge(
        "RGB",
        [
            band.point(lambda v, g=g: min(255, int(v * g)))
            for band, g in zip(denoised.split(), gains, strict=True)
        ],
    )
    levelled = ImageOps.autocontrast(balanced, cutoff=1, preserve_tone=True)
    return levelled.filter(ImageFilter.UnsharpMask(radius=2, percent=80, threshold=3))


def remix(content: Image.Image, style: Image.Image) -> Image.Image:
    """Transfer the per-channel mean and spread of ``style`` onto ``content``."""
    cs, ss = ImageStat.Stat(content), ImageStat.Stat(style)
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


def edit(images: Sequence[Image.Image], prompt: str) -> Image.Image:
    """Apply the prompt words the emulator recognises to the first image.

    Recognised: brighter/darker, warmer/cooler, black and white (or grayscale), blur, sharpen,
    more contrast, crop, flip/mirror, rotate. Further input images are inset in a corner so that
    multi-image edits visibly use every input.
    """
    out = images[0].copy()
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
        out = out.filter(ImageFilter.GaussianBlur(4))
    if " sharpen " in words or " sharper " in words:
        out = out.filter(ImageFilter.UnsharpMask(radius=2, percent=200))
    if " contrast " in words:
        out = ImageEnhance.Contrast(out).enhance(1.5)
    if " crop " in words:
        w, h = out.size
        out = out.crop((w // 8, h // 8, w - w // 8, h - h // 8))
    if " flip " in words or " mirror " in words:
        out = ImageOps.mirror(out)
    if " rotate " in words:
        out = out.rotate(90, expand=True)
    for i, extra in enumerate(images[1:4]):
        thumb = ImageOps.fit(extra, (max(1, out.width // 5), max(1, out.height // 5)))
        out.paste(thumb, (out.width - thumb.width * (i + 1), out.height - thumb.height))
    return out


def generate(
    prompt: str, size: tuple[int, int], subjects: Sequence[Image.Image], seed: int
) -> Image.Image:
    """Draw a deterministic picture from the prompt and the named subjects' pictures."""
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
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
