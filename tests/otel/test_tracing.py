"""Spans: one per SDK call, one per HTTP attempt (HTTP client conventions), one per wait."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from phota_async import PhotaClient
from phota_async.errors import APIError, ResponseValidationError, WaitTimeoutError
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes, until
from tests.otel.conftest import FAST, Recorded


async def test_a_studio_call_is_an_internal_span_with_one_client_span_per_attempt(
    emu: PhotaEmulator, phota: PhotaClient, recorded: Recorded
) -> None:
    """``phota.enhance`` is an INTERNAL span whose child is a CLIENT ``POST /enhance`` span
    carrying the HTTP client attributes."""
    result = await phota.enhance(jpeg_bytes())

    call = recorded.one("phota.enhance")
    assert call.kind is SpanKind.INTERNAL
    (attempt,) = recorded.children(call)
    assert attempt.name == "POST /enhance"
    assert attempt.kind is SpanKind.CLIENT
    origin = urlsplit(emu.base_url)
    assert attempt.attributes is not None
    assert dict(attempt.attributes) == {
        "http.request.method": "POST",
        "server.address": origin.hostname,
        "server.port": origin.port,
        "url.full": f"{emu.base_url}/enhance",
        "url.template": "/enhance",
        "http.response.status_code": 200,
        "phota.request_id": result.request_id,
    }
    assert call.attributes is not None
    assert call.attributes["phota.operation"] == "enhance"
    assert call.attributes["phota.request_id"] == result.request_id
    assert call.attributes["phota.attempts"] == 1
    assert call.attributes["phota.throttled"] == 0
    assert call.attributes["phota.cost.estimated_usd"] == pytest.approx(0.12)
    assert call.status.status_code is StatusCode.UNSET


async def test_a_retried_429_shows_two_attempt_spans_with_resend_count(
    emu: PhotaEmulator, phota: PhotaClient, recorded: Recorded, no_backoff: None
) -> None:
    """A 429 then a 200: two sibling attempt spans, the second with
    ``http.request.resend_count`` 1, and the call counts both and the throttled answer."""
    emu.add_fault("/enhance", status=429, retry_after=0)
    await phota.enhance(jpeg_bytes())

    call = recorded.one("phota.enhance")
    first, second = sorted(recorded.children(call), key=lambda span: span.start_time or 0)
    assert first.attributes is not None
    assert second.attributes is not None
    assert first.attributes["http.response.status_code"] == 429
    assert first.attributes["error.type"] == "429"
    assert first.status.status_code is StatusCode.ERROR
    assert "http.request.resend_count" not in first.attributes
    assert second.attributes["http.response.status_code"] == 200
    assert second.attributes["http.request.resend_count"] == 1
    assert "error.type" not in second.attributes
    assert call.attributes is not None
    assert call.attributes["phota.attempts"] == 2
    assert call.attributes["phota.throttled"] == 1
    assert "error.type" not in call.attributes


async def test_a_failed_call_carries_error_type_on_both_spans(
    phota: PhotaClient, recorded: Recorded
) -> None:
    """An unknown profile: the attempt's and the call's ``error.type`` are the status code,
    both spans are errors, and the call span names the profile."""
    with pytest.raises(APIError):
        await phota.profiles.get("nobody")

    call = recorded.one("phota.profiles.get")
    (attempt,) = recorded.children(call)
    assert attempt.name == "GET /profiles/{profile_id}/status"
    assert attempt.attributes is not None
    assert call.attributes is not None
    assert attempt.attributes["url.template"] == "/profiles/{profile_id}/status"
    assert attempt.attributes["error.type"] == "404"
    assert call.attributes["error.type"] == "404"
    assert call.attributes["phota.profile.id"] == "nobody"
    assert call.status.status_code is StatusCode.ERROR


@pytest.fixture
async def slow_jobs() -> AsyncIterator[PhotaEmulator]:
    """An emulator whose jobs stay queued, then running, for half a second each: every poll
    loop sees each status."""
    async with PhotaEmulator(
        job_queue_seconds=0.5, job_run_seconds=0.5, max_output_side=128
    ) as emulator:
        yield emulator


async def test_a_job_wait_is_a_span_with_an_event_per_status_change(
    slow_jobs: PhotaEmulator, recorded: Recorded
) -> None:
    """A call run ``via_job``: its span holds the submit attempt and a ``phota.jobs.wait``
    span, whose events are QUEUED, RUNNING, SUCCEEDED and whose children are the polls."""
    async with PhotaClient(
        api_key=slow_jobs.api_key,
        base_url=slow_jobs.base_url,
        poll=FAST,
        telemetry=recorded.telemetry(record_prompts=False),
    ) as phota:
        await phota.enhance(jpeg_bytes(), via_job=True)

    call = recorded.one("phota.enhance")
    wait = recorded.one("phota.jobs.wait")
    children = recorded.children(call)
    assert sorted(span.name for span in children) == ["POST /enhance", "phota.jobs.wait"]
    assert wait.attributes is not None
    assert call.attributes is not None
    job_id = wait.attributes["phota.job.id"]
    assert call.attributes["phota.job.id"] == job_id
    assert [event.name for event in wait.events] == ["phota.status_change"] * 3
    assert [dict(event.attributes or {}) for event in wait.events] == [
        {"phota.status": "QUEUED"},
        {"phota.status": "RUNNING", "phota.status.previous": "QUEUED"},
        {"phota.status": "SUCCEEDED", "phota.status.previous": "RUNNING"},
    ]
    assert wait.attributes["phota.status"] == "SUCCEEDED"
    polls = recorded.children(wait)
    assert polls
    assert {span.name for span in polls} == {"GET /jobs/{job_id}"}
    assert wait.attributes["phota.attempts"] == len(polls)


async def test_a_profile_wait_ends_with_its_final_status(
    emu: PhotaEmulator, phota: PhotaClient, recorded: Recorded
) -> None:
    """``profiles.wait_ready`` is a ``phota.profiles.wait_ready`` span naming the profile,
    whose last status event is READY."""
    profile_id = emu.add_profile(training_seconds=0.3)
    await phota.profiles.wait_ready(profile_id, timeout=30)

    wait = recorded.one("phota.profiles.wait_ready")
    assert wait.attributes is not None
    assert wait.attributes["phota.profile.id"] == profile_id
    statuses = [(event.attributes or {})["phota.status"] for event in wait.events]
    assert statuses[-1] == "READY"
    assert all(a != b for a, b in itertools.pairwise(statuses))
    assert wait.status.status_code is StatusCode.UNSET


async def test_a_wait_that_times_out_is_an_error_span(
    emu: PhotaEmulator, phota: PhotaClient, recorded: Recorded
) -> None:
    """A wait cut by its deadline ends its span with ``error.type`` ``phota_async.WaitTimeoutError``."""
    profile_id = emu.add_profile(training_seconds=60)
    with pytest.raises(WaitTimeoutError):
        await phota.profiles.wait_ready(profile_id, timeout=0.2)

    wait = recorded.one("phota.profiles.wait_ready")
    assert wait.attributes is not None
    assert wait.attributes["error.type"] == "phota_async.WaitTimeoutError"
    assert wait.status.status_code is StatusCode.ERROR


async def test_a_signed_download_url_keeps_no_query_value(
    phota: PhotaClient, recorded: Recorded, tmp_path: Path
) -> None:
    """Downloading a URL-mode output: ``url.full`` has every query value ``REDACTED``, so the
    signature never reaches a span."""
    result = await phota.enhance(jpeg_bytes(), response_mode="urls")
    await result.save(tmp_path)

    download = recorded.one("phota.download")
    (attempt,) = recorded.children(download)
    assert attempt.name == "GET"
    assert attempt.attributes is not None
    url = str(attempt.attributes["url.full"])
    query = parse_qsl(urlsplit(url).query)
    assert query
    assert {value for _, value in query} == {"REDACTED"}


async def test_profile_creation_names_the_new_profile(
    emu: PhotaEmulator, phota: PhotaClient, recorded: Recorded
) -> None:
    """``phota.profiles.create`` carries the created profile's id and the training price."""
    urls = [emu.store_file(jpeg_bytes(seed), "image/jpeg") for seed in range(5)]
    profile = await phota.profiles.create(urls, tier="fast")

    create = recorded.one("phota.profiles.create")
    assert create.attributes is not None
    assert create.attributes["phota.profile.id"] == profile.id
    assert create.attributes["phota.cost.estimated_usd"] == pytest.approx(1.49)


async def test_a_cancelled_call_ends_its_spans_and_restores_the_context(
    emu: PhotaEmulator, phota: PhotaClient, recorded: Recorded
) -> None:
    """Cancelling a call mid-answer ends its call and attempt spans as errors, and the
    caller's current span is what it was before."""

    emu.add_fault("/enhance", delay=30)
    tracer = recorded.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        task = asyncio.create_task(phota.enhance(jpeg_bytes()))
        await until(lambda: bool(emu.requests), "the request reaches the emulator")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert trace.get_current_span() is caller

    call = recorded.one("phota.enhance")
    (attempt,) = recorded.children(call)
    assert call.parent is not None
    assert call.parent.span_id == caller.get_span_context().span_id
    for span in (call, attempt):
        assert span.attributes is not None
        assert span.attributes["error.type"] == "asyncio.exceptions.CancelledError"
        assert span.status.status_code is StatusCode.ERROR


async def test_a_job_submit_is_its_own_call_and_its_wait_another(
    phota: PhotaClient, recorded: Recorded
) -> None:
    """``jobs.submit_enhance`` is a ``phota.jobs.submit_enhance`` span naming the job and its
    estimated price; ``job.wait`` later is a root ``phota.jobs.wait`` span for that job."""
    job = await phota.jobs.submit_enhance(jpeg_bytes())
    await job.wait(timeout=30)

    submit = recorded.one("phota.jobs.submit_enhance")
    wait = recorded.one("phota.jobs.wait")
    assert submit.attributes is not None
    assert wait.attributes is not None
    assert submit.attributes["phota.job.id"] == job.id
    assert submit.attributes["phota.cost.estimated_usd"] == pytest.approx(0.12)
    assert [span.name for span in recorded.children(submit)] == ["POST /enhance"]
    assert wait.parent is None
    assert wait.attributes["phota.job.id"] == job.id


async def test_a_poll_loop_outliving_its_first_waiter_sets_nothing_on_its_ended_span(
    emu: PhotaEmulator, phota: PhotaClient, recorded: Recorded, caplog: pytest.LogCaptureFixture
) -> None:
    """When the first of two waiters on a profile times out, the shared poll loop's later
    polls get spans of their own instead of attributes set on the first waiter's ended span."""
    profile_id = emu.add_profile(training_seconds=1.0)
    first = asyncio.create_task(phota.profiles.wait_ready(profile_id, timeout=0.05))
    second = asyncio.create_task(phota.profiles.wait_ready(profile_id, timeout=30))
    with pytest.raises(WaitTimeoutError):
        await first
    await second

    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]
    ended = next(
        w
        for w in recorded.named("phota.profiles.wait_ready")
        if w.attributes and "error.type" in w.attributes
    )
    assert ended.end_time is not None
    late = [s for s in recorded.children(ended) if s.start_time and s.start_time > ended.end_time]
    assert late
    assert {span.name for span in late} == {"phota.profiles.get"}


async def test_a_download_url_with_a_port_out_of_range_keeps_no_concurrency_slot(
    emu: PhotaEmulator, recorded: Recorded, tmp_path: Path
) -> None:
    """A server's download link whose port cannot be parsed is refused before sending, and the
    next call of a ``max_concurrency=1`` client goes out."""
    body = {
        "known_subjects": {"counts": {}},
        "images": [],
        "download_urls": ["http://127.0.0.1:99999/x.jpg"],
    }
    emu.add_fault("/enhance", status=200, body=body)
    async with PhotaClient(
        api_key=emu.api_key,
        base_url=emu.base_url,
        max_concurrency=1,
        telemetry=recorded.telemetry(),
    ) as phota:
        result = await phota.enhance(jpeg_bytes(), response_mode="urls")
        with pytest.raises(ResponseValidationError):
            await result.save(tmp_path)
        # A hang guard only: the call is answered at once when the slot was given back.
        await asyncio.wait_for(phota.enhance(jpeg_bytes()), 30)

    assert [s for s in recorded.spans() if s.name == "GET"] == []  # refused before sending
