"""Jobs against the emulator: idempotent submits, waiting, failure, restart and resume."""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import AsyncIterator

import pytest

from phota_async import Job, PhotaClient, PollPolicy
from phota_async.errors import JobFailedError, NotFoundError, WaitTimeoutError
from phota_async.testing import PhotaEmulator
from tests.helpers import decode, jpeg_bytes, png_bytes, until

FAST = PollPolicy().scaled(0.01)


@pytest.fixture
async def fast(emu: PhotaEmulator) -> AsyncIterator[PhotaClient]:
    """A client polling a hundred times faster than the defaults."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=FAST) as client:
        yield client


def submits(emu: PhotaEmulator, path: str) -> list[dict]:
    return [r for r in emu.requests if r["path"] == path and r["method"] == "POST"]


async def test_submit_sends_async_urls_and_a_key(fast: PhotaClient, emu: PhotaEmulator) -> None:
    """A submit sends async, response_mode urls and a client_request_id, and returns a Job."""
    job = await fast.jobs.submit_generate("a fox", n=2)
    sent = submits(emu, "/generate")[0]["json"]
    assert (sent["async"], sent["response_mode"]) == (True, "urls")
    assert sent["client_request_id"] == job.client_request_id
    assert job.status == "QUEUED"


async def test_wait_returns_the_result(fast: PhotaClient) -> None:
    """Job.wait returns an ImageResult whose URL outputs download as images."""
    job = await fast.jobs.submit_generate("a fox", n=2, output_format="png")
    result = await job.wait(timeout=10)
    assert len(result) == 2
    assert decode(await result.read(1)).format == "PNG"


@pytest.mark.parametrize(
    "fault",
    [{"drop": "after"}, {"status": 503}, {"status": 500}, {"truncate": True}, {"malformed": True}],
)
async def test_retried_submit_makes_one_job_and_one_charge(
    fast: PhotaClient, emu: PhotaEmulator, fault: dict
) -> None:
    """A submit whose answer was lost is resent with the same key: one job, one charge."""
    emu.add_fault("/enhance", **fault)
    job = await fast.jobs.submit_enhance(jpeg_bytes())
    keys = {r["json"]["client_request_id"] for r in submits(emu, "/enhance")}
    assert len(submits(emu, "/enhance")) == 2
    assert keys == {job.client_request_id}
    assert len(emu.jobs()) == 1
    assert len(emu.charges()) == 1


async def test_own_idempotency_key_returns_the_original_job(
    fast: PhotaClient, emu: PhotaEmulator
) -> None:
    """Submitting twice with one client_request_id returns the same job, charged once."""
    first = await fast.jobs.submit_generate("x", client_request_id="order-1")
    second = await fast.jobs.submit_generate("x", client_request_id="order-1")
    assert first.id == second.id
    assert len(emu.charges()) == 1


async def test_failed_job_raises_with_the_job(fast: PhotaClient, emu: PhotaEmulator) -> None:
    """A job ending FAILED raises JobFailedError carrying code, detail and the job."""
    emu.fail_next_jobs(code="GPU_LOST", detail="worker vanished")
    job = await fast.jobs.submit_generate("x")
    with pytest.raises(JobFailedError) as info:
        await job.wait(timeout=10)
    assert (info.value.code, info.value.detail) == ("GPU_LOST", "worker vanished")
    assert info.value.job.status == "FAILED"


async def test_wait_deadline() -> None:
    """A job slower than the wait's deadline raises WaitTimeoutError with the last snapshot."""
    async with (
        PhotaEmulator(job_run_seconds=30) as slow,
        PhotaClient(api_key=slow.api_key, base_url=slow.base_url, poll=FAST) as phota,
    ):
        job = await phota.jobs.submit_generate("x")
        with pytest.raises(WaitTimeoutError) as info:
            await job.wait(timeout=0.3)
    assert isinstance(info.value.last, Job)
    assert info.value.last.status in ("QUEUED", "RUNNING")


async def test_restart_and_resume(emu: PhotaEmulator) -> None:
    """A job saved with to_json resumes in a new client and is charged once."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=FAST) as first:
        job = await first.jobs.submit_remix(
            jpeg_bytes(), reference=png_bytes(), output_format="png"
        )
        saved = json.dumps(job.to_json())
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=FAST) as second:
        resumed = Job.from_json(json.loads(saved), second)
        assert (resumed.id, resumed.client_request_id) == (job.id, job.client_request_id)
        result = await resumed.wait(timeout=10)
        assert decode(await result.read()).format == "PNG"
    assert len(emu.charges()) == 1


async def test_a_submitted_job_pickles_unbound_and_waits_in_another_client(
    emu: PhotaEmulator,
) -> None:
    """A live job pickles (without its client) and is waited on by a new client, charged once."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=FAST) as first:
        job = await first.jobs.submit_enhance(jpeg_bytes(), output_format="png")
        copy = pickle.loads(pickle.dumps(job))
    assert copy == job
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=FAST) as second:
        result = await second.jobs.wait(copy, timeout=10)
        assert decode(await result.read()).format == "PNG"
    assert len(emu.charges()) == 1


async def test_a_result_refuses_to_pickle_saying_what_to_send(fast: PhotaClient) -> None:
    """An ImageResult (temporary files, a live client) refuses pickling with a message that
    says to send its bytes or saved paths instead."""
    result = await fast.enhance(jpeg_bytes())
    with pytest.raises(TypeError, match="read"):
        pickle.dumps(result)


async def test_refresh_returns_a_new_snapshot(fast: PhotaClient, emu: PhotaEmulator) -> None:
    """refresh() returns a new Job and leaves the old one unchanged."""
    job = await fast.jobs.submit_generate("x")
    await until(lambda: emu.jobs()[0]["status"] == "SUCCEEDED", "the job to finish")
    fresh = await job.refresh()
    assert (job.status, fresh.status) == ("QUEUED", "SUCCEEDED")
    assert fresh.client_request_id == job.client_request_id


async def test_get_unknown_job(fast: PhotaClient) -> None:
    """jobs.get of an unknown id raises NotFoundError."""
    with pytest.raises(NotFoundError):
        await fast.jobs.get("job_nope")


async def test_via_job_runs_a_studio_call_as_a_job(fast: PhotaClient, emu: PhotaEmulator) -> None:
    """A studio call with via_job=True submits a job and returns its result."""
    result = await fast.edit("make it warmer", images=[jpeg_bytes()], via_job=True, timeout=10)
    assert len(result) == 1
    assert [j["status"] for j in emu.jobs()] == ["SUCCEEDED"]


async def test_many_waiters_on_one_job_share_polls(fast: PhotaClient, emu: PhotaEmulator) -> None:
    """Twenty waiters on one job make the same polls as one."""
    job = await fast.jobs.submit_generate("x")
    results = await asyncio.gather(*(job.wait(timeout=10) for _ in range(20)))
    assert len(results) == 20
    polls = [r for r in emu.requests if r["path"] == f"/jobs/{job.id}"]
    assert len(polls) == fast._session.poller.polls


def test_unbound_job_cannot_wait() -> None:
    """A Job built by hand explains how to bind it."""
    with pytest.raises(ValueError, match="resume"):
        asyncio.run(Job(id="job_1").wait())
