"""Upload throughput and client memory of ``S3Uploader`` against moto's S3 server on loopback.

    python benchmarks/s3_upload.py              # 30 photos of 4 MiB (the issue's figure), 3 runs
    python benchmarks/s3_upload.py --quick      # 3 photos of 256 KiB, 1 run: checks that it works
    python benchmarks/run.py --only s3          # the same, in the benchmark table

The S3 server runs in its own process, and each run's client in a fresh process of its own,
so the peak RSS printed is one client's alone (interpreter, aiobotocore and the uploads; ``VmHWM``).
Printed per run and as the median: MB/s over all uploads (hashing, HEAD, PUT, presign; MB is
10**6 bytes) once the client is open, the worst event-loop lag seen by a 10 ms ticker
meanwhile, the one-off cost of opening the client (seconds, and the loop lag then: creating an
aiobotocore client parses S3's models), and peak RSS.
Nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = (
    "import sys\n"
    "from moto.server import ThreadedMotoServer\n"
    "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False)\n"
    "s.start()\n"
    "print(s.get_host_and_port()[1], flush=True)\n"
    "sys.stdin.read()\n"
    "s.stop()\n"
)
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


async def measure(endpoint: str, folder: Path, count: int, size: int) -> dict[str, float]:
    from aiobotocore.session import get_session

    from phota_async.s3 import S3Uploader

    paths = []
    for i in range(count):
        path = folder / f"p{i}.jpg"
        path.write_bytes(b"\xff\xd8\xff" + i.to_bytes(4, "big") + os.urandom(size - 7))
        paths.append(path)
    async with get_session().create_client("s3", endpoint_url=endpoint) as s3:
        await s3.create_bucket(Bucket="bench")
    lag = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal lag
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lag = max(lag, time.perf_counter() - before - 0.01)

    tick = asyncio.create_task(ticker())
    opening = time.perf_counter()
    async with S3Uploader("bench", endpoint_url=endpoint, concurrency=4) as up:
        await up.check()  # opens the client (a one-off cost) and checks the bucket
        open_lag, lag = lag, 0.0
        started = time.perf_counter()
        sem = asyncio.Semaphore(4)

        async def one(path: Path) -> str:
            async with sem:
                return await up(path, path.name, "image/jpeg")

        await asyncio.gather(*(one(p) for p in paths))
        elapsed = time.perf_counter() - started
    stop.set()
    await tick
    return {
        "mb_per_s": count * size / elapsed / 1e6,
        "upload_s": elapsed,
        "max_loop_lag_ms": lag * 1000,
        "open_s": started - opening,
        "open_loop_lag_ms": open_lag * 1000,
        "peak_rss_mib": peak_rss_mib(),
    }


Row = tuple[str, float, str, bool, str]


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``), in MiB: not ``ru_maxrss``, which
    Linux carries over from the parent (the benchmark runner) across fork and exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(endpoint: str, count: int, size: int) -> None:
    """One measured run, in this (fresh) process; prints its figures as one JSON line."""
    os.environ.update(ENV)
    with tempfile.TemporaryDirectory() as folder:
        figures = asyncio.run(measure(endpoint, Path(folder), count, size))
    print(json.dumps(figures), flush=True)


def runs(count: int, size: int, repeats: int) -> list[dict[str, float]]:
    """``repeats`` runs, each in a new client process, against one moto server process."""
    env = {**os.environ, **ENV}
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        endpoint = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        found = []
        for _ in range(repeats):
            argv = [sys.executable, __file__, "--child", endpoint, str(count), str(size)]
            out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
            found.append(json.loads(out.stdout.strip().splitlines()[-1]))
        return found
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)


def _shape(quick: bool) -> tuple[int, int, int]:
    return (3, 256 << 10, 1) if quick else (30, 4 << 20, 3)


def report(found: list[dict[str, float]], count: int, size: int) -> dict[str, float]:
    """Print every run and the medians; return the medians."""
    print(f"  S3Uploader, {count} photos of {size / (1 << 20):g} MiB to moto on loopback:")
    medians = {}
    for name in found[0]:
        values = [run[name] for run in found]
        medians[name] = statistics.median(values)
        every = ", ".join(f"{v:.1f}" for v in values)
        print(f"    {name:16} median {medians[name]:8.1f}   (runs: {every})")
    return medians


def bench_s3(quick: bool) -> list[Row]:
    """The figures as rows of ``run.py``'s table (quick: one small run)."""
    count, size, repeats = _shape(quick)
    medians = report(runs(count, size, repeats), count, size)
    what = f"{count} x {size / (1 << 20):g} MiB"
    # Uploads stream from disk, 4 at a time: memory must not grow with the photos' total size.
    return [
        (f"S3 upload throughput, {what} (moto)", medians["mb_per_s"], "reported", True, " MB/s"),
        (
            "  worst loop lag while uploading",
            medians["max_loop_lag_ms"],
            "<= 20 ms",
            medians["max_loop_lag_ms"] <= 20,
            " ms",
        ),
        (
            "  loop lag opening the client (one-off)",
            medians["open_loop_lag_ms"],
            "reported",
            True,
            " ms",
        ),
        (
            "  client peak RSS",
            medians["peak_rss_mib"],
            "<= 160 MiB",
            medians["peak_rss_mib"] <= 160,
            " MiB",
        ),
    ]


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        endpoint, count, size = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        _child(endpoint, count, size)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, size, repeats = _shape(args.quick)
    report(runs(count, size, repeats), count, size)


if __name__ == "__main__":
    main()
