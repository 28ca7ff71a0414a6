"""Progress on job waits: ``on_update`` on ``Job.wait`` and ``phota.jobs.wait``, as on profile
waits, against an emulator whose job phases move only when the test moves its clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from phota_async import Job, PhotaClient, PollPolicy
from phota_async._protocol import Response
from phota_async._transport import MockTransport
from phota_async.errors import InvalidRequestError, JobFailedError
from phota_async.testing import ManualClock, PhotaEmulator
from tests.helpers import jpeg_bytes, until

FAST = PollPolicy().scaled(0.01)
QUEUE, RUN = 5.0, 40.0  # clock seconds of a job's QUEUED and RUNNING phases
POLLS_PER_PHASE = 3
TRAINING = 1200.0  # clock seconds of a profile's training


@pytest.fixture
def clock() -> ManualClock:
    """The emulator's clock, still until the test moves it."""
    return ManualClock()


@pytest.fixture
async def emu(clock: ManualClock) -> AsyncIterator[PhotaEmulator]:
    """An emulator whose jobs change status only when ``clock`` is advanced."""
    async with PhotaEmulator(
        clock=clock, job_queue_seconds=QUEUE, job_run_seconds=RUN, max_output_side=64
    ) as emulator:
        yield emulator


@pytest.fixture
async def fast(emu: PhotaEmulator) -> AsyncIterator[PhotaClient]:
    """A client polling a hundred times faster than the defaults."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=FAST) as client:
        yield client


def polls(emu: PhotaEmulator, job_id: str) -> int:
    return sum(1 for r in emu.requests if r["path"] == f"/jobs/{job_id}")


async def drive(emu: PhotaEmulator, clock: ManualClock, job_id: str) -> None:
    """Let the client poll each phase several times, then move the clock past it."""
    for phase in (QUEUE, RUN):
        seen = polls(emu, job_id)
        await until(lambda s=seen: polls(emu, job_id) >= s + POLLS_PER_PHASE, "more polls")
        clock.advance(phase)


async def test_job_wait_reports_each_status_once(
    fast: PhotaClient, emu: PhotaEmulator, clock: ManualClock
) -> None:
    """Job.wait(on_update=...) sees QUEUED, RUNNING, SUCCEEDED once each, though every phase
    was polled several times."""
    job = await fast.jobs.submit_generate("a fox")
    seen: list[str] = []
    driver = asyncio.create_task(drive(emu, clock, job.id))
    result = await job.wait(timeout=30, on_update=lambda j: seen.append(j.status))
    await driver
    assert seen == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert polls(emu, job.id) >= 2 * POLLS_PER_PHASE + 1
    assert len(result) == 1


async def test_jobs_wait_by_id_reports_job_snapshots(
    fast: PhotaClient, emu: PhotaEmulator, clock: ManualClock
) -> None:
    """phota.jobs.wait(job_id, on_update=...) hands the callback Job snapshots of that job."""
    job = await fast.jobs.submit_enhance(jpeg_bytes())
    snapshots: list[Job] = []
    driver = asyncio.create_task(drive(emu, clock, job.id))
    await fast.jobs.wait(job.id, timeout=30, on_update=snapshots.append)
    await driver
    assert [(s.id, s.status) for s in snapshots] == [
        (job.id, "QUEUED"),
        (job.id, "RUNNING"),
        (job.id, "SUCCEEDED"),
    ]


async def test_a_failed_job_is_reported_before_it_raises(
    fast: PhotaClient, emu: PhotaEmulator, clock: ManualClock
) -> None:
    """on_update sees the FAILED snapshot, then the wait raises JobFailedError."""
    emu.fail_next_jobs(code="GPU_LOST", detail="worker vanished")
    job = await fast.jobs.submit_generate("x")
    seen: list[str] = []
    driver = asyncio.create_task(drive(emu, clock, job.id))
    with pytest.raises(JobFailedError):
        await job.wait(timeout=30, on_update=lambda j: seen.append(j.status))
    await driver
    assert seen[-1] == "FAILED"
    assert seen[0] == "QUEUED"


async def test_an_exception_in_on_update_ends_the_wait_and_its_polling(
    fast: PhotaClient,
) -> None:
    """An exception raised by on_update propagates from the wait, and polling stops."""
    job = await fast.jobs.submit_generate("x")

    def refuse(_: Job) -> None:
        raise LookupError("display gone")

    with pytest.raises(LookupError, match="display gone"):
        await job.wait(timeout=30, on_update=refuse)
    assert not fast._session.poller._watches  # the poll loop was stopped and awaited


async def test_an_async_on_update_is_refused_before_polling(
    fast: PhotaClient, emu: PhotaEmulator
) -> None:
    """An ``async def`` on_update is refused with InvalidRequestError before any poll, not
    silently never awaited."""
    job = await fast.jobs.submit_generate("x")

    async def show(_: Job) -> None:
        pass

    with pytest.raises(InvalidRequestError, match="on_update: must be a plain function"):
        await job.wait(timeout=30, on_update=show)
    assert polls(emu, job.id) == 0


async def test_an_on_update_returning_a_coroutine_ends_the_wait(fast: PhotaClient) -> None:
    """A callback that returns an awaitable (a lambda around an async function) ends the wait
    with InvalidRequestError at its first snapshot, and polling stops."""
    job = await fast.jobs.submit_generate("x")

    async def show(_: Job) -> None:
        pass

    with pytest.raises(InvalidRequestError, match="on_update"):
        await job.wait(timeout=30, on_update=lambda j: show(j))  # type: ignore[arg-type,return-value]
    assert not fast._session.poller._watches


async def test_profile_waits_also_report_each_status_once(
    fast: PhotaClient, emu: PhotaEmulator, clock: ManualClock
) -> None:
    """wait_ready(on_update=...) shares the rule: QUEUING, IN_PROGRESS, READY once each,
    though every phase was polled several times."""
    profile_id = emu.add_profile(training_seconds=TRAINING)
    path = f"/profiles/{profile_id}/status"

    def status_polls() -> int:
        return sum(1 for r in emu.requests if r["path"] == path)

    async def train() -> None:
        for _ in range(2):  # out of QUEUING, then out of IN_PROGRESS
            seen = status_polls()
            await until(lambda s=seen: status_polls() >= s + POLLS_PER_PHASE, "more polls")
            clock.advance(TRAINING / 2)

    statuses: list[str] = []
    driver = asyncio.create_task(train())
    await fast.profiles.wait_ready(
        profile_id, timeout=60, on_update=lambda p: statuses.append(p.status)
    )
    await driver
    assert statuses == ["QUEUING", "IN_PROGRESS", "READY"]


async def test_a_job_whose_updated_at_moves_every_poll_is_reported_per_status() -> None:
    """A server that moves updated_at on every poll of a RUNNING job still gets on_update
    once for RUNNING and once for SUCCEEDED."""
    answers = 0

    def answer(request: object) -> Response:
        nonlocal answers
        answers += 1
        done = answers >= 5
        body = {
            "job_id": "j1",
            "status": "SUCCEEDED" if done else "RUNNING",
            "updated_at": f"2026-01-01T00:00:{answers:02d}Z",
            "result": {"known_subjects": {"counts": {}}, "images": [], "download_urls": []}
            if done
            else None,
        }
        return Response(200, {}, json.dumps(body).encode())

    seen: list[str] = []
    async with PhotaClient(
        api_key="k",
        base_url="https://api.test",
        transport=MockTransport(answer),
        poll=PollPolicy().scaled(0.001),
    ) as phota:
        await phota.jobs.wait("j1", timeout=30, on_update=lambda j: seen.append(j.status))
    assert answers == 5
    assert seen == ["RUNNING", "SUCCEEDED"]
