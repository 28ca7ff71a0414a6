"""Webhook endpoints, one behaviour per test, each played against every adapter of the
framework-neutral receiver over real HTTP: aiohttp.web, Starlette and FastAPI (both under
uvicorn on loopback)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Route

from phota_async import Cadence, Job, PhotaClient, PollPolicy
from phota_async.errors import InvalidRequestError, ServiceUnavailableError
from phota_async.starlette import webhook_endpoint
from phota_async.testing import ManualClock, PhotaEmulator
from phota_async.webhooks import sign, webhook_handler
from tests.asgi.servers import uvicorn_server
from tests.conftest import local_server
from tests.helpers import until

SECRET = "whsec_test"
BODY = json.dumps(
    {"job_id": "job_1", "status": "SUCCEEDED", "result": None, "error": None}
).encode()

Serve = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture(params=["aiohttp", "starlette", "fastapi"])
def serve(request: pytest.FixtureRequest) -> Serve:
    """Runs a webhook endpoint built with the given options on a loopback server of one
    framework; the context manager yields the endpoint's URL."""
    framework: str = request.param

    @asynccontextmanager
    async def serving(*args: Any, **options: Any) -> AsyncIterator[str]:
        if framework == "aiohttp":
            app = web.Application()
            app.router.add_post("/hook", webhook_handler(*args, **options))
            async with local_server(app) as origin:
                yield f"{origin}/hook"
            return
        endpoint = webhook_endpoint(*args, **options)
        asgi: Starlette
        if framework == "starlette":
            asgi = Starlette(routes=[Route("/hook", endpoint, methods=["POST"])])
        else:
            asgi = FastAPI()
            asgi.add_api_route("/hook", endpoint, methods=["POST"], include_in_schema=False)
        async with uvicorn_server(asgi) as origin:
            yield f"{origin}/hook"

    return serving


def _job_body(status: str, job_id: str = "job_1", note: str = "") -> bytes:
    return json.dumps({"job_id": job_id, "status": status, "error": None, "note": note}).encode()


async def _deliver(url: str, body: bytes, header: str | None = None) -> int:
    headers = {"X-Phota-Signature": header if header is not None else sign(body, SECRET)}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body, headers=headers) as r,
    ):
        return r.status


@pytest.fixture
async def hook(serve: Serve) -> AsyncIterator[tuple[list[Job], str]]:
    """A running endpoint remembering 4 deliveries, and the jobs it handed over."""
    jobs: list[Job] = []

    async def on_job(job: Job) -> None:
        jobs.append(job)

    async with serve(SECRET, on_job, remember=4) as url:
        yield jobs, url


async def test_endpoint_accepts_a_signed_delivery(hook: tuple[list[Job], str]) -> None:
    """A signed delivery is answered 204 and its job handed over."""
    jobs, url = hook
    assert await _deliver(url, BODY) == 204
    assert [j.id for j in jobs] == ["job_1"]


async def test_endpoint_refuses_a_bad_signature(hook: tuple[list[Job], str]) -> None:
    """A tampered delivery is answered 401 and nothing is handed over."""
    jobs, url = hook
    assert await _deliver(url, BODY + b" ", sign(BODY, SECRET)) == 401
    assert jobs == []


@pytest.mark.parametrize(
    "header",
    [
        "",
        "t=²,v1=" + "0" * 64,
        "t=١٢٣,v1=" + "0" * 64,
        "t=,v1=",
        "=,=",
        ",,,",
        "t=1,t=2",
        "v1=" + "0" * 64,
        "t=99999999999999999999,v1=" + "0" * 64,
        # A fresh timestamp, so that only the signature is wrong; a fixed id, so that every
        # pytest-xdist worker collects the same test.
        pytest.param("t=" + str(int(time.time())) + ",v1=" + "0" * 64, id="t=now,v1=zeros"),
        "\t",
    ],
)
async def test_endpoint_answers_401_to_every_malformed_header(
    hook: tuple[list[Job], str], header: str
) -> None:
    """Every missing, malformed or wrong signature header gets a 401 (never a 500) and
    hands over nothing."""
    jobs, url = hook
    assert await _deliver(url, BODY, header) == 401
    assert jobs == []


async def test_endpoint_refuses_a_non_ascii_signature(hook: tuple[list[Job], str]) -> None:
    """A signature header carrying non-ASCII bytes (latin-1 on the wire) is a 401."""
    jobs, url = hook
    header = f"t={int(time.time())},v1=ü".encode().decode("latin-1")
    assert await _deliver(url, BODY, header) == 401
    assert jobs == []


async def test_endpoint_drops_a_replayed_delivery(hook: tuple[list[Job], str]) -> None:
    """The same delivery sent again is acknowledged but not handed over twice."""
    jobs, url = hook
    header = sign(BODY, SECRET)
    assert [await _deliver(url, BODY, header) for _ in range(3)] == [204, 204, 204]
    assert len(jobs) == 1


async def test_endpoint_drops_a_replay_re_signed_later(hook: tuple[list[Job], str]) -> None:
    """The same body under a newer timestamp is still a replay."""
    jobs, url = hook
    await _deliver(url, BODY, sign(BODY, SECRET, int(time.time()) - 5))
    assert await _deliver(url, BODY, sign(BODY, SECRET)) == 204
    assert len(jobs) == 1


async def test_endpoint_drops_a_status_step_back(hook: tuple[list[Job], str]) -> None:
    """A RUNNING delivery after SUCCEEDED is dropped: a job's status never goes backwards."""
    jobs, url = hook
    for status in ("QUEUED", "SUCCEEDED", "RUNNING", "QUEUED"):
        assert await _deliver(url, _job_body(status)) == 204
    assert [j.status for j in jobs] == ["QUEUED", "SUCCEEDED"]


async def test_endpoint_drops_a_second_finish(hook: tuple[list[Job], str]) -> None:
    """A finished job's later, different finished delivery is dropped."""
    jobs, url = hook
    await _deliver(url, _job_body("SUCCEEDED"))
    await _deliver(url, _job_body("FAILED", note="late"))
    assert [j.status for j in jobs] == ["SUCCEEDED"]


async def test_endpoint_keeps_jobs_apart_and_passes_unknown_statuses(
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


async def test_endpoint_memory_is_bounded(hook: tuple[list[Job], str]) -> None:
    """Past ``remember`` newer deliveries and jobs, the oldest is forgotten (memory stays bounded)."""
    jobs, url = hook
    first = _job_body("RUNNING", "job_0")
    await _deliver(url, first)
    for i in range(1, 5):
        await _deliver(url, _job_body("RUNNING", f"job_{i}"))
    await _deliver(url, first)
    assert [j.id for j in jobs] == ["job_0", "job_1", "job_2", "job_3", "job_4", "job_0"]


async def test_delivery_whose_handler_failed_is_handled_on_retry(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """When on_job raises, the answer is 500 and the delivery is not remembered, so the
    sender's retry is handled."""
    calls: list[str] = []

    async def on_job(job: Job) -> None:
        calls.append(job.status)
        if len(calls) == 1:
            raise RuntimeError("database down")

    async with serve(SECRET, on_job) as url:
        header = sign(BODY, SECRET)
        assert await _deliver(url, BODY, header) == 500
        assert await _deliver(url, BODY, header) == 204
    assert calls == ["SUCCEEDED", "SUCCEEDED"]


async def test_endpoint_answers_400_to_a_signed_body_nested_too_deeply(
    hook: tuple[list[Job], str],
) -> None:
    """A signed delivery nested deeper than the recursion limit is a 400, not a 500."""
    jobs, url = hook
    body = b"[" * 50_000 + b"]" * 50_000
    assert await _deliver(url, body) == 400
    assert jobs == []


async def test_endpoint_refuses_a_body_over_its_cap(serve: Serve) -> None:
    """A body over ``max_body`` is a 413, declared or streamed, and nothing is handed over."""
    jobs: list[Job] = []

    async def on_job(job: Job) -> None:
        jobs.append(job)

    big = _job_body("RUNNING", note="x" * 5000)

    async def chunked() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    async with serve(SECRET, on_job, max_body=4096) as url, aiohttp.ClientSession() as session:
        assert await _deliver(url, big) == 413
        headers = {"X-Phota-Signature": sign(big, SECRET)}
        async with session.post(url, data=chunked(), headers=headers) as resp:
            assert resp.status == 413  # no Content-Length: counted as it streams
        assert await _deliver(url, BODY) == 204
    assert [j.id for j in jobs] == ["job_1"]


async def test_sender_leaving_mid_body_is_not_a_server_error(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A sender that disconnects before its body ends logs no server error (anybody can
    do it, unsigned), and the endpoint keeps serving."""
    async with serve(SECRET) as url:
        host, port = url.split("/")[2].split(":")
        _reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
        )
        await writer.drain()
        await asyncio.sleep(0.1)  # let the handler start reading the body
        writer.close()
        await writer.wait_closed()
        assert await _deliver(url, BODY) == 204
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_endpoint_answers_408_to_a_body_that_never_ends(serve: Serve) -> None:
    """A body still arriving after ``read_timeout`` is answered 408 and handed over to no one
    (a slow sender cannot hold a handler for ever)."""
    jobs: list[Job] = []

    async def on_job(job: Job) -> None:
        jobs.append(job)

    async with serve(SECRET, on_job, read_timeout=0.2) as url:
        host, port = url.split("/")[2].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /hook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"1\r\n{\r\n")
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    assert status_line.split()[1] == b"408"
    assert jobs == []


async def test_endpoint_answers_503_when_the_secret_is_unavailable(serve: Serve) -> None:
    """When the secret source fails with an SDK error, the answer is 503 (the sender retries
    later), not a 500 or a 401."""

    async def secret() -> str:
        raise ServiceUnavailableError(503, "UNAVAILABLE", "down")

    async with serve(secret) as url:
        assert await _deliver(url, BODY) == 503


async def test_endpoint_answers_503_when_the_secret_source_hangs(serve: Serve) -> None:
    """A secret source that never answers is given up after read_timeout: the delivery is
    answered 503 (the sender retries later) instead of waiting for ever."""
    never = asyncio.Event()

    async def secret() -> str:
        await never.wait()
        return SECRET  # pragma: no cover

    async with serve(secret, read_timeout=0.2) as url, aiohttp.ClientSession() as session:
        headers = {"X-Phota-Signature": sign(BODY, SECRET)}
        # A bound on the client side: without the receiver's own, the test fails, not hangs.
        try:
            async with session.post(
                url, data=BODY, headers=headers, timeout=aiohttp.ClientTimeout(total=15)
            ) as answer:
                assert answer.status == 503
                assert "did not answer" in (await answer.json())["detail"]
        finally:
            never.set()  # lets the server stop even if the source was never given up


async def test_endpoint_answers_503_and_logs_once_when_the_secret_source_raises(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret source raising OSError gives 503, not 500, and one log line per outage that
    names the error's type but not its text (which could hold the secret)."""
    healthy = False

    async def secret() -> str:
        if healthy:
            return SECRET
        raise OSError("cannot read /run/secrets/whsec_leaked_value")

    caplog.set_level(logging.INFO, logger="phota_async.webhooks")
    async with serve(secret) as url:
        assert [await _deliver(url, BODY) for _ in range(3)] == [503, 503, 503]
        healthy = True
        assert await _deliver(url, BODY) == 204
    lines = [r.getMessage() for r in caplog.records if r.name == "phota_async.webhooks"]
    assert [line for line in lines if "OSError" in line] == [
        "the webhook secret source failed (OSError); answering 503"
    ]
    assert not [line for line in caplog.text.splitlines() if "whsec_leaked" in line]


@pytest.mark.parametrize("tolerance", [math.nan, -1.0])
async def test_a_tolerance_that_is_not_a_number_of_seconds_is_refused(
    serve: Serve, tolerance: float
) -> None:
    """tolerance=nan (which would accept a delivery of any age) or negative is refused when
    the endpoint is built, not at the first delivery."""
    with pytest.raises(InvalidRequestError, match="tolerance"):
        async with serve(SECRET, tolerance=tolerance):
            pass  # pragma: no cover


async def test_callback_completes_a_slow_poll_wait(serve: Serve) -> None:
    """A verified callback makes Job.wait confirm with one GET instead of its slow next poll."""
    slow_jobs = PollPolicy(job=Cadence(first=30.0, cap=30.0))
    clock = ManualClock()  # the job finishes only once its first poll has been answered
    async with (
        PhotaEmulator(clock=clock, max_output_side=128) as emu,
        PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=slow_jobs) as phota,
        serve(phota.webhook_secret, client=phota) as url,
    ):
        job = await phota.jobs.submit_generate("x", callback_url=url)
        waiting = asyncio.ensure_future(job.wait(timeout=10))
        await until(
            lambda: any(r["status"] for r in emu.requests if r["path"] == f"/jobs/{job.id}"),
            "the first poll",
        )
        await until(lambda: clock.sleepers > 0, "the job to wait for its clock")
        clock.advance(3600)
        result = await waiting
    assert len(result) == 1
    assert len([r for r in emu.requests if r["path"] == f"/jobs/{job.id}"]) == 2
    assert emu.callbacks[0]["status"] == 204
