"""Measure the SDK against the alternatives, in one run, against a local emulator.

    python benchmarks/run.py            # the full figures (a few minutes)
    python benchmarks/run.py --quick    # tiny counts: checks that every benchmark still works

Each client runs in its own process, the emulator in another, and the figures are client CPU
time (user+sys) per call and peak RSS of the client process, printed as ratios against a bare
aiohttp loop (and httpx) measured in the same run. Absolute times on a shared machine are
noise; ratios hold. Nothing here passes or fails: the table says which targets are met.

``throttle`` (``throttle.py``) measures ``enhance_many`` against a rate-limited emulator:
goodput as a share of the limit, the share of requests refused, and the time to get back under
a halved limit, beside a hand-written tenacity loop.

``emulator_memory`` (``emulator_memory.py``) gives the RSS growth of an emulator process over
10,000 calls with its default retention, in MiB.

``s3`` (``s3_upload.py``) adds ``S3Uploader``'s upload throughput (MB/s), worst loop lag and
client peak RSS against moto's S3 server on loopback (30 photos of 4 MiB, 3 runs).

``emulator`` (``emulator_speed.py``) pushes 300 real-sized photos (0.2-4 MB) through
``enhance_many`` against an emulator process: the seconds the run needs of two idle cores.

``ray`` (``ray_pipeline.py``) runs the Ray Data pipeline beside ``enhance_many`` in one
process: rows a second and client CPU milliseconds per row of each.

``hostile`` (``hostile.py``) adds absolute figures: the worst event-loop lag while large bodies
go up and come down, and the growth of RSS while hostile answers are refused.

``webhooks`` (``webhooks.py``) serves the webhook receiver under aiohttp, Starlette and FastAPI:
deliveries per second as ratios, and RSS growth while oversized deliveries are refused.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


@contextmanager
def server(**options: Any) -> Iterator[dict[str, Any]]:
    """An emulator in a separate process; yields its base URL, key, and ``ask``, which sends it
    one command (see ``_server.py``) and returns the answer."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_server.py"), json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def ask(command: str) -> Any:
        stdin.write(command + "\n")
        stdin.flush()
        return json.loads(stdout.readline())

    try:
        yield {**json.loads(stdout.readline()), "ask": ask}
    finally:
        stdin.close()
        proc.wait(timeout=30)


def client(
    workload: str, impl: str, srv: dict[str, Any], n: int, concurrency: int, **extra: str
) -> dict[str, float]:
    """Run one client process and return its measurements."""
    argv = [
        sys.executable, str(HERE / "_clients.py"), workload, impl,
        "--base-url", srv["base_url"], "--key", srv["api_key"],
        "--n", str(n), "--concurrency", str(concurrency),
    ]  # fmt: skip
    for key, value in extra.items():
        argv += [f"--{key}", value]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


class Runs:
    """Every implementation run ``repeats`` times, interleaved (a, b, c, a, b, c ...).

    Ratios are taken within each round and the median of the rounds is reported: runs next to
    each other in time share the machine's state, so a noisy neighbour that slows one round
    down slows both sides of its ratio.
    """

    def __init__(self, repeats: int, impls: list[str], run: Any) -> None:
        self.rounds: list[dict[str, dict[str, float]]] = [
            {impl: run(impl) for impl in impls} for _ in range(repeats)
        ]

    def median(self, impl: str, key: str) -> float:
        """The median of one implementation's figure, for display."""
        return statistics.median(r[impl][key] for r in self.rounds)

    def ratios(self, impl: str, baseline: str, key: str) -> list[float]:
        """``impl``'s figure divided by ``baseline``'s, round by round."""
        return [r[impl][key] / r[baseline][key] for r in self.rounds]

    def ratio(self, impl: str, baseline: str, key: str) -> float:
        """The median over rounds of ``impl``'s figure divided by ``baseline``'s."""
        return statistics.median(self.ratios(impl, baseline, key))


Row = tuple[str, float, str, bool, str]
"""One line of the table: the figure, its value (a ratio unless ``shown`` says otherwise), the
target as text, whether it is met, and the unit the value is shown in."""


def at_most(figure: str, ratio: float, limit: float, unit: str = "x", shown: str = "x") -> Row:
    return (figure, ratio, f"<= {limit:g}{unit}", ratio <= limit, shown)


def at_least(figure: str, ratio: float, limit: float) -> Row:
    return (figure, ratio, f">= {limit:g}x", ratio >= limit, "x")


def show_rounds(what: str, ratios: list[float]) -> None:
    """Print one figure's ratio in every round, smallest first."""
    print(f"  {what} by round: " + ", ".join(f"{r:.2f}" for r in sorted(ratios)))


def per_call(figures: dict[str, float]) -> dict[str, float]:
    """CPU and wall seconds divided by the number of calls."""
    calls = figures["calls"]
    return {**figures, "cpu_s": figures["cpu_s"] / calls, "wall_s": figures["wall_s"] / calls}


def make_photo(path: Path, target_bytes: int) -> None:
    """A noisy JPEG of about ``target_bytes`` (noise defeats compression, like a real photo)."""
    from PIL import Image

    low, high = 64, 4096
    best = b""
    while high - low > 8:
        side = (low + high) // 2
        buf = io.BytesIO()
        Image.effect_noise((side, side), 60).convert("RGB").save(buf, format="JPEG", quality=95)
        if buf.tell() < target_bytes:
            low, best = side, buf.getvalue()
        else:
            high = side
    path.write_bytes(best)


async def ready_profile(srv: dict[str, Any]) -> str:
    from phota_async import PhotaClient, PollPolicy, emulator_uploader
    from phota_async.testing._images import sample_photo

    photos = []
    for i in range(5):
        buf = io.BytesIO()
        sample_photo(i, (64, 64)).save(buf, format="JPEG")
        photos.append(buf.getvalue())
    async with PhotaClient(
        api_key=srv["api_key"], base_url=srv["base_url"], poll=PollPolicy().scaled(0.01)
    ) as phota:
        profile = await phota.profiles.create(
            photos, tier="fast", uploader=emulator_uploader(phota), wait=True, timeout=60
        )
        return profile.id


def bench_get(quick: bool) -> list[Row]:
    n, repeats = (50, 1) if quick else (4000, 9)
    # httpx costs about 17 times as much per call; a fifth of the calls measure it well enough.
    calls = {"sdk": n, "aiohttp": n, "httpx": max(10, n // 5)}
    with server(training_seconds=0.1) as srv:
        profile = asyncio.run(ready_profile(srv))
        runs = Runs(
            repeats,
            list(calls),
            lambda impl: per_call(client("get", impl, srv, calls[impl], 32, profile=profile)),
        )
    print(
        "  CPU per GET (us, medians): "
        + ", ".join(f"{impl} {runs.median(impl, 'cpu_s') * 1e6:.0f}" for impl in calls)
    )
    show_rounds("sdk / aiohttp", runs.ratios("sdk", "aiohttp", "cpu_s"))
    vs_aiohttp = runs.ratio("sdk", "aiohttp", "cpu_s")
    vs_httpx = runs.ratio("sdk", "httpx", "cpu_s")
    return [
        at_most("CPU per profiles.get, 32 concurrent, vs bare aiohttp", vs_aiohttp, 1.25),
        at_most("same, vs httpx.AsyncClient", vs_httpx, 0.2),
    ]


def bench_enhance(quick: bool, tmp: Path) -> list[Row]:
    n, size, repeats = (2, 1 << 20, 1) if quick else (16, 4 << 20, 3)
    photo = tmp / "big.jpg"
    make_photo(photo, size)
    with server(max_output_side=256, max_body_bytes=64 << 20, balance=1e9) as srv:
        runs = Runs(
            repeats,
            ["sdk", "aiohttp"],
            lambda impl: client("enhance", impl, srv, n, 8, photo=str(photo)),
        )
    print(
        f"  photo {photo.stat().st_size / 2**20:.1f} MiB; CPU per call (ms, medians): "
        + ", ".join(f"{i} {runs.median(i, 'cpu_s') / n * 1e3:.1f}" for i in ("sdk", "aiohttp"))
        + "; peak RSS (MiB): "
        + ", ".join(f"{i} {runs.median(i, 'peak_rss_mib'):.0f}" for i in ("sdk", "aiohttp"))
    )
    show_rounds("CPU sdk / aiohttp", runs.ratios("sdk", "aiohttp", "cpu_s"))
    cpu_ratio = runs.ratio("sdk", "aiohttp", "cpu_s")
    rss_ratio = runs.ratio("sdk", "aiohttp", "peak_rss_mib")
    return [
        at_most(
            "CPU per enhance(Path) of a 4 MiB photo, 8 concurrent, vs json= b64", cpu_ratio, 0.45
        ),
        at_most("peak RSS of that run", rss_ratio, 0.35),
    ]


def bench_many(quick: bool, tmp: Path) -> list[Row]:
    from PIL import Image

    n, repeats = (50, 1) if quick else (2000, 3)
    folder = tmp / "small"
    folder.mkdir()
    for i in range(n):
        Image.effect_noise((48, 48), 40).convert("RGB").save(folder / f"{i:05d}.jpg")
    with server(max_output_side=48, balance=1e9) as srv:
        runs = Runs(
            repeats,
            ["sdk", "aiohttp"],
            lambda impl: client("many", impl, srv, n, 64, photo=str(folder)),
        )
    print(
        "  throughput (photos/s, medians): "
        + ", ".join(f"{i} {n / runs.median(i, 'wall_s'):.0f}" for i in ("sdk", "aiohttp"))
    )
    ratio = runs.ratio("aiohttp", "sdk", "wall_s")  # throughput: the inverse of wall time
    return [
        at_least("enhance_many over small photos, concurrency 64, wall throughput", ratio, 0.85)
    ]


async def poll_run(count: int, training: float, interval: float) -> dict[str, float]:
    from phota_async import Cadence, PhotaClient, PollPolicy

    every = Cadence(first=interval, cap=interval, floor=interval, jitter=0.1)
    policy = PollPolicy(
        profile_setup=every, profile_training=every, job=every, max_polls_per_second=10_000
    )
    # The emulator runs in its own process, as for every other figure: in this one it would
    # share the waiters' interpreter lock, and the figure would measure its speed rather than
    # the poller's. Its profiles are added already validated, so that its CPU goes to answering
    # polls rather than to decoding 5,000 training photos while they are being awaited.
    with server() as srv:
        async with PhotaClient(
            api_key=srv["api_key"], base_url=srv["base_url"], poll=policy, max_concurrency=64
        ) as phota:
            # Profiles created over the half second before the waits start, as a busy service
            # would have them: their READY moments fall at every phase of the poll interval.
            profiles = srv["ask"](f"train {count} {training} 0.5")
            before = srv["ask"]("stats")["status_polls"]
            started = time.monotonic()
            resolved: dict[str, float] = {}

            async def wait(pid: str) -> None:
                await phota.profiles.wait_ready(pid, timeout=training * 10 + 30)
                resolved[pid] = time.monotonic()

            await asyncio.gather(*(wait(pid) for pid in profiles))
        after = srv["ask"]("stats")
    polls = after["status_polls"] - before
    ready_at = after["ready_at"]
    ideal = sum(max(0.0, ready_at[pid] - started) for pid in resolved) / interval
    late = max(resolved[pid] - ready_at[pid] for pid in resolved)
    return {"polls": polls, "ideal": ideal, "late": late}


def bench_poll(quick: bool) -> list[Row]:
    # Every wait costs about 1.5 polls beyond waits / interval (one at its start, and the one
    # after READY falls on average half an interval late), so with waits of 2.5-3 s the 1.2x
    # target needs intervals of about 0.35 s or less. 0.3 s means 3,300 polls a second.
    count, training, interval = (50, 1.0, 0.3) if quick else (1000, 3.0, 0.3)
    figures = asyncio.run(poll_run(count, training, interval))
    ratio = figures["polls"] / figures["ideal"]
    print(
        f"  {count} profiles: {figures['polls']} polls, ideal {figures['ideal']:.0f}; "
        f"latest resolution {figures['late']:.2f} s after READY (interval {interval} s)"
    )
    return [
        at_most(f"{count} profiles awaited at once: poll requests vs ideal", ratio, 1.2),
        at_most(
            "slowest waiter resolved after READY, in poll intervals",
            figures["late"] / interval,
            1,
            unit=" interval",
        ),
    ]


def bench_hostile(quick: bool) -> list[Row]:
    import hostile

    found = hostile.figures(quick)
    rows: list[Row] = []
    for case, what in hostile.LAG_CASES.items():
        f = found[case]
        print(
            f"  {what}: worst loop lag {f['lag_ms']:.1f} ms (rounds {f['lag_ms_all']}), "
            f"loop CPU between ticks {f['held_ms']:.1f} ms, {f['seconds']:.2f} s, {f['outcome']}"
        )
        if case != "idle":
            rows.append(at_most(f"worst loop lag: {what}", f["lag_ms"], 20, " ms", " ms"))
            rows.append(at_most("  loop CPU between two ticks", f["held_ms"], 20, " ms", " ms"))
    for case, what in hostile.MEMORY_CASES.items():
        f = found[case]
        print(f"  {what}: {f['outcome']} after {f['seconds']:.2f} s, RSS +{f['rss_mib']:.1f} MiB")
        # What is refused from memory may be held up to its cap (64 MiB by default) first;
        # what is decoded or downloaded into files must not grow memory at all.
        limit = 72 if case in ("endless_get", "gzip_bomb") else 16
        met = f["outcome"] == "ResponseTooLargeError"
        row = at_most(f"RSS growth refusing: {what}", f["rss_mib"], limit, " MiB", " MiB")
        rows.append((*row[:3], row[3] and met, row[4]))
    return rows


# Benchmarks in their own modules that take only ``quick``: name -> (module, function).
# Imported when chosen, so one benchmark's optional dependencies never block another.
QUICK_ONLY: dict[str, tuple[str, str]] = {
    "validate": ("validate", "bench_validate"),
    "emulator_memory": ("emulator_memory", "bench_emulator_memory"),
    "s3": ("s3_upload", "bench_s3"),
    "webhooks": ("webhooks", "bench_webhooks"),
    "emulator": ("emulator_speed", "bench_emulator"),
    "budget": ("budget", "bench_budget"),
    "sync": ("sync_facade", "bench_sync"),
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny counts, to check the benchmarks run"
    )
    names = (
        "get",
        "enhance",
        "many",
        "poll",
        "manifest",
        "hostile",
        "validate",
        "budget",
        "throttle",
        "sync",
        "emulator_memory",
        "s3",
        "webhooks",
        "emulator",
        "ray",
    )
    parser.add_argument("--only", choices=names, action="append")
    args = parser.parse_args()
    chosen = args.only or list(names)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in chosen:
            print(f"{name} ...", flush=True)
            if name == "get":
                rows += bench_get(args.quick)
            elif name == "enhance":
                rows += bench_enhance(args.quick, Path(tmp))
            elif name == "many":
                rows += bench_many(args.quick, Path(tmp))
            elif name == "manifest":
                from manifest import bench_manifest

                rows += bench_manifest(args.quick, Path(tmp), server)
            elif name == "hostile":
                rows += bench_hostile(args.quick)
            elif name == "throttle":
                from throttle import bench_throttle

                rows += bench_throttle(args.quick, server)
            elif name in QUICK_ONLY:
                module, function = QUICK_ONLY[name]
                rows += getattr(importlib.import_module(module), function)(args.quick)
            elif name == "ray":
                from ray_pipeline import bench_ray

                rows += bench_ray(args.quick, server)
            else:
                rows += bench_poll(args.quick)
    print()
    print("| figure | value | target | met |")
    print("|---|---|---|---|")
    for figure, value, target, met, shown in rows:
        print(f"| {figure} | {value:.2f}{shown} | {target} | {'yes' if met else 'no'} |")
    if args.quick:
        print("\n(quick mode: tiny counts, figures are not meaningful)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
