"""``phota demo``: a tour of the SDK on an in-process emulator, with no key and no network.

It makes sample portraits, uploads them and trains a fast-tier profile, then runs generate,
edit (with the profile), enhance on a deliberately poor photo and remix, saves everything under
the output folder, and draws a contact sheet of inputs beside outputs.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from statistics import NormalDist
from typing import Any

from .._client import PhotaClient
from .._files import off_loop
from .._poll import PollPolicy
from .._uploads import emulator_uploader
from ..models import ImageResult
from .progress import Progress

TRAINING_SECONDS = 4.0
PORTRAITS = 6


def _make_inputs(folder: Path) -> dict[str, Any]:
    """Sample portraits, a poor (dark, flat, noisy) photo and a style reference, on disk."""
    from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

    from ..testing._images import sample_photo

    folder.mkdir(parents=True, exist_ok=True)
    portraits = []
    base = sample_photo(7, (384, 384))
    for i in range(PORTRAITS):
        shot = base.rotate((i - PORTRAITS / 2) * 3, fillcolor=base.getpixel((0, 0)))
        shot = ImageEnhance.Brightness(shot).enhance(0.9 + i * 0.04)
        path = folder / f"portrait-{i}.jpg"
        shot.save(path, quality=90)
        portraits.append(path)
    # A dim, flat snapshot with sensor grain (fine, per-pixel noise, as a phone at night
    # makes): what enhance is for.
    poor = ImageEnhance.Contrast(ImageEnhance.Brightness(base).enhance(0.45)).enhance(0.6)
    poor = poor.filter(ImageFilter.GaussianBlur(0.6))
    # Drawn from a fixed seed (Pillow's effect_noise is not seedable), so the photo is the
    # same on every run and in every process.
    rng = random.Random(7)
    normal = NormalDist(128, 24)
    lut = [max(0, min(255, round(normal.inv_cdf((v + 0.5) / 256)))) for v in range(256)]
    size = poor.size
    grain = Image.merge(
        "RGB",
        [Image.frombytes("L", size, rng.randbytes(size[0] * size[1])).point(lut) for _ in "RGB"],
    )
    poor = Image.blend(poor, grain, 0.12)
    poor_path = folder / "poor-photo.jpg"
    poor.save(poor_path, quality=85)
    style = Image.linear_gradient("L").resize((384, 384)).convert("RGB")
    style = Image.merge(
        "RGB",
        (style.split()[0], style.rotate(90).split()[0], style.point(lambda v: 255 - v).split()[0]),
    )
    draw = ImageDraw.Draw(style)
    for k in range(8):
        draw.ellipse((k * 40, k * 30, k * 40 + 90, k * 30 + 90), outline=(255, 200, 0), width=6)
    style_path = folder / "style-reference.jpg"
    style.save(style_path, quality=90)
    return {"portraits": portraits, "poor": poor_path, "style": style_path}


def _contact_sheet(rows: list[tuple[str, list[Path], list[Path]]], path: Path) -> Path:
    """A PNG with one row per call: its label, its inputs, an arrow, its outputs."""
    from PIL import Image, ImageDraw

    cell, pad, label_w = 192, 12, 150
    widest = max(len(inputs) + len(outputs) for _, inputs, outputs in rows) + 1
    sheet = Image.new(
        "RGB", (label_w + widest * (cell + pad) + pad, len(rows) * (cell + pad) + pad), "white"
    )
    draw = ImageDraw.Draw(sheet)

    def paste(paths: list[Path], x: int, y: int) -> int:
        """Paste thumbnails of ``paths`` from ``x`` on; return where the next one goes."""
        for image_path in paths:
            with Image.open(image_path) as img:
                thumb = img.convert("RGB")
                thumb.thumbnail((cell, cell))
                sheet.paste(thumb, (x, y))
            x += cell + pad
        return x

    for r, (label, inputs, outputs) in enumerate(rows):
        y = pad + r * (cell + pad)
        draw.text((pad, y + cell // 2 - 6), label, fill="black")
        x = paste(inputs, label_w, y)
        if inputs and outputs:
            draw.text((x, y + cell // 2 - 6), "->", fill="black")
            x += 30
        paste(outputs, x, y)
    sheet.save(path)
    return path


async def demo(
    out: Path, *, json_output: bool = False, training_seconds: float = TRAINING_SECONDS
) -> int:
    """Run the tour and write its files under ``out``.

    Args:
        out: the folder for the sample inputs, the outputs and the contact sheet.
        json_output: print a JSON summary instead of the human one (and no progress).
        training_seconds: how long the emulator takes to train the profile.

    Returns:
        The exit code (0).

    Raises:
        PhotaError: a call failed (the emulator is local, so only a bug would do it).
    """
    from ..testing import PhotaEmulator

    started = time.monotonic()
    inputs = await off_loop(_make_inputs, out / "inputs")
    results: dict[str, ImageResult] = {}
    saved: dict[str, list[Path]] = {}
    with Progress(enabled=not json_output) as progress:
        async with (
            PhotaEmulator(training_seconds=training_seconds, max_output_side=768) as emulator,
            PhotaClient(
                api_key=emulator.api_key,
                base_url=emulator.base_url,
                poll=PollPolicy().scaled(0.05),
            ) as phota,
        ):
            progress.note(f"Local Phota emulator at {emulator.base_url}")
            upload = progress.task("upload training photos", PORTRAITS)
            profile = await phota.profiles.create(
                inputs["portraits"],
                tier="fast",
                tag="demo",
                uploader=emulator_uploader(phota),
                on_upload=lambda done, _total: upload.update(done),
            )
            training = progress.task("train profile (fast tier)", None)
            ready = await phota.profiles.wait_ready(
                profile.id,
                timeout=120,
                on_update=lambda p: training.update(int(p.is_ready), status=p.status),
            )
            pid = ready.id
            steps = progress.task("studio calls", 4)
            results["generate"] = await phota.generate(
                f"portrait of [[{pid}]] in a garden", n=2, aspect_ratio="1:1", response_mode="urls"
            )
            steps.update(1)
            results["edit"] = await phota.edit(
                f"make [[{pid}]] brighter and warmer",
                images=[inputs["portraits"][0]],
                profile_ids=[pid],
            )
            steps.update(2)
            results["enhance"] = await phota.enhance(inputs["poor"], profile_ids=[pid])
            steps.update(3)
            results["remix"] = await phota.remix(
                inputs["portraits"][1], reference=inputs["style"], profile_ids=[pid]
            )
            steps.update(4)
            for name, result in results.items():
                saved[name] = await result.save(out / name, stem=name)
            charged = emulator.net_spent()
    rows = [
        ("training set", inputs["portraits"][:4], []),
        ("generate", [], saved["generate"]),
        ("edit", [inputs["portraits"][0]], saved["edit"]),
        ("enhance", [inputs["poor"]], saved["enhance"]),
        ("remix", [inputs["portraits"][1], inputs["style"]], saved["remix"]),
    ]
    sheet = await off_loop(_contact_sheet, rows, out / "contact-sheet.png")
    summary = {
        "profile_id": pid,
        "files": {name: [str(p) for p in paths] for name, paths in saved.items()},
        "contact_sheet": str(sheet),
        "request_ids": {name: result.request_id for name, result in results.items()},
        "charged_usd": charged,
        "seconds": round(time.monotonic() - started, 1),
    }
    if json_output:
        print(json.dumps(summary, indent=2))
    else:
        print(f"\nProfile {pid} trained and used in every call.")
        for name, paths in saved.items():
            print(
                f"  {name:<8} {', '.join(str(p) for p in paths)}  (request {results[name].request_id})"
            )
        print(f"  contact sheet: {sheet}")
        print(f"Estimated cost on the real API: ${charged:.2f} (fast training $1.49 + images).")
        print(f"Done in {summary['seconds']} s; everything is under {out}/")
    return 0
