"""The batch manifest's costs: the write-ahead log against the batch it protects.

    python benchmarks/manifest.py [--quick]      # or: python benchmarks/run.py --only manifest

Two figures:

- write-ahead cost: ``enhance_many`` with a manifest (every item a keyed job, its intent
  committed before the submit, its job and outcome after) against the same run as keyed jobs
  without a manifest. Measured as the share of item time spent waiting for manifest commits
  (within each manifest run, so a noisy machine cannot fake it), and as the median wall-time
  ratio of interleaved rounds. The emulator runs in its own process with no added latency, so
  the batch is as fast as this machine allows and the manifest's share as large as it can be.
- resume of a big manifest: seconds to load a finished manifest of N items (each written as
  the engine writes it: intent, job, done) and plan the rerun (absolute inputs, output names,
  which items are done), in this process.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

Server = Callable[..., AbstractContextManager[dict[str, Any]]]


def _photos(folder: Path, n: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"{i:06d}.jpg"
        Image.effect_noise((48, 48), 40).convert("RGB").save(path)
        paths.append(path)
    return paths


CONCURRENCY = 32


async def _batch(
    srv: dict[str, Any], photos: list[Path], out: Path, manifest: Path | None
) -> float:
    from phota_async import PhotaClient, PollPolicy

    async with PhotaClient(
        api_key=srv["api_key"], base_url=srv["base_url"], poll=PollPolicy().scaled(0.05)
    ) as phota:
        started = time.perf_counter()
        run = phota.enhance_many(
            photos, concurrency=CONCURRENCY, out_dir=out, manifest=manifest, via_job=True
        )
        async for item in run:
            assert item.ok, item.error
        return time.perf_counter() - started


def _timed_writes() -> list[float]:
    """Record how long every ``Manifest.write`` keeps its item waiting (this process only)."""
    from phota_async._manifest import Manifest

    waits: list[float] = []
    real = Manifest.write

    async def write(self: Manifest, entries: Any) -> None:
        started = time.perf_counter()
        await real(self, entries)
        waits.append(time.perf_counter() - started)

    Manifest.write = write  # type: ignore[method-assign]
    return waits


def write_ahead_cost(server: Server, tmp: Path, quick: bool) -> tuple[float, float, list[float]]:
    """The write-ahead cost, two ways.

    Returns the share of item time spent waiting for the manifest (sum of the waits over
    concurrency x wall time, within the manifest runs: immune to the machine's noise), the
    median ratio of wall time with a manifest over without, and each round's ratio.
    """
    n, rounds = (40, 1) if quick else (600, 5)
    photos = _photos(tmp / "wal-in", n)
    ratios, shares = [], []
    waits = _timed_writes()
    options = {"max_output_side": 48, "balance": 1e9, "job_queue_seconds": 0.0,
               "job_run_seconds": 0.0}  # fmt: skip
    with server(**options) as srv:
        asyncio.run(_batch(srv, photos, tmp / "warm-up", None))
        for r in range(rounds):
            plain = asyncio.run(_batch(srv, photos, tmp / f"plain-{r}", None))
            waits.clear()
            logged = asyncio.run(_batch(srv, photos, tmp / f"wal-{r}", tmp / f"wal-{r}.manifest"))
            shares.append(sum(waits) / (CONCURRENCY * logged))
            ratios.append(logged / plain)
    return statistics.median(shares), statistics.median(ratios), ratios


def _enhance_options_digest() -> str:
    """The options digest the engine records for a plain ``enhance`` run."""
    from phota_async._batch import BatchRun, Calls

    async def never(value: Any) -> Any:
        raise AssertionError("digesting sends nothing")

    async def digest() -> str:
        run = BatchRun(
            Calls("enhance", never), [], concurrency=1, out_dir=None, manifest=None,
            on_progress=None,
        )  # fmt: skip
        return await run._digest_options()

    return asyncio.run(digest())


def _synthetic_manifest(path: Path, inputs: list[Path], out: Path) -> None:
    """A finished manifest, written change for change as the engine writes it."""
    from phota_async._manifest import Manifest

    options = _enhance_options_digest()
    manifest = Manifest(path)
    manifest._load()
    chunk: list[dict[str, Any]] = []
    for i, value in enumerate(inputs):
        name, key = str(value), f"cr_{i:032x}"
        chunk += [
            {"op": "intent", "input": name, "key": key, "attempt": 1,
             "identity": f"{i:064x}", "options": options, "base": str(out / value.stem)},
            {"op": "job", "input": name, "job": {"job_id": f"job_{i:024x}",
             "status": "QUEUED", "client_request_id": key, "output_format": "jpg"}},
            {"op": "done", "input": name, "outputs": [str(out / f"{value.stem}-0.jpg")],
             "request_id": f"req_{i:024x}"},
        ]  # fmt: skip
        if len(chunk) >= 30_000:
            manifest._commit(chunk)
            chunk = []
    manifest._commit(chunk)
    manifest._close()


async def _plan(inputs: list[Path], out: Path, manifest: Path) -> None:
    from phota_async._batch import BatchRun, Calls

    async def never(value: Any) -> Any:
        raise AssertionError("planning sends nothing")

    run = BatchRun(
        Calls("enhance", never), inputs, concurrency=16, out_dir=out, manifest=manifest,
        on_progress=None,
    )  # fmt: skip
    await run._prepare()
    assert run.remaining == len(inputs)  # outputs absent here: every item would be redone


def resume_seconds(tmp: Path, quick: bool) -> tuple[int, float, int]:
    """(items, seconds to load and plan, manifest bytes) for a finished manifest."""
    n = 20_000 if quick else 1_000_000
    inputs = [Path(f"/photos/2024/{i // 1000:04d}/IMG_{i:07d}.jpg") for i in range(n)]
    out, path = tmp / "out", tmp / "big.manifest"
    _synthetic_manifest(path, inputs, out)
    started = time.perf_counter()
    asyncio.run(_plan(inputs, out, path))
    return n, time.perf_counter() - started, path.stat().st_size


def bench_manifest(
    quick: bool, tmp: Path, server: Server
) -> list[tuple[str, float, str, bool, str]]:
    """The manifest's rows for ``run.py``'s table."""
    share, ratio, ratios = write_ahead_cost(server, tmp, quick)
    print("  wall ratio by round (noisy): " + ", ".join(f"{r:.3f}" for r in sorted(ratios)))
    n, seconds, size = resume_seconds(tmp, quick)
    print(f"  resume of {n:,} items ({size / 1e6:.0f} MB manifest): {seconds:.2f} s")
    return [
        ("share of item time waiting for the manifest", share, "<= 0.05", share <= 0.05, ""),
        (
            "batch wall time with a manifest vs keyed jobs without",
            ratio,
            "<= 1.05x",
            ratio <= 1.05,
            "x",
        ),
        (f"load + plan a {n:,}-item manifest", seconds, "<= 10 s", seconds <= 10, " s"),
    ]


def main() -> int:
    from run import server  # benchmarks/run.py: the emulator in its own process

    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        for figure, value, target, met, shown in bench_manifest(quick, Path(tmp), server):
            print(f"| {figure} | {value:.3f}{shown} | {target} | {'yes' if met else 'no'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
