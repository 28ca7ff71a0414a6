"""What the blocking facade adds to a call: ``phota_async.sync.PhotaClient`` against the async
client it forwards to, in process (a ``MockTransport``, no network).

    python benchmarks/sync_facade.py            # 5,000 calls per figure
    python benchmarks/sync_facade.py --quick    # 200: checks that the script still works

Figures are wall-clock microseconds per ``profiles.get`` (medians of 5 rounds), since the
facade's cost is a hand-over between two threads (the caller's and the facade's loop):

- ``async``: ``await phota.profiles.get(...)`` in a loop on the calling thread;
- ``sync facade``: ``phota.profiles.get(...)`` through the facade's portal;
- ``added``: the difference, the price of calling from synchronous code.

Absolute times on a shared machine are noisy; the added figure is what to compare with a real
call's network round trip (milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable

from phota_async import MockTransport, PhotaClient
from phota_async._protocol import Request, Response
from phota_async.sync import PhotaClient as BlockingClient

BODY = json.dumps({"profile_id": "p1", "status": "READY", "message": None}).encode()
Row = tuple[str, float, str, bool, str]
# About one thread hand-over each way (anyio's own ``portal.call`` costs the same): under a
# millisecond, below a real call's network round trip.
ADDED_TARGET_US = 1000.0


def answer(_: Request) -> Response:
    return Response(200, {"x-request-id": "r"}, BODY)


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def async_us(count: int, rounds: int = 5) -> float:
    async def main() -> list[float]:
        samples = []
        async with PhotaClient(api_key="k", transport=MockTransport(answer)) as phota:
            for _ in range(rounds):
                started = time.perf_counter()
                for _ in range(count):
                    await phota.profiles.get("p1")
                samples.append((time.perf_counter() - started) / count * 1e6)
        return samples

    return _median(asyncio.run(main()))


def sync_us(count: int, rounds: int = 5) -> float:
    samples = []
    with BlockingClient(api_key="k", transport=MockTransport(answer)) as phota:
        get: Callable[[str], object] = phota.profiles.get
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(count):
                get("p1")
            samples.append((time.perf_counter() - started) / count * 1e6)
    return _median(samples)


def figures(count: int) -> dict[str, float]:
    """Median wall-clock microseconds per call: async, through the facade, and the added."""
    direct = async_us(count)
    blocking = sync_us(count)
    return {"async": direct, "sync facade": blocking, "added": blocking - direct}


def bench_sync(quick: bool) -> list[Row]:
    """The added figure as a row of ``run.py``'s table (``--only sync``)."""
    found = figures(200 if quick else 5_000)
    added = found["added"]
    return [
        (
            "sync facade: wall time added per call",
            added,
            f"<= {ADDED_TARGET_US:g} us",
            added <= ADDED_TARGET_US,
            " us",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts")
    count = 200 if parser.parse_args().quick else 5_000
    found = figures(count)
    print(f"profiles.get, wall time per call ({count:,} calls, median of 5 rounds)")
    for name, us in found.items():
        print(f"  {name:<12} {us:8.1f} us")


if __name__ == "__main__":
    main()
