"""Upload throughput and client memory of ``S3Uploader`` against moto's S3 server on loopback.

    python benchmarks/s3_upload.py              # 30 photos of 4 MiB (the issue's figure)
    python benchmarks/s3_upload.py --quick      # 3 photos of 256 KiB: checks that it works

The S3 server runs in its own process, so the peak RSS printed is the client's alone. Printed:
MB/s over all uploads (hashing, HEAD, PUT, presign), the worst event-loop lag seen by a 10 ms
ticker meanwhile, and peak RSS. Nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
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
    started = time.perf_counter()
    async with S3Uploader("bench", endpoint_url=endpoint, concurrency=4) as up:
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
        "seconds": elapsed,
        "max_loop_lag_ms": lag * 1000,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, size = (3, 256 << 10) if args.quick else (30, 4 << 20)
    os.environ.update(ENV)
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        endpoint = f"http://127.0.0.1:{server.stdout.readline().strip()}"
        with tempfile.TemporaryDirectory() as folder:
            figures = asyncio.run(measure(endpoint, Path(folder), count, size))
    finally:
        assert server.stdin is not None
        server.stdin.close()
        server.wait(timeout=30)
    print(f"S3Uploader, {count} photos of {size / (1 << 20):g} MiB to moto on loopback:")
    for name, value in figures.items():
        print(f"  {name:16} {value:8.1f}")


if __name__ == "__main__":
    main()
