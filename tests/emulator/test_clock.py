"""The emulator's clock: ManualClock semantics, and the service's timing moved by it alone."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.request
from datetime import datetime

import aiohttp
import pytest

from phota_async.testing import Clock, ManualClock, MonotonicClock, PhotaEmulator
from tests.conftest import b64, jpeg_bytes
from tests.emulator.helpers import JOB_QUEUE, JOB_RUN, P, manual, status_of, training_urls, until

JOB = {"async": True, "response_mode": "urls"}


async def test_advance_wakes_only_the_sleepers_whose_moment_has_come() -> None:
    """Sleepers due at 10 and 20 s: advancing by 10 wakes the first, the second keeps waiting."""
    clock = ManualClock()
    early = asyncio.create_task(clock.sleep(10))
    late = asyncio.create_task(clock.sleep(20))
    await until(lambda: clock.sleepers == 2)
    clock.advance(10)
    await asyncio.wait_for(early, 5)
    assert not late.done()
    assert clock.sleepers == 1
    clock.advance(10)
    await asyncio.wait_for(late, 5)
    assert clock.now() == 20


def test_advance_from_another_thread_wakes_a_sleeper_on_its_own_loop() -> None:
    """A sleeper on a loop in another thread is woken by advance() called from this one."""
    clock = ManualClock()
    woke = threading.Event()

    def sleeper() -> None:
        async def main() -> None:
            await clock.sleep(60)
            woke.set()

        asyncio.run(main())

    thread = threading.Thread(target=sleeper)
    thread.start()
    try:
        for _ in range(500):
            if clock.sleepers:
                break
            woke.wait(0.01)
        assert not woke.is_set()
        clock.advance(60)
        assert woke.wait(5)
    finally:
        clock.advance(1e9)  # never leave the thread asleep, even when an assertion failed
        thread.join(5)
    assert not thread.is_alive()


async def test_cancelled_sleeper_is_forgotten() -> None:
    """A cancelled sleep leaves no sleeper behind."""
    clock = ManualClock()
    nap = asyncio.create_task(clock.sleep(5))
    await until(lambda: clock.sleepers == 1)
    nap.cancel()
    with pytest.raises(asyncio.CancelledError):
        await nap
    assert clock.sleepers == 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_clock_only_moves_forward(bad: float) -> None:
    """Advancing by a negative, NaN or endless amount is a ValueError."""
    with pytest.raises(ValueError, match="forward"):
        ManualClock().advance(bad)


def test_an_advance_past_any_finite_time_is_refused_and_moves_nothing() -> None:
    """An advance that would make the clock read infinity is a ValueError; the clock stays put."""
    clock = ManualClock()
    clock.advance(1e308)
    with pytest.raises(ValueError, match="finite"):
        clock.advance(1e308)
    assert clock.now() == 1e308


@pytest.mark.parametrize("bad", ["1", None, True])
def test_advance_by_what_is_not_a_number_is_a_type_error(bad: object) -> None:
    """advance("1") is a TypeError that says a number of seconds is needed."""
    with pytest.raises(TypeError, match="number of seconds"):
        ManualClock().advance(bad)  # type: ignore[arg-type]


def test_a_ten_year_advance_leaves_a_threaded_emulator_answering() -> None:
    """After ten years on the clock, a queued job succeeds and new calls still answer."""
    clock = ManualClock()
    with PhotaEmulator(clock=clock, max_output_side=32) as emu:
        job = _post(emu, "/generate", {"prompt": "a fox", **JOB})
        clock.advance(10 * 365 * 86400)
        # Making the images takes real time, which the clock does not pace: poll for it.
        give_up = time.monotonic() + 10
        while (status := _call(emu, "GET", f"/jobs/{job['job_id']}")["status"]) == "RUNNING":
            assert time.monotonic() < give_up, "the job never finished"
            time.sleep(0.01)
        assert status == "SUCCEEDED"
        assert _post(emu, "/generate", {"prompt": "a fox", **JOB})["status"] == "QUEUED"


def test_both_clocks_are_clocks_and_real_time_is_the_default() -> None:
    """ManualClock and MonotonicClock satisfy Clock; an emulator without one uses real time."""
    assert isinstance(ManualClock(), Clock)
    assert isinstance(MonotonicClock(), Clock)
    assert isinstance(PhotaEmulator().clock, MonotonicClock)


@pytest.mark.parametrize(
    "options", [{"clock": object()}, {"idempotency_ttl": -1.0}, {"idempotency_ttl": float("nan")}]
)
def test_bad_clock_options_are_refused(options: dict[str, object]) -> None:
    """A clock without now()/sleep(), or a negative or NaN key retention, is a ValueError."""
    with pytest.raises(ValueError, match=r"clock|idempotency_ttl"):
        PhotaEmulator(**options)  # type: ignore[arg-type]


async def test_twenty_minute_standard_training_is_ready_after_advancing_twenty_minutes() -> None:
    """A standard training of 20 minutes on a threaded emulator is READY right after advance(1200)."""
    clock = ManualClock()
    training = {"standard": 20 * 60.0, "fast": 5 * 60.0}
    with PhotaEmulator(clock=clock, training_seconds=training, validation_seconds=0) as emu:
        async with aiohttp.ClientSession(
            base_url=emu.origin, headers={"X-API-Key": emu.api_key}
        ) as http:
            body = {"image_urls": training_urls(emu, 10), "training_tier": "standard"}
            async with http.post(f"{P}/profiles/add", json=body) as resp:
                profile_id = (await resp.json())["profile_id"]
            for _ in range(500):  # the photos are downloaded and checked in real time
                if (await status_of(http, profile_id))["status"] != "VALIDATING":
                    break
                await asyncio.sleep(0.01)
            assert (await status_of(http, profile_id))["status"] == "QUEUING"
            clock.advance(20 * 60 - 1)
            assert (await status_of(http, profile_id))["status"] == "IN_PROGRESS"
            clock.advance(1)
            assert (await status_of(http, profile_id))["status"] == "READY"
    assert clock.now() == 20 * 60


async def test_job_stays_running_until_the_clock_passes_its_run_time(
    threaded_emu: PhotaEmulator,
) -> None:
    """A job on a threaded emulator is RUNNING for exactly its run time, then SUCCEEDED."""
    emu, clock = threaded_emu, manual(threaded_emu)
    async with aiohttp.ClientSession(
        base_url=emu.origin, headers={"X-API-Key": emu.api_key}
    ) as http:
        async with http.post(f"{P}/enhance", json={"image": b64(jpeg_bytes()), **JOB}) as resp:
            job_id = (await resp.json())["job_id"]
        await until(lambda: clock.sleepers == 1)  # the job's task waits on the clock
        clock.advance(JOB_QUEUE)
        assert emu.jobs()[0]["status"] == "RUNNING"
        clock.advance(JOB_RUN - 1)
        assert (emu.jobs()[0]["status"], clock.sleepers) == ("RUNNING", 1)  # still waiting
        clock.advance(1)
        await until(lambda: emu.jobs()[0]["status"] == "SUCCEEDED")
        async with http.get(f"{P}/jobs/{job_id}") as resp:
            job = await resp.json()
    created = datetime.fromisoformat(job["created_at"])
    updated = datetime.fromisoformat(job["updated_at"])
    assert (updated - created).total_seconds() == JOB_QUEUE + JOB_RUN


async def test_job_times_follow_the_clock(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """A job's updated_at is its created_at plus the queue time once it is RUNNING."""
    async with http.post(f"{P}/generate", json={"prompt": "a fox", **JOB}) as resp:
        job_id = (await resp.json())["job_id"]
    manual(emu).advance(JOB_QUEUE)
    async with http.get(f"{P}/jobs/{job_id}") as resp:
        job = await resp.json()
    created = datetime.fromisoformat(job["created_at"])
    updated = datetime.fromisoformat(job["updated_at"])
    assert job["status"] == "RUNNING"
    assert (updated - created).total_seconds() == JOB_QUEUE


async def test_idempotency_key_is_kept_for_its_retention_time(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A key names its job for 24 hours on the clock; after that it makes a new, paid job."""
    body = {"prompt": "a fox", "client_request_id": "order-9", **JOB}

    async def submit() -> str:
        async with http.post(f"{P}/generate", json=body) as resp:
            return str((await resp.json())["job_id"])

    first = await submit()
    manual(emu).advance(24 * 3600 - 1)
    assert await submit() == first
    assert len(emu.charges()) == 1
    manual(emu).advance(1)
    assert await submit() != first
    assert len(emu.charges()) == 2


async def test_added_profile_ready_at_is_a_clock_reading(emu: PhotaEmulator) -> None:
    """profiles() reports ready_at on the emulator's clock."""
    manual(emu).advance(100)
    emu.add_profile(training_seconds=60)
    assert emu.profiles()[0]["ready_at"] == 160


@pytest.mark.phota_emulator(clock="manual")
def test_fixture_marker_gives_a_fresh_manual_clock(phota_emulator: PhotaEmulator) -> None:
    """clock="manual" on the marker gives the fixture a ManualClock a sync test can move."""
    clock = phota_emulator.clock
    assert isinstance(clock, ManualClock)
    assert clock.now() == 0
    profile_id = phota_emulator.add_profile(training_seconds=600)

    def status() -> str:
        request = urllib.request.Request(
            f"{phota_emulator.base_url}/profiles/{profile_id}/status",
            headers={"X-API-Key": phota_emulator.api_key},
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            return str(json.loads(resp.read())["status"])

    assert status() == "QUEUING"
    clock.advance(600)
    assert status() == "READY"


def _call(emu: PhotaEmulator, method: str, path: str, body: object = None) -> dict[str, object]:
    """One blocking JSON call to a threaded emulator (for sync tests)."""
    request = urllib.request.Request(
        f"{emu.base_url}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"X-API-Key": emu.api_key, "Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        answer: dict[str, object] = json.loads(resp.read())
        return answer


def _post(emu: PhotaEmulator, path: str, body: object) -> dict[str, object]:
    return _call(emu, "POST", path, body)
