"""Throttling: ``enhance_many`` against an emulator that rate-limits, beside a tenacity loop.

    python benchmarks/run.py --only throttle           # 2,000 calls per scenario (about 6 min)
    python benchmarks/run.py --only throttle --quick   # a few hundred calls (about 20 s)

Each scenario runs 2,000 ``enhance`` calls at concurrency 64 against an emulator (in its own
process, outputs 16 px) whose account is limited to R requests a second by a token bucket of R
tokens, answering 429 with ``Retry-After`` beyond it: R = 20, R = 80, and R = 80 halved to 40
once the run is a third of the way through (by time). The client is not told R.

Two clients take turns on a fresh emulator each:

- ``sdk``: ``phota.enhance_many(photos, concurrency=64)``, the adaptive limiter on its own.
- ``tenacity``: what a user writes by hand: 64 aiohttp workers, each call retried on 429/503
  with tenacity's ``wait_random_exponential(multiplier=1, max=60)`` (the pattern of the OpenAI
  cookbook), up to 10 attempts, ``Retry-After`` not read.

Figures, from the emulator's request log: goodput (successes per second over the run, first
request to last answer) as a ratio of the limit (its time-weighted mean when it halves), the
share of requests answered 429, and after the halving the time until the client sends no more
than the new limit in a second (1-second bins from the halving on).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

Server = Callable[..., AbstractContextManager[dict[str, Any]]]
Row = tuple[str, float, str, bool, str]

CONCURRENCY = 64


def photo() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((32, 32), 40).convert("RGB").save(buf, format="JPEG")
    return buf.getvalue()


async def run_sdk(srv: dict[str, Any], n: int, image: bytes) -> int:
    from phota_async import PhotaClient

    done = 0
    async with PhotaClient(
        api_key=srv["api_key"], base_url=srv["base_url"], max_concurrency=CONCURRENCY
    ) as phota:
        async for item in phota.enhance_many([image] * n, concurrency=CONCURRENCY):
            done += item.ok
    return done


async def run_tenacity(srv: dict[str, Any], n: int, image: bytes) -> int:
    import aiohttp
    import tenacity

    class Throttled(Exception):
        pass

    body = json.dumps({"image": base64.b64encode(image).decode(), "output_format": "jpg"})
    headers = {"X-API-Key": srv["api_key"], "Content-Type": "application/json"}
    url = srv["base_url"] + "/enhance"
    done = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async with aiohttp.ClientSession(headers=headers) as session:

        @tenacity.retry(
            wait=tenacity.wait_random_exponential(multiplier=1, max=60),
            stop=tenacity.stop_after_attempt(10),
            retry=tenacity.retry_if_exception_type(Throttled),
        )
        async def enhance() -> None:
            async with session.post(url, data=body) as response:
                await response.read()
                if response.status in (429, 503):
                    raise Throttled(response.status)
                response.raise_for_status()

        async def worker() -> None:
            nonlocal done
            while not queue.empty():
                queue.get_nowait()
                try:
                    await enhance()
                except (tenacity.RetryError, aiohttp.ClientError):
                    continue  # given up after 10 attempts, or refused for good
                done += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return done


def bins(log: list[list[Any]], start: float, seconds: int) -> list[int]:
    """Requests sent in each second from ``start`` on."""
    counts = [0] * seconds
    for at, _ in log:
        k = int(at - start)
        if 0 <= k < seconds:
            counts[k] += 1
    return counts


def scenario(
    server: Server, impl: str, n: int, rate: float, halve_after: float | None
) -> dict[str, Any]:
    """One client against a fresh emulator limited to ``rate`` (halved after ``halve_after``
    seconds, if given); figures from the emulator's request log."""
    image = photo()
    limit = {"rate": rate}
    with server(max_output_side=16, balance=1e9, rate_limit=limit) as srv:
        run = run_sdk if impl == "sdk" else run_tenacity

        async def main() -> tuple[int, float | None]:
            halved: list[float] = []

            async def halve() -> None:
                assert halve_after is not None
                await asyncio.sleep(halve_after)
                halved.append(time.time())
                await asyncio.to_thread(srv["ask"], "limit " + json.dumps({"rate": rate / 2}))

            timer = asyncio.ensure_future(halve()) if halve_after is not None else None
            try:
                done = await run(srv, n, image)
            finally:
                if timer is not None:
                    timer.cancel()
            return done, (halved[0] if halved else None)

        done, halved_at = asyncio.run(main())
        log = srv["ask"]("log /enhance")
    start = min(at for at, _ in log)
    end = max(at for at, _ in log)
    took = max(end - start, 1e-9)
    ok = sum(1 for _, status in log if status == 200)
    refused = sum(1 for _, status in log if status in (429, 503))
    if halved_at is None or halved_at >= end:
        mean_limit = rate
    else:
        mean_limit = (rate * (halved_at - start) + rate / 2 * (end - halved_at)) / took
    figures: dict[str, Any] = {
        "done": done,
        "n": n,
        "seconds": took,
        "goodput": ok / took / mean_limit,
        "refused": refused / len(log),
        "requests": len(log),
        "first_second_refused": sum(1 for at, status in log if status == 429 and at < start + 1.0),
    }
    if halved_at is not None and halved_at < end:
        after = bins(log, halved_at, int(end - halved_at))
        under = next((k for k, sent in enumerate(after) if sent <= rate / 2), None)
        figures["back_under"] = float("inf") if under is None else float(under)
        figures["after_halving"] = after[:10]
    return figures


def show(name: str, impl: str, f: dict[str, Any]) -> None:
    extra = ""
    if "back_under" in f:
        extra = f"; back under the halved limit after {f['back_under']:g} s, sent per second " + (
            ", ".join(str(s) for s in f["after_halving"])
        )
    print(
        f"  {name} {impl:8}: {f['done']}/{f['n']} done in {f['seconds']:.1f} s, goodput "
        f"{f['goodput']:.3f} R, 429s {f['refused']:.2%} of {f['requests']} "
        f"({f['first_second_refused']} in the first second){extra}",
        flush=True,
    )


def bench_throttle(quick: bool, server: Server) -> list[Row]:
    """The throttle figures: SDK rows against the targets, tenacity rows for comparison."""
    cases: Iterator[tuple[str, int, float, float | None]]
    if quick:
        cases = iter(
            [("R=20", 60, 20.0, None), ("R=80", 200, 80.0, None), ("R=80->40", 200, 80.0, 1.0)]
        )
    else:
        cases = iter(
            [("R=20", 2000, 20.0, None), ("R=80", 2000, 80.0, None), ("R=80->40", 2000, 80.0, 12.0)]
        )
    rows: list[Row] = []
    for name, n, rate, halve_after in cases:
        found = {}
        for impl in ("sdk", "tenacity"):
            found[impl] = f = scenario(server, impl, n, rate, halve_after)
            show(name, impl, f)
        for impl, f in found.items():
            label = f"{name}, {n} enhance at concurrency 64: {impl}"
            rows.append((f"{label} goodput", f["goodput"], ">= 0.95 R", f["goodput"] >= 0.95, " R"))
            rows.append(
                (
                    f"{label} requests answered 429",
                    f["refused"] * 100,
                    "<= 2 %",
                    f["refused"] <= 0.02,
                    " %",
                )
            )
            if "back_under" in f:
                rows.append(
                    (
                        f"{label} back under the halved limit",
                        f["back_under"],
                        "<= 5 s",
                        f["back_under"] <= 5,
                        " s",
                    )
                )
    return rows
