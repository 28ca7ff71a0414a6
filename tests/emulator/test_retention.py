"""Contract: bounded memory. Outputs, finished jobs and the request log expire by time and by
count, answering like the real service's expired URLs and unknown jobs; the ledger stays whole.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from phota_async.testing import ManualClock, PhotaEmulator
from tests.conftest import b64, jpeg_bytes
from tests.emulator.conftest import options
from tests.emulator.helpers import JOB_QUEUE, JOB_RUN, P

URLS = {"response_mode": "urls"}
ASYNC = {"async": True, "response_mode": "urls"}


@pytest.fixture
async def small(clock: ManualClock) -> AsyncIterator[PhotaEmulator]:
    """An emulator that keeps 2 outputs and 2 finished jobs for 60 s, and 3 log entries."""
    async with PhotaEmulator(
        **options(clock),  # type: ignore[arg-type]
        output_ttl=60,
        max_outputs=2,
        max_jobs=2,
        log_ttl=60,
        max_log=3,
    ) as emulator:
        yield emulator


@pytest.fixture
async def http(small: PhotaEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        base_url=small.origin, headers={"X-API-Key": small.api_key}
    ) as session:
        yield session


async def enhance_url(http: aiohttp.ClientSession) -> str:
    async with http.post(f"{P}/enhance", json={"image": b64(jpeg_bytes()), **URLS}) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["download_urls"][0])


async def download(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as anon, anon.get(url) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        await resp.read()
        return resp.status, {}


async def finished_job(http: aiohttp.ClientSession, clock: ManualClock, key: str) -> str:
    """Submit a generate job, move the clock past its phases, poll until it has succeeded."""
    body = {"prompt": "a fox", "client_request_id": key, **ASYNC}
    async with http.post(f"{P}/generate", json=body) as resp:
        job_id = str((await resp.json())["job_id"])
    clock.advance(JOB_QUEUE + JOB_RUN)
    for _ in range(500):
        async with http.get(f"{P}/jobs/{job_id}") as resp:
            if (await resp.json())["status"] == "SUCCEEDED":
                return job_id
        await asyncio.sleep(0.01)
    raise AssertionError("job never finished")


async def test_output_beyond_max_outputs_answers_404_with_the_error_body(
    http: aiohttp.ClientSession,
) -> None:
    """With max_outputs=2, a third output evicts the first: its URL answers 404 NOT_FOUND."""
    first, second, third = [await enhance_url(http) for _ in range(3)]
    status, body = await download(first)
    assert (status, body["code"]) == (404, "NOT_FOUND")
    assert body["request_id"].startswith("req_")
    assert "max_outputs" in body["detail"]
    assert [(await download(u))[0] for u in (second, third)] == [200, 200]


async def test_output_past_output_ttl_answers_404_while_its_url_is_valid(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """An output older than output_ttl is gone (404) although its URL is valid for 24 hours."""
    url = await enhance_url(http)
    clock.advance(59)
    assert (await download(url))[0] == 200
    clock.advance(2)
    status, body = await download(url)
    assert (status, body["code"]) == (404, "NOT_FOUND")


async def test_output_past_its_url_expiry_answers_403_url_expired(clock: ManualClock) -> None:
    """When the URL expires first, the answer is a signed URL's: 403 URL_EXPIRED."""
    async with (
        PhotaEmulator(**options(clock), url_ttl=30, output_ttl=60) as emu,  # type: ignore[arg-type]
        aiohttp.ClientSession(headers={"X-API-Key": emu.api_key}) as session,
        session.post(f"{emu.base_url}/enhance", json={"image": b64(jpeg_bytes()), **URLS}) as r,
    ):
        url = (await r.json())["download_urls"][0]
        clock.advance(31)
        status, body = await download(url)
    assert (status, body["code"]) == (403, "URL_EXPIRED")


async def test_finished_job_past_output_ttl_answers_404_job_not_found(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """A finished job is kept output_ttl seconds, then answers like an unknown job."""
    job_id = await finished_job(http, clock, "k1")
    clock.advance(61)
    async with http.get(f"{P}/jobs/{job_id}") as resp:
        body = await resp.json()
    assert (resp.status, body["code"]) == (404, "JOB_NOT_FOUND")
    assert body["request_id"] == resp.headers["X-Request-Id"]


async def test_job_records_beyond_max_jobs_evict_the_oldest_finished(
    http: aiohttp.ClientSession, clock: ManualClock, small: PhotaEmulator
) -> None:
    """With max_jobs=2, a third job evicts the oldest finished one and keeps the others."""
    ids = [await finished_job(http, clock, f"k{i}") for i in range(3)]
    assert [j["job_id"] for j in small.jobs()] == ids[1:]


async def test_evicted_jobs_key_still_returns_it_without_a_charge(
    http: aiohttp.ClientSession, clock: ManualClock, small: PhotaEmulator
) -> None:
    """A resubmit with an evicted job's client_request_id answers that job, charging nothing."""
    job_id = await finished_job(http, clock, "same-key")
    clock.advance(61)
    charged = len(small.charges())
    body = {"prompt": "a fox", "client_request_id": "same-key", **ASYNC}
    async with http.post(f"{P}/generate", json=body) as resp:
        handle = await resp.json()
    assert (resp.status, handle["job_id"], handle["status"]) == (202, job_id, "SUCCEEDED")
    assert len(small.charges()) == charged


async def test_ledger_stays_complete_when_outputs_and_jobs_are_evicted(
    http: aiohttp.ClientSession, clock: ManualClock, small: PhotaEmulator
) -> None:
    """Every charge is still in the ledger after its output and job records are gone."""
    for _ in range(4):
        await enhance_url(http)
    for i in range(3):
        await finished_job(http, clock, f"k{i}")
    clock.advance(61)
    await enhance_url(http)
    assert [e["endpoint"] for e in small.ledger] == ["enhance"] * 4 + ["generate"] * 3 + ["enhance"]


async def test_request_log_keeps_the_last_max_log_entries_and_counts_the_rest(
    http: aiohttp.ClientSession, small: PhotaEmulator
) -> None:
    """With max_log=3, five requests leave the last three in the log and two counted dropped."""
    for i in range(5):
        async with http.get(f"{P}/profiles/ids", params={"tag": str(i)}) as resp:
            assert resp.status == 200
    assert [r["query"]["tag"] for r in small.requests] == ["2", "3", "4"]
    assert small.requests_dropped == 2


async def test_request_log_entries_expire_after_log_ttl(
    http: aiohttp.ClientSession, clock: ManualClock, small: PhotaEmulator
) -> None:
    """Entries older than log_ttl leave the log (and are counted dropped)."""
    async with http.get(f"{P}/profiles/ids") as resp:
        assert resp.status == 200
    clock.advance(61)
    assert small.requests == []
    assert small.requests_dropped == 1


async def test_request_log_holds_no_image_data(
    http: aiohttp.ClientSession, small: PhotaEmulator
) -> None:
    """A base64 image in a request body is logged as its length only."""
    image = b64(jpeg_bytes())
    await enhance_url(http)
    logged = small.requests[-1]["json"]
    assert logged["image"] == f"<{len(image)} chars>"


@pytest.mark.parametrize(
    ("option", "value"),
    [("output_ttl", -1), ("log_ttl", float("nan")), ("max_outputs", -1), ("max_log", 1.5)],
)
def test_retention_settings_are_checked(option: str, value: float) -> None:
    """A negative or non-numeric retention setting is refused at construction."""
    with pytest.raises(ValueError, match=option):
        PhotaEmulator(**{option: value})  # type: ignore[arg-type]


async def test_a_request_log_entry_is_bounded_whatever_the_body(
    small: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """A body of a million small numbers is logged as its first few, not kept whole."""
    body = json.dumps({"image": "x", "prompt": [0] * 1_000_000}).encode()
    headers = {"Content-Type": "application/json"}
    async with http.post(P + "/enhance", data=io.BytesIO(body), headers=headers) as resp:
        assert resp.status == 422
    (entry,) = [e for e in small.requests if e["path"] == "/enhance"]
    assert len(entry["json"]["prompt"]) < 100
    assert entry["json"]["prompt"][-1] == "...<1000000 items>"
