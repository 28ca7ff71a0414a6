"""Waiting on profiles against the emulator: results, failures, deadlines, sharing, cancellation."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from phota_async import MockTransport, PhotaClient, PollPolicy, emulator_uploader
from phota_async._protocol import Request, Response
from phota_async.errors import (
    InvalidRequestError,
    NotFoundError,
    ProfileTrainingError,
    WaitTimeoutError,
)
from phota_async.models import Profile
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes, png_bytes, run_virtual, until

FAST = PollPolicy().scaled(0.01)


@pytest.fixture
async def fast(emu: PhotaEmulator) -> AsyncIterator[PhotaClient]:
    """A client polling a hundred times faster than the defaults."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=FAST) as client:
        yield client


async def start(phota: PhotaClient, emu: PhotaEmulator, *, flat: bool = False) -> Profile:
    urls = [emu.store_file(png_bytes() if flat else jpeg_bytes(i)) for i in range(5)]
    return await phota.profiles.create(urls, tier="fast")


def status_polls(emu: PhotaEmulator, profile_id: str) -> int:
    return sum(1 for r in emu.requests if r["path"] == f"/profiles/{profile_id}/status")


async def test_wait_ready_returns_the_ready_profile(fast: PhotaClient, emu: PhotaEmulator) -> None:
    """wait_ready returns the profile once it is READY."""
    profile = await start(fast, emu)
    ready = await fast.profiles.wait_ready(profile.id, timeout=10)
    assert (ready.id, ready.status) == (profile.id, "READY")


async def test_on_update_sees_each_status_on_the_way(fast: PhotaClient, emu: PhotaEmulator) -> None:
    """on_update is called with the snapshots between the start and READY, in order."""
    profile_id = emu.add_profile(training_seconds=0.5)
    seen: list[str] = []

    def note(profile: Profile) -> None:
        if not seen or seen[-1] != profile.status:
            seen.append(profile.status)

    both = await asyncio.gather(
        fast.profiles.wait_ready(profile_id, timeout=10, on_update=note),
        fast.profiles.wait_ready(profile_id, timeout=10),
    )
    assert [p.status for p in both] == ["READY", "READY"]
    assert seen == ["QUEUING", "IN_PROGRESS", "READY"]


async def test_failed_training_raises_with_the_profile(
    fast: PhotaClient, emu: PhotaEmulator
) -> None:
    """A set with no subject ends in ProfileTrainingError carrying status and message."""
    profile = await start(fast, emu, flat=True)
    with pytest.raises(ProfileTrainingError) as info:
        await fast.profiles.wait_ready(profile.id, timeout=10)
    assert info.value.profile.status == "ERROR"
    assert "no subject" in str(info.value)


async def test_inactive_profile_raises(fast: PhotaClient, emu: PhotaEmulator) -> None:
    """An INACTIVE profile ends the wait with ProfileTrainingError."""
    profile = await start(fast, emu)
    emu.set_profile_status(profile.id, "INACTIVE", None)
    with pytest.raises(ProfileTrainingError, match="INACTIVE"):
        await fast.profiles.wait_ready(profile.id, timeout=10)


async def test_deadline_raises_with_the_last_snapshot() -> None:
    """A wait past its deadline raises WaitTimeoutError carrying the last status seen."""
    async with (
        PhotaEmulator(training_seconds=60) as emu,
        PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=FAST) as phota,
    ):
        profile = await start(phota, emu)
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as info:
            await phota.profiles.wait_ready(profile.id, timeout=0.5)
        elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.5
    assert isinstance(info.value.last, Profile)
    assert info.value.last.status in ("VALIDATING", "QUEUING", "IN_PROGRESS")


async def test_negative_timeout_is_refused(fast: PhotaClient) -> None:
    """A negative timeout is an InvalidRequestError."""
    with pytest.raises(InvalidRequestError, match="timeout"):
        await fast.profiles.wait_ready("prof_x", timeout=-1)


async def test_unknown_profile_ends_the_wait(fast: PhotaClient) -> None:
    """Waiting on a profile that does not exist raises NotFoundError at once."""
    with pytest.raises(NotFoundError):
        await fast.profiles.wait_ready("prof_missing", timeout=10)


async def test_poll_errors_do_not_end_the_wait(fast: PhotaClient, emu: PhotaEmulator) -> None:
    """503s and dropped connections while polling are outlasted."""
    profile = await start(fast, emu)
    emu.add_fault(f"/profiles/{profile.id}/status", status=503, times=6)
    emu.add_fault(f"/profiles/{profile.id}/status", drop="before", times=4)
    assert (await fast.profiles.wait_ready(profile.id, timeout=10)).is_ready


async def test_waiters_on_one_profile_share_one_poll_loop(
    fast: PhotaClient, emu: PhotaEmulator
) -> None:
    """Fifty waiters on one profile poll no more than a single waiter would."""
    profile = await start(fast, emu)
    results = await asyncio.gather(
        *(fast.profiles.wait_ready(profile.id, timeout=10) for _ in range(50))
    )
    assert {p.status for p in results} == {"READY"}
    assert fast._session.poller.polls == status_polls(emu, profile.id)
    assert status_polls(emu, profile.id) < 40


async def test_cancelling_a_wait_stops_polling(threaded_emu: PhotaEmulator) -> None:
    """Once the only waiter is cancelled, no more polls are sent and no task is left."""
    emu = threaded_emu
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=FAST) as phota:
        profile = await start(phota, emu)
        emu.add_fault(f"/profiles/{profile.id}/status", delay=0.05, times=1000)
        before = set(asyncio.all_tasks())
        waiter = asyncio.ensure_future(phota.profiles.wait_ready(profile.id, timeout=10))
        await until(lambda: status_polls(emu, profile.id) >= 2, "polling to be under way")
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        polls = status_polls(emu, profile.id)
        # An observation window of several poll intervals (50-100 ms here) in which a loop
        # left running would have polled again.
        await asyncio.sleep(0.3)
        assert status_polls(emu, profile.id) == polls
        assert set(asyncio.all_tasks()) - before == set()


async def test_cancelling_one_waiter_keeps_the_others(
    fast: PhotaClient, emu: PhotaEmulator
) -> None:
    """Cancelling one of two waiters leaves the other to finish."""
    profile = await start(fast, emu)
    first = asyncio.ensure_future(fast.profiles.wait_ready(profile.id, timeout=10))
    second = asyncio.ensure_future(fast.profiles.wait_ready(profile.id, timeout=10))
    await until(lambda: status_polls(emu, profile.id) >= 1, "both waiters to be polling")
    first.cancel()
    assert (await second).is_ready
    assert first.cancelled()


async def test_create_with_wait(fast: PhotaClient, emu: PhotaEmulator) -> None:
    """create(..., wait=True) returns the READY profile."""
    urls = [emu.store_file(jpeg_bytes(i)) for i in range(5)]
    profile = await fast.profiles.create(urls, tier="fast", wait=True, timeout=10)
    assert profile.is_ready


def test_thousand_waiters_stay_within_the_poll_budget_on_virtual_time() -> None:
    """1,000 profiles awaited at once never send more polls per second than the budget, and
    no two polls leave closer than one budget interval (exact, on virtual time)."""
    budget = 200.0
    policy = PollPolicy(
        profile_setup=FAST.profile_setup, profile_training=FAST.profile_training, job=FAST.job,
        max_polls_per_second=budget,
    )  # fmt: skip
    sent: list[float] = []

    async def scenario() -> list[Profile]:
        loop = asyncio.get_running_loop()
        created: dict[str, float] = {}

        def answer(request: Request) -> Response:
            # The emulator's fast clocks: validating 0.02 s, training done at 0.3 s.
            if request.method == "POST":
                profile_id = f"prof_{len(created)}"
                created[profile_id] = loop.time()
                return Response(200, {}, json.dumps({"profile_id": profile_id}).encode())
            sent.append(loop.time())
            profile_id = request.url.rsplit("/", 2)[-2]
            age = loop.time() - created[profile_id]
            state = "VALIDATING" if age < 0.02 else "IN_PROGRESS" if age < 0.3 else "READY"
            body = {"profile_id": profile_id, "status": state, "message": None}
            return Response(200, {}, json.dumps(body).encode())

        urls = [f"https://photos.test/{i}.jpg" for i in range(5)]
        async with PhotaClient(
            api_key="k", base_url="https://api.test/v1/phota", poll=policy,
            transport=MockTransport(answer),
        ) as phota:  # fmt: skip
            profiles = await asyncio.gather(
                *(phota.profiles.create(urls, tier="fast") for _ in range(1000))
            )
            return await asyncio.gather(
                *(phota.profiles.wait_ready(p.id, timeout=60) for p in profiles)
            )

    ready = run_virtual(scenario())
    assert len(ready) == 1000
    assert all(p.is_ready for p in ready)
    assert len(sent) >= 1000
    worst_second = max(bisect.bisect_left(sent, t + 1.0) - i for i, t in enumerate(sent))
    assert worst_second <= budget + 1
    assert min(b - a for a, b in itertools.pairwise(sent)) >= 1 / budget - 1e-9


@pytest.mark.slow
async def test_thousand_waiters_stay_within_the_poll_budget(threaded_emu: PhotaEmulator) -> None:
    """1,000 profiles awaited at once over real sockets never send more polls per second than
    the budget (the wide-window twin of the virtual-time test above)."""
    budget = 200.0
    policy = PollPolicy(
        profile_setup=FAST.profile_setup, profile_training=FAST.profile_training, job=FAST.job,
        max_polls_per_second=budget,
    )  # fmt: skip
    emu = threaded_emu
    emu.balance = 5000
    urls = [emu.store_file(jpeg_bytes(i, (16, 16))) for i in range(5)]
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=policy) as phota:
        profiles = await asyncio.gather(
            *(phota.profiles.create(urls, tier="fast") for _ in range(1000))
        )
        sent: list[float] = []
        send = phota._session.transport.send

        async def timed(request):  # type: ignore[no-untyped-def]
            sent.append(time.monotonic())
            return await send(request)

        phota._session.transport.send = timed  # type: ignore[method-assign]
        ready = await asyncio.gather(
            *(phota.profiles.wait_ready(p.id, timeout=60) for p in profiles)
        )
    assert all(p.is_ready for p in ready)
    assert len(sent) >= 1000
    worst_second = max(bisect.bisect_left(sent, t + 1.0) - i for i, t in enumerate(sent))
    assert worst_second <= budget + 1


async def test_local_photos_are_uploaded(
    fast: PhotaClient, emu: PhotaEmulator, tmp_path: Path
) -> None:
    """Local Paths go through the uploader, with progress, and train a profile."""
    paths = []
    for i in range(5):
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(jpeg_bytes(i))
        paths.append(path)
    progress: list[tuple[int, int]] = []
    profile = await fast.profiles.create(
        [*paths[:4], jpeg_bytes(9)],
        tier="fast",
        uploader=emulator_uploader(fast),
        on_upload=lambda done, total: progress.append((done, total)),
        wait=True,
        timeout=10,
    )
    assert profile.is_ready
    assert progress[-1] == (5, 5)
    puts = [r for r in emu.requests if r["method"] == "PUT"]
    assert len(puts) == 5


async def test_local_photos_without_uploader_are_refused(
    fast: PhotaClient, emu: PhotaEmulator, tmp_path: Path
) -> None:
    """A local photo without an uploader is refused before anything is sent."""
    path = tmp_path / "p.jpg"
    path.write_bytes(jpeg_bytes())
    with pytest.raises(InvalidRequestError, match=r"images\[0\].*uploader"):
        await fast.profiles.create([path] * 5, tier="fast")
    assert emu.requests == []


async def test_bad_local_photo_stops_all_uploads(
    fast: PhotaClient, emu: PhotaEmulator, tmp_path: Path
) -> None:
    """One unreadable photo refuses the whole set before any upload."""
    good = tmp_path / "g.jpg"
    good.write_bytes(jpeg_bytes())
    with pytest.raises(InvalidRequestError, match=r"images\[4\]"):
        await fast.profiles.create(
            [good] * 4 + [b"nope"], tier="fast", uploader=emulator_uploader(fast)
        )
    assert emu.requests == []


async def test_uploads_respect_their_concurrency(fast: PhotaClient, emu: PhotaEmulator) -> None:
    """No more than upload_concurrency uploads run at once."""
    in_flight = peak = 0

    async def slow_uploader(data: bytes | Path, filename: str, content_type: str) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        assert isinstance(data, bytes)
        return emu.store_file(data, content_type)

    await fast.profiles.create(
        [jpeg_bytes(i) for i in range(10)],
        tier="fast",
        uploader=slow_uploader,
        upload_concurrency=3,
    )
    assert peak == 3
