"""Load and cancellation: thousands of calls, hundreds cancelled, nothing leaked."""

from __future__ import annotations

import asyncio
import gc
import random
import resource
from collections.abc import Awaitable, Callable

import pytest

from phota_async import PhotaClient, PollPolicy
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes

FAST = PollPolicy().scaled(0.01)


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def open_connections(phota: PhotaClient) -> int:
    """Connections held by the client's pool (in use or idle)."""
    session = phota._session.transport._session  # type: ignore[attr-defined]
    if session is None:
        return 0
    connector = session.connector
    acquired = len(connector._acquired)
    idle = sum(len(conns) for conns in connector._conns.values())
    return acquired + idle


@pytest.mark.slow
async def test_five_thousand_mixed_calls(threaded_emu: PhotaEmulator) -> None:
    """5,000 mixed calls at 200 concurrent all succeed, leave no busy connection, and memory stays flat."""
    emu = threaded_emu
    emu.balance = 1e9
    profile_id = emu.add_profile()
    photo = jpeg_bytes(1, (32, 32))
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, max_concurrency=200, poll=FAST
    ) as phota:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: phota.profiles.get(profile_id),
            lambda: phota.profiles.list(),
            lambda: phota.enhance(photo),
            lambda: phota.generate(f"[[{profile_id}]] on a bench"),
            lambda: phota.webhook_secret(refresh=True),
        ]
        semaphore = asyncio.Semaphore(200)
        failures: list[BaseException] = []

        async def one(i: int) -> None:
            async with semaphore:
                try:
                    await calls[i % len(calls)]()
                except Exception as exc:
                    failures.append(exc)

        await asyncio.gather(*(one(i) for i in range(1000)))  # warm up pools and caches
        gc.collect()
        before = rss_mib()
        await asyncio.gather(*(one(i) for i in range(4000)))
        gc.collect()
        after = rss_mib()
        assert failures == []
        assert len(phota._session.transport._session.connector._acquired) == 0  # type: ignore[attr-defined]
    assert after - before < 25, f"memory grew from {before:.0f} to {after:.0f} MiB"
    assert open_connections(phota) == 0


async def test_cancelling_five_hundred_calls_and_waits(threaded_emu: PhotaEmulator) -> None:
    """500 calls and waits cancelled at random moments leave no task and no connection in use."""
    emu = threaded_emu
    emu.balance = 1e9
    emu.add_fault("/*", delay=0.05, times=10_000)
    profile_id = emu.add_profile()
    rng = random.Random(7)
    before = set(asyncio.all_tasks())
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, poll=FAST, max_concurrency=64
    ) as phota:
        training = [emu.store_file(jpeg_bytes(i, (24, 24))) for i in range(5)]
        kinds: list[Callable[[], Awaitable[object]]] = [
            lambda: phota.profiles.get(profile_id),
            lambda: phota.generate("x"),
            lambda: phota.enhance(jpeg_bytes(2, (24, 24))),
            lambda: phota.jobs.submit_generate("x"),
            lambda: phota.profiles.wait_ready(profile_id, timeout=5),
        ]
        job = await phota.jobs.submit_generate("x")
        kinds.append(lambda: job.wait(timeout=5))
        kinds.append(lambda: phota.profiles.create(training, tier="fast", wait=True, timeout=5))
        tasks = [asyncio.ensure_future(kinds[i % len(kinds)]()) for i in range(500)]
        for task in tasks:
            asyncio.get_running_loop().call_later(rng.uniform(0, 0.3), task.cancel)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) > 250
        assert not [r for r in results if isinstance(r, Exception)]
        await asyncio.sleep(0)
        assert set(asyncio.all_tasks()) - before == set()
        assert len(phota._session.transport._session.connector._acquired) == 0  # type: ignore[attr-defined]
    assert open_connections(phota) == 0


async def test_poller_soak_with_a_thousand_waiters(threaded_emu: PhotaEmulator) -> None:
    """1,000 waiters on 100 jobs all resolve, with one poll loop per job."""
    emu = threaded_emu
    emu.balance = 1e9
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=FAST) as phota:
        jobs = [await phota.jobs.submit_generate(f"scene {i}") for i in range(100)]
        results = await asyncio.gather(*(jobs[i % 100].wait(timeout=30) for i in range(1000)))
        assert len(results) == 1000
        polls = [r for r in emu.requests if r["path"].startswith("/jobs/")]
        assert len(polls) == phota._session.poller.polls
        assert len(polls) < 100 * 30


def test_closed_client_is_an_error_and_closing_twice_is_harmless() -> None:
    """Using a closed client raises; closing it again does nothing."""
    from phota_async.errors import PhotaError

    async def main() -> None:
        phota = PhotaClient(api_key="k", base_url="http://127.0.0.1:9/v1/phota")
        await phota.aclose()
        await phota.aclose()
        with pytest.raises(PhotaError, match="closed"):
            await phota.generate("x")

    asyncio.run(main())
