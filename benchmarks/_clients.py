"""Benchmark helper: one client implementation doing one workload, measured in this process.

Prints one JSON line: client CPU seconds (user+sys) spent in the workload, wall seconds, peak
RSS of the process in MiB, and the number of calls. The server runs in another process.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import resource
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """This process's peak resident memory (VmHWM), in MiB.

    Not ``ru_maxrss``: Linux carries that over from the parent across fork and exec, so a child
    would report the benchmark runner's own peak.
    """
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bounded(n: int, concurrency: int, one: Callable[[int], Awaitable[Any]]) -> None:
    semaphore = asyncio.Semaphore(concurrency)

    async def run(i: int) -> None:
        async with semaphore:
            await one(i)

    await asyncio.gather(*(run(i) for i in range(n)))


# -- GET /profiles/{id}/status ----------------------------------------------------------------


async def get_sdk(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    from phota_async import PhotaClient

    phota = PhotaClient(api_key=args.key, base_url=args.base_url, max_concurrency=args.concurrency)
    await phota.profiles.get(args.profile)  # warm the pool

    async def work() -> None:
        await bounded(args.n, args.concurrency, lambda _: phota.profiles.get(args.profile))
        await phota.aclose()

    return work


async def get_aiohttp(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    import aiohttp

    session = aiohttp.ClientSession(headers={"X-API-Key": args.key})
    url = f"{args.base_url}/profiles/{args.profile}/status"

    async def one(_: int) -> None:
        async with session.get(url) as resp:
            resp.raise_for_status()
            await resp.json()

    await one(0)

    async def work() -> None:
        await bounded(args.n, args.concurrency, one)
        await session.close()

    return work


async def get_httpx(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    import httpx

    client = httpx.AsyncClient(
        headers={"X-API-Key": args.key}, limits=httpx.Limits(max_connections=args.concurrency)
    )
    url = f"{args.base_url}/profiles/{args.profile}/status"

    async def one(_: int) -> None:
        resp = await client.get(url)
        resp.raise_for_status()
        resp.json()

    await one(0)

    async def work() -> None:
        await bounded(args.n, args.concurrency, one)
        await client.aclose()

    return work


# -- POST /enhance with a large local photo -----------------------------------------------------


async def naive_enhance(session: Any, base_url: str, photo: Path) -> None:
    """The common way: read the file, base64 it whole, send it with json=, decode the answer."""
    image = base64.b64encode(photo.read_bytes()).decode()
    body = {
        "image": image,
        "output_format": "jpg",
        "response_mode": "bytes",
        "num_output_images": 1,
    }
    async with session.post(f"{base_url}/enhance", json=body) as resp:
        resp.raise_for_status()
        data = await resp.json()
        [base64.b64decode(s) for s in data["images"]]


async def enhance_sdk(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    from phota_async import PhotaClient

    phota = PhotaClient(api_key=args.key, base_url=args.base_url)
    photo = Path(args.photo)

    async def work() -> None:
        await bounded(args.n, args.concurrency, lambda _: phota.enhance(photo))
        await phota.aclose()

    return work


async def enhance_aiohttp(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    import aiohttp

    session = aiohttp.ClientSession(headers={"X-API-Key": args.key})
    photo = Path(args.photo)

    async def one(_: int) -> None:
        await naive_enhance(session, args.base_url, photo)

    async def work() -> None:
        await bounded(args.n, args.concurrency, one)
        await session.close()

    return work


# -- many small enhances ----------------------------------------------------------------------


async def many_sdk(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    from phota_async import PhotaClient

    phota = PhotaClient(api_key=args.key, base_url=args.base_url, max_concurrency=args.concurrency)
    photos = sorted(Path(args.photo).glob("*.jpg"))[: args.n]

    async def work() -> None:
        async with phota.enhance_many(photos, concurrency=args.concurrency) as run:
            async for item in run:
                if item.error is not None:
                    raise item.error
        await phota.aclose()

    return work


async def many_aiohttp(args: argparse.Namespace) -> Callable[[], Awaitable[None]]:
    import aiohttp

    session = aiohttp.ClientSession(
        headers={"X-API-Key": args.key}, connector=aiohttp.TCPConnector(limit=args.concurrency)
    )
    photos = sorted(Path(args.photo).glob("*.jpg"))[: args.n]

    async def one(i: int) -> None:
        await naive_enhance(session, args.base_url, photos[i])

    async def work() -> None:
        await bounded(len(photos), args.concurrency, one)
        await session.close()

    return work


WORKLOADS = {
    ("get", "sdk"): get_sdk,
    ("get", "aiohttp"): get_aiohttp,
    ("get", "httpx"): get_httpx,
    ("enhance", "sdk"): enhance_sdk,
    ("enhance", "aiohttp"): enhance_aiohttp,
    ("many", "sdk"): many_sdk,
    ("many", "aiohttp"): many_aiohttp,
}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload")
    parser.add_argument("impl")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--profile", default="")
    parser.add_argument("--photo", default="")
    args = parser.parse_args()
    work = await WORKLOADS[(args.workload, args.impl)](args)
    cpu0, wall0 = cpu(), time.perf_counter()
    await work()
    cpu1, wall1 = cpu(), time.perf_counter()
    peak = peak_rss_mib()
    print(
        json.dumps(
            {"cpu_s": cpu1 - cpu0, "wall_s": wall1 - wall0, "peak_rss_mib": peak, "calls": args.n}
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
