"""Webhooks: signature checks, parsing, the aiohttp handler, and waits completed by callbacks."""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from phota_async import Cadence, Job, PhotaClient, PollPolicy
from phota_async.errors import InvalidRequestError, PhotaError, ResponseValidationError
from phota_async.testing import PhotaEmulator
from phota_async.webhooks import (
    WebhookVerificationError,
    parse_event,
    sign,
    verify_signature,
    webhook_handler,
)
from tests.conftest import local_server

SECRET = "whsec_test"
BODY = json.dumps(
    {"job_id": "job_1", "status": "SUCCEEDED", "result": None, "error": None}
).encode()
NOW = 1_800_000_000


def test_valid_signature_is_accepted() -> None:
    """A correctly signed body verifies and returns its timestamp."""
    assert verify_signature(BODY, sign(BODY, SECRET, NOW), SECRET, now=NOW) == NOW


def test_verification_error_is_a_phota_error_and_value_error() -> None:
    """WebhookVerificationError fits both hierarchies."""
    assert issubclass(WebhookVerificationError, PhotaError)
    assert issubclass(WebhookVerificationError, ValueError)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        (f"v1={'0' * 64}", "no timestamp"),
        (f"t={NOW}", "no v1"),
        (f"t=abc,v1={'0' * 64}", "not a number"),
        (f"t={NOW},t={NOW},v1={'0' * 64}", "two timestamps"),
        (f"t={NOW},v1={'0' * 64}", "does not match"),
        (f"t={NOW},v1=é", "does not match"),
    ],
)
def test_malformed_or_wrong_headers_are_refused(header: str | None, message: str) -> None:
    """Missing, malformed, duplicated and wrong signature headers are refused, saying why."""
    with pytest.raises(WebhookVerificationError, match=message):
        verify_signature(BODY, header, SECRET, now=NOW)


def test_tampered_body_is_refused() -> None:
    """A body changed after signing is refused."""
    header = sign(BODY, SECRET, NOW)
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_signature(BODY.replace(b"SUCCEEDED", b"FAILED"), header, SECRET, now=NOW)


def test_wrong_secret_is_refused() -> None:
    """A body signed with another secret is refused."""
    with pytest.raises(WebhookVerificationError):
        verify_signature(BODY, sign(BODY, "whsec_other", NOW), SECRET, now=NOW)


def test_old_timestamp_is_refused() -> None:
    """A delivery older than the tolerance (a replay) is refused."""
    header = sign(BODY, SECRET, NOW - 301)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_signature(BODY, header, SECRET, now=NOW)


def test_future_timestamp_is_refused() -> None:
    """A timestamp too far in the future is refused."""
    header = sign(BODY, SECRET, NOW + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify_signature(BODY, header, SECRET, now=NOW)


def test_tolerance_is_configurable() -> None:
    """A wider tolerance accepts an older delivery."""
    header = sign(BODY, SECRET, NOW - 500)
    assert verify_signature(BODY, header, SECRET, tolerance=600, now=NOW) == NOW - 500


def test_rotation_accepts_any_listed_secret() -> None:
    """During a rotation a body signed with either secret verifies."""
    for secret in ("whsec_old", "whsec_new"):
        header = sign(BODY, secret, NOW)
        assert verify_signature(BODY, header, ["whsec_old", "whsec_new"], now=NOW) == NOW


def test_parse_event_gives_a_job() -> None:
    """A verified body parses into a Job."""
    job = parse_event(BODY)
    assert isinstance(job, Job)
    assert (job.id, job.status) == ("job_1", "SUCCEEDED")


def test_parse_event_refuses_non_json() -> None:
    """A body that is not a job is a ResponseValidationError."""
    with pytest.raises(ResponseValidationError):
        parse_event(b"[1, 2")


def hook_app(handler: object) -> web.Application:
    app = web.Application()
    app.router.add_post("/hook", handler)  # type: ignore[arg-type]
    return app


@pytest.fixture
async def received() -> AsyncIterator[tuple[list[Job], str]]:
    """A running handler with a fixed secret, and the jobs it accepted."""
    jobs: list[Job] = []

    async def on_job(job: Job) -> None:
        jobs.append(job)

    async with local_server(hook_app(webhook_handler(SECRET, on_job))) as origin:
        yield jobs, f"{origin}/hook"


async def test_handler_accepts_a_signed_delivery(received: tuple[list[Job], str]) -> None:
    """The handler answers 204 and hands over the job."""
    jobs, url = received
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=BODY, headers={"X-Phota-Signature": sign(BODY, SECRET)}) as resp,
    ):
        assert resp.status == 204
    assert [j.id for j in jobs] == ["job_1"]


async def test_handler_refuses_a_bad_signature(received: tuple[list[Job], str]) -> None:
    """The handler answers 401 to a tampered delivery and hands over nothing."""
    jobs, url = received
    header = sign(BODY, SECRET)
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=BODY + b" ", headers={"X-Phota-Signature": header}) as resp,
    ):
        assert resp.status == 401
    assert jobs == []


async def test_callback_completes_a_slow_poll_wait(emu: PhotaEmulator) -> None:
    """A verified callback makes Job.wait confirm with one GET instead of its slow next poll."""
    slow_jobs = PollPolicy(job=Cadence(first=30.0, cap=30.0))
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=slow_jobs) as phota:
        app = hook_app(webhook_handler(phota.webhook_secret, client=phota))
        async with local_server(app) as origin:
            job = await phota.jobs.submit_generate("x", callback_url=f"{origin}/hook")
            started = time.monotonic()
            result = await job.wait(timeout=10)
            elapsed = time.monotonic() - started
    assert len(result) == 1
    assert elapsed < 5
    assert len([r for r in emu.requests if r["path"] == f"/jobs/{job.id}"]) == 2
    assert emu.callbacks[0]["status"] == 204


@pytest.mark.parametrize(
    "stamp", ["²", "1800000000²", "١٨٠٠٠٠٠٠٠٠", "１８００", "+1800000000", " 1"]
)
def test_timestamp_accepts_ascii_digits_only(stamp: str) -> None:
    """Superscript, Arabic-Indic and full-width digits or signs in ``t=`` are refused."""
    with pytest.raises(WebhookVerificationError, match="not a number"):
        verify_signature(BODY, f"t={stamp},v1={'0' * 64}", SECRET, now=NOW)


def _job_body(status: str, job_id: str = "job_1", note: str = "") -> bytes:
    return json.dumps({"job_id": job_id, "status": status, "error": None, "note": note}).encode()


@pytest.fixture
async def hook() -> AsyncIterator[tuple[list[Job], str]]:
    """A running handler remembering 4 deliveries, and the jobs it handed over."""
    jobs: list[Job] = []

    async def on_job(job: Job) -> None:
        jobs.append(job)

    app = hook_app(webhook_handler(SECRET, on_job, remember=4))
    async with local_server(app) as origin:
        yield jobs, f"{origin}/hook"


async def _deliver(url: str, body: bytes, header: str | None = None) -> int:
    headers = {"X-Phota-Signature": header if header is not None else sign(body, SECRET)}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status


@pytest.mark.parametrize(
    "header",
    [
        "t=²,v1=" + "0" * 64,
        "t=١٢٣,v1=" + "0" * 64,
        "t=,v1=",
        "=,=",
        ",,,",
        "t=1,t=2",
        "v1=" + "0" * 64,
        "t=99999999999999999999,v1=" + "0" * 64,
        # A fresh timestamp, so that only the signature is malformed; a fixed id, so that
        # every pytest-xdist worker collects the same test.
        pytest.param("t=" + str(int(time.time())) + ",v1=ü", id="t=now,v1=ü"),
        "\t",
    ],
)
async def test_handler_answers_401_to_every_malformed_header(
    hook: tuple[list[Job], str], header: str
) -> None:
    """Every malformed signature header gets a 401 (never a 500) and hands over nothing."""
    jobs, url = hook
    assert await _deliver(url, BODY, header) == 401
    assert jobs == []


async def test_handler_drops_a_replayed_delivery(hook: tuple[list[Job], str]) -> None:
    """The same delivery sent again is acknowledged but not handed over twice."""
    jobs, url = hook
    header = sign(BODY, SECRET)
    assert [await _deliver(url, BODY, header) for _ in range(3)] == [204, 204, 204]
    assert len(jobs) == 1


async def test_handler_drops_a_replay_re_signed_later(hook: tuple[list[Job], str]) -> None:
    """The same body under a newer timestamp is still a replay."""
    jobs, url = hook
    await _deliver(url, BODY, sign(BODY, SECRET, int(time.time()) - 5))
    assert await _deliver(url, BODY, sign(BODY, SECRET)) == 204
    assert len(jobs) == 1


async def test_handler_drops_a_status_step_back(hook: tuple[list[Job], str]) -> None:
    """A RUNNING delivery after SUCCEEDED is dropped: a job's status never goes backwards."""
    jobs, url = hook
    for status in ("QUEUED", "SUCCEEDED", "RUNNING", "QUEUED"):
        assert await _deliver(url, _job_body(status)) == 204
    assert [j.status for j in jobs] == ["QUEUED", "SUCCEEDED"]


async def test_handler_drops_a_second_finish(hook: tuple[list[Job], str]) -> None:
    """A finished job's later, different finished delivery is dropped."""
    jobs, url = hook
    await _deliver(url, _job_body("SUCCEEDED"))
    await _deliver(url, _job_body("FAILED", note="late"))
    assert [j.status for j in jobs] == ["SUCCEEDED"]


async def test_handler_keeps_jobs_apart_and_passes_unknown_statuses(
    hook: tuple[list[Job], str],
) -> None:
    """Ordering is per job, and a status the SDK does not know is never dropped as stale."""
    jobs, url = hook
    await _deliver(url, _job_body("SUCCEEDED", "job_a"))
    await _deliver(url, _job_body("RUNNING", "job_b"))
    await _deliver(url, _job_body("PAUSED", "job_a"))
    assert [(j.id, j.status) for j in jobs] == [
        ("job_a", "SUCCEEDED"), ("job_b", "RUNNING"), ("job_a", "PAUSED"),
    ]  # fmt: skip


async def test_handler_memory_is_bounded(hook: tuple[list[Job], str]) -> None:
    """Past ``remember`` newer deliveries and jobs, the oldest is forgotten (memory stays bounded)."""
    jobs, url = hook
    first = _job_body("RUNNING", "job_0")
    await _deliver(url, first)
    for i in range(1, 5):
        await _deliver(url, _job_body("RUNNING", f"job_{i}"))
    await _deliver(url, first)
    assert [j.id for j in jobs] == ["job_0", "job_1", "job_2", "job_3", "job_4", "job_0"]


async def test_delivery_whose_handler_failed_is_handled_on_retry() -> None:
    """When on_job raises, the delivery is not remembered, so the sender's retry is handled."""
    calls: list[str] = []

    async def on_job(job: Job) -> None:
        calls.append(job.status)
        if len(calls) == 1:
            raise RuntimeError("database down")

    async with local_server(hook_app(webhook_handler(SECRET, on_job))) as origin:
        header = sign(BODY, SECRET)
        assert await _deliver(f"{origin}/hook", BODY, header) == 500
        assert await _deliver(f"{origin}/hook", BODY, header) == 204
    assert calls == ["SUCCEEDED", "SUCCEEDED"]


async def test_handler_answers_400_to_a_signed_body_nested_too_deeply(
    received: tuple[list[Job], str],
) -> None:
    """A signed delivery nested deeper than the recursion limit is a 400, not a 500."""
    jobs, url = received
    body = b"[" * 50_000 + b"]" * 50_000
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers={"X-Phota-Signature": sign(body, SECRET)}) as resp,
    ):
        assert resp.status == 400
    assert jobs == []


@pytest.mark.parametrize("tolerance", [math.nan, -1.0])
def test_a_tolerance_that_is_not_a_number_of_seconds_is_refused(tolerance: float) -> None:
    """tolerance=nan (which would accept a delivery of any age) or negative is refused."""
    old = sign(BODY, SECRET, NOW - 10**9)
    with pytest.raises(InvalidRequestError, match="tolerance"):
        verify_signature(BODY, old, SECRET, tolerance, now=NOW)
    with pytest.raises(InvalidRequestError, match="tolerance"):
        webhook_handler(SECRET, tolerance=tolerance)
