"""Contract: asynchronous jobs, idempotent submits and signed callbacks."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from phota_async.testing import PhotaEmulator
from tests.conftest import b64, decode, jpeg_bytes, local_server
from tests.emulator.helpers import JOB_QUEUE, JOB_RUN, P, manual, until

ASYNC = {"async": True, "response_mode": "urls"}


async def submit(http: aiohttp.ClientSession, body: dict[str, object]) -> tuple[int, dict]:
    async with http.post(f"{P}/generate", json={"prompt": "a fox", **ASYNC, **body}) as resp:
        return resp.status, await resp.json()


async def get_job(http: aiohttp.ClientSession, job_id: str) -> dict:
    async with http.get(f"{P}/jobs/{job_id}") as resp:
        return dict(await resp.json())


async def wait_job(http: aiohttp.ClientSession, emu: PhotaEmulator, job_id: str) -> dict:
    """Move the clock past the job's queue and run times, then poll until it has finished."""
    manual(emu).advance(JOB_QUEUE + JOB_RUN)
    for _ in range(500):
        job = await get_job(http, job_id)
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job
        await asyncio.sleep(0.01)
    raise AssertionError("job never finished")


class Receiver:
    """A loopback webhook receiver that records every delivery."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.deliveries: list[tuple[bytes, str]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.deliveries.append((await request.read(), request.headers["X-Phota-Signature"]))
        self.arrived.set()
        return web.Response(status=self.status)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    """A running receiver and its URL, cleaned up after the test."""
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    async with local_server(app) as origin:
        yield rec, f"{origin}/hook"


async def test_submit_answers_202_with_a_handle(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """An async submit answers 202 with job_id, an absolute poll_url and status QUEUED."""
    status, handle = await submit(http, {})
    assert status == 202
    assert handle["status"] == "QUEUED"
    assert handle["poll_url"] == f"{emu.base_url}/jobs/{handle['job_id']}"


async def test_job_moves_through_its_statuses(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A job goes QUEUED -> RUNNING -> SUCCEEDED on the clock and then holds a 200 result body."""
    _, handle = await submit(http, {"num_output_images": 2})
    seen = [(await get_job(http, handle["job_id"]))["status"]]
    manual(emu).advance(JOB_QUEUE)
    seen.append((await get_job(http, handle["job_id"]))["status"])
    manual(emu).advance(JOB_RUN - 1)
    seen.append((await get_job(http, handle["job_id"]))["status"])
    job = await wait_job(http, emu, handle["job_id"])
    seen.append(job["status"])
    assert seen == ["QUEUED", "RUNNING", "RUNNING", "SUCCEEDED"]
    assert set(job) == {"job_id", "status", "created_at", "updated_at", "result", "error"}
    assert job["created_at"].endswith("Z")
    assert len(job["result"]["download_urls"]) == 2
    assert job["error"] is None


async def test_job_results_download(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """A finished job's download URLs serve real images."""
    _, handle = await submit(http, {"output_format": "png"})
    job = await wait_job(http, emu, handle["job_id"])
    async with aiohttp.ClientSession() as anon, anon.get(job["result"]["download_urls"][0]) as resp:
        assert decode(await resp.read()).format == "PNG"


async def test_same_client_request_id_returns_the_original_job(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """Submitting twice with one client_request_id gives one job and one charge."""
    _, first = await submit(http, {"client_request_id": "order-17"})
    _, second = await submit(http, {"client_request_id": "order-17"})
    assert first["job_id"] == second["job_id"]
    assert len(emu.charges()) == 1
    assert emu.jobs()[0]["client_request_id"] == "order-17"


async def test_different_client_request_ids_make_two_jobs(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """Distinct idempotency keys are distinct jobs, each charged."""
    _, a = await submit(http, {"client_request_id": "a"})
    _, b = await submit(http, {"client_request_id": "b"})
    assert a["job_id"] != b["job_id"]
    assert len(emu.charges()) == 2


async def test_failed_job_reports_error_and_is_refunded(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A job that fails ends FAILED with code and detail, and its charge is refunded."""
    emu.fail_next_jobs(code="GPU_LOST", detail="worker vanished")
    _, handle = await submit(http, {})
    job = await wait_job(http, emu, handle["job_id"])
    assert job["status"] == "FAILED"
    assert job["error"] == {"code": "GPU_LOST", "detail": "worker vanished"}
    assert emu.net_spent() == 0


async def test_job_with_bad_input_fails(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """An async enhance whose image cannot be decoded ends FAILED with INVALID_IMAGE."""
    async with http.post(f"{P}/enhance", json={"image": b64(b"junk"), **ASYNC}) as resp:
        handle = await resp.json()
    job = await wait_job(http, emu, handle["job_id"])
    assert (job["status"], job["error"]["code"]) == ("FAILED", "INVALID_IMAGE")


async def test_unknown_job_is_404(http: aiohttp.ClientSession) -> None:
    """GET /jobs/{id} for an unknown job answers 404 JOB_NOT_FOUND."""
    async with http.get(f"{P}/jobs/job_nope") as resp:
        body = await resp.json()
    assert (resp.status, body["code"]) == (404, "JOB_NOT_FOUND")


async def test_callback_is_delivered_signed(
    http: aiohttp.ClientSession, emu: PhotaEmulator, receiver: tuple[Receiver, str]
) -> None:
    """A finished job is POSTed to callback_url with a valid t=,v1= HMAC signature."""
    rec, url = receiver
    _, handle = await submit(http, {"callback_url": url})
    manual(emu).advance(JOB_QUEUE + JOB_RUN)
    await asyncio.wait_for(rec.arrived.wait(), 5)
    body, header = rec.deliveries[0]
    parts = dict(item.split("=", 1) for item in header.split(","))
    expected = hmac.new(
        emu.webhook_secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    job = json.loads(body)
    assert (job["job_id"], job["status"]) == (handle["job_id"], "SUCCEEDED")


async def test_failed_job_is_also_called_back(
    http: aiohttp.ClientSession, emu: PhotaEmulator, receiver: tuple[Receiver, str]
) -> None:
    """A job that fails is delivered too, with status FAILED."""
    rec, url = receiver
    emu.fail_next_jobs()
    await submit(http, {"callback_url": url})
    manual(emu).advance(JOB_QUEUE + JOB_RUN)
    await asyncio.wait_for(rec.arrived.wait(), 5)
    assert json.loads(rec.deliveries[0][0])["status"] == "FAILED"


async def test_callback_is_retried_when_the_receiver_fails(
    http: aiohttp.ClientSession, emu: PhotaEmulator, receiver: tuple[Receiver, str]
) -> None:
    """A receiver answering 500 gets three attempts, 0.2 s then 0.4 s apart, all recorded."""
    rec, url = receiver
    rec.status = 500
    clock = manual(emu)
    await submit(http, {"callback_url": url})
    clock.advance(JOB_QUEUE + JOB_RUN)
    for attempt, backoff in ((1, 0.2), (2, 0.4)):
        await until(lambda n=attempt: len(emu.callbacks) == n and clock.sleepers == 1)
        clock.advance(backoff - 0.01)
        assert clock.sleepers == 1  # the back-off has not passed yet: nobody was woken
        clock.advance(0.02)
    await until(lambda: len(emu.callbacks) == 3)
    assert [c["attempt"] for c in emu.callbacks] == [1, 2, 3]
    assert len(rec.deliveries) == 3


async def test_non_https_callback_is_refused(http: aiohttp.ClientSession) -> None:
    """A plain-http callback to a non-loopback host answers 422."""
    status, body = await submit(http, {"callback_url": "http://example.com/hook"})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "callback_url"]


async def test_async_submit_checks_credit(emu: PhotaEmulator) -> None:
    """An async submit beyond the balance answers 402 and creates no job."""
    emu.balance = 0.01
    async with (
        aiohttp.ClientSession(headers={"X-API-Key": emu.api_key}) as session,
        session.post(f"{emu.base_url}/generate", json={"prompt": "x", **ASYNC}) as resp,
    ):
        assert resp.status == 402
    assert emu.jobs() == []


async def test_async_enhance_with_jpeg_input(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """Every studio endpoint accepts async mode; enhance is one."""
    async with http.post(f"{P}/enhance", json={"image": b64(jpeg_bytes()), **ASYNC}) as resp:
        assert resp.status == 202
        handle = await resp.json()
    assert (await wait_job(http, emu, handle["job_id"]))["status"] == "SUCCEEDED"
