"""How fast the emulator turns real-sized photos into results: 300 photos of 0.2-4 MB through
``enhance_many`` at concurrency 16, the emulator in its own process.

    python benchmarks/emulator_speed.py            # 300 photos (target: <= 60 s on 2 cores)
    python benchmarks/emulator_speed.py --n 20     # fewer
    python benchmarks/emulator_speed.py --max-output-side 1024

The photos are made once (camera-like sizes from 1 to 12 megapixels, with fine texture so
that their JPEGs weigh what real ones do) and cached under the temporary directory, so later
runs measure the emulator, not the photo factory. Prints the wall time, photos per second, the
megabytes sent and the CPU seconds per photo of the emulator and of the client, with the time
the run would need on two idle cores (on a shared machine the wall time is noise; CPU time
is not), as one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
CACHE = Path(tempfile.gettempdir()) / "phota-bench-photos-v2"
SIZES = [(1280, 960), (1600, 1200), (2048, 1536), (2592, 1944), (3264, 2448), (4000, 3000)]


def photos(n: int) -> list[Path]:
    """``n`` distinct JPEG photos of 0.2-4 MB, made on first use and cached."""
    from PIL import Image, ImageDraw

    from phota_async.testing._images import sample_photo

    CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    textures: dict[tuple[int, int], Image.Image] = {}
    for i in range(n):
        path = CACHE / f"photo-{i:04d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        rng = random.Random(i)
        size = SIZES[i % len(SIZES)]
        if size not in textures:
            base = sample_photo(i, (size[0] // 4, size[1] // 4)).resize(size)
            grain = Image.merge("RGB", [Image.effect_noise(size, 30) for _ in range(3)])
            textures[size] = Image.blend(base, grain, 0.3)
        img = textures[size].copy()
        w, h = size
        x, y = rng.randrange(w // 2), rng.randrange(h // 2)
        ImageDraw.Draw(img).rectangle(
            (x, y, x + w // 8, y + h // 8), fill=(rng.randrange(256),) * 3
        )
        img.save(path, quality=rng.choice((80, 88, 92)))
    return paths


async def run(base_url: str, key: str, paths: list[Path], concurrency: int) -> dict[str, float]:
    from phota_async import PhotaClient

    ok = failed = 0
    started = time.perf_counter()
    async with PhotaClient(api_key=key, base_url=base_url) as phota:
        async for item in phota.enhance_many(paths, concurrency=concurrency, timeout=600):
            if item.error is None:
                ok += 1
            else:
                failed += 1
                print(f"  {item.input}: {item.error}", file=sys.stderr)
    seconds = time.perf_counter() - started
    return {"photos": ok, "failed": failed, "seconds": seconds, "photos_per_s": ok / seconds}


def measure(n: int, concurrency: int, max_output_side: int | None) -> dict[str, float]:
    """Start an emulator process, push ``n`` photos through it, return the figures."""
    paths = photos(n)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    options = {} if max_output_side is None else {"max_output_side": max_output_side}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_server.py"), json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        address = json.loads(proc.stdout.readline())
        own = resource.getrusage(resource.RUSAGE_SELF)
        figures = asyncio.run(run(address["base_url"], address["api_key"], paths, concurrency))
        client = _cpu(resource.getrusage(resource.RUSAGE_SELF)) - _cpu(own)
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)
        proc.stdout.close()
    emulator = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))  # the one child, all its life
    photos_done = max(1.0, figures["photos"])
    return {
        **figures,
        "megabytes_sent": megabytes,
        "emulator_cpu_s_per_photo": emulator / photos_done,
        "client_cpu_s_per_photo": client / photos_done,
        # What the run needs of two otherwise idle cores: all the CPU time shared by two, or the
        # emulator's alone when it is the longer (its process mostly holds one core).
        "seconds_on_2_idle_cores": max(emulator, (emulator + client) / 2),
    }


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def bench_emulator(quick: bool) -> list[tuple[str, float, str, bool, str]]:
    """The rows of ``run.py``'s table: 300 photos (6 with ``quick``) in <= 60 s."""
    n = 6 if quick else 300
    figures = measure(n, 16, None)
    seconds = figures["seconds_on_2_idle_cores"] * 300 / n
    return [
        (
            "emulator: 300 photos of 0.2-4 MB via enhance_many, s on 2 idle cores",
            seconds,
            "<= 60 s",
            seconds <= 60 and figures["failed"] == 0,
            " s",
        ),
        ("emulator: CPU s per photo", figures["emulator_cpu_s_per_photo"], "-", True, " s"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=300, help="photos (300)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-output-side", type=int, default=None)
    args = parser.parse_args()
    print(f"making or reading {args.n} photos under {CACHE} ...", flush=True)
    photos(args.n)
    figures = measure(args.n, args.concurrency, args.max_output_side)
    print(
        f"{figures['photos']:.0f} photos ({figures['megabytes_sent']:.0f} MB) in "
        f"{figures['seconds']:.1f} s: {figures['photos_per_s']:.2f} photos/s, "
        f"{figures['failed']:.0f} failed\n"
        f"CPU per photo: emulator {figures['emulator_cpu_s_per_photo']:.3f} s, client "
        f"{figures['client_cpu_s_per_photo']:.3f} s; on 2 idle cores the run needs "
        f"{figures['seconds_on_2_idle_cores']:.1f} s (target <= 60 s for 300 photos)"
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
