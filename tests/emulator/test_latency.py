"""Contract: per-answer latency, held after charging and before answering, and keyed submits."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest

from phota_async.testing import PhotaEmulator
from tests.conftest import b64, decode, jpeg_bytes
from tests.emulator.helpers import P, manual, until

JOB = {"async": True, "response_mode": "urls"}


async def post_enhance(http: aiohttp.ClientSession, **extra: object) -> tuple[int, dict]:
    async with http.post(f"{P}/enhance", json={"image": b64(jpeg_bytes()), **extra}) as resp:
        return resp.status, await resp.json()


async def test_answers_wait_for_the_latency(
    emu: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """An API answer is held until the clock has moved by the configured latency."""
    emu.latency = 0.5
    clock = manual(emu)

    async def list_ids() -> int:
        async with http.get(f"{P}/profiles/ids") as resp:
            return resp.status

    call = asyncio.create_task(list_ids())
    await until(lambda: clock.sleepers == 1)
    clock.advance(0.25)
    assert clock.sleepers == 1  # still held
    clock.advance(0.25)
    assert await call == 200


async def test_sync_call_is_charged_before_the_answer_is_sent(
    emu: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """A studio call is in the ledger while its answer is still held back by the latency."""
    emu.latency = 30.0
    call = asyncio.create_task(post_enhance(http))
    await until(lambda: len(emu.charges()) == 1)
    assert not call.done()
    call.cancel()  # the client gives up and closes its connection
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_charge_stands_when_the_client_vanishes_in_the_latency_window(
    threaded_emu: PhotaEmulator,
) -> None:
    """A client that closes its session while the answer is held leaves the charge in place."""
    emu = threaded_emu
    emu.latency = 30.0
    session = aiohttp.ClientSession(base_url=emu.origin, headers={"X-API-Key": emu.api_key})
    call = asyncio.create_task(post_enhance(session, **JOB))
    await until(lambda: len(emu.charges()) == 1)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await session.close()
    emu.latency = 0.0
    headers = {"X-API-Key": emu.api_key}
    async with (
        aiohttp.ClientSession(base_url=emu.origin, headers=headers) as fresh,
        fresh.get(f"{P}/jobs/{emu.jobs()[0]['job_id']}") as resp,
    ):
        assert resp.status == 200
    assert [e["kind"] for e in emu.ledger] == ["charge"]


async def test_same_key_in_the_latency_window_returns_the_original_job(
    emu: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """A resubmit with the same key, sent while the first answer is held, pays nothing more."""
    emu.latency = 0.5
    clock = manual(emu)
    first = asyncio.create_task(post_enhance(http, client_request_id="key-1", **JOB))
    # Sleeping on the clock: the job's run and the first answer's latency.
    await until(lambda: len(emu.charges()) == 1 and clock.sleepers == 2)
    second = asyncio.create_task(post_enhance(http, client_request_id="key-1", **JOB))
    await until(lambda: clock.sleepers == 3)
    assert not first.done()  # both answers are held at once
    clock.advance(0.5)
    (status_a, handle_a), (status_b, handle_b) = await asyncio.gather(first, second)
    assert (status_a, status_b) == (202, 202)
    assert handle_a["job_id"] == handle_b["job_id"]
    assert len(emu.charges()) == 1


async def test_same_key_after_a_lost_answer_returns_the_original_job(
    emu: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """A submit whose answer was never received, sent again with its key, is not charged again."""
    emu.latency = 30.0
    lost = asyncio.create_task(post_enhance(http, client_request_id="key-2", **JOB))
    await until(lambda: len(emu.charges()) == 1)
    lost.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lost
    emu.latency = 0.0
    status, handle = await post_enhance(http, client_request_id="key-2", **JOB)
    assert status == 202
    assert handle["job_id"] == emu.jobs()[0]["job_id"]
    assert len(emu.charges()) == 1


async def test_concurrent_first_submits_with_one_key_make_one_job(
    emu: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """Many submits racing with the same key make one job and one charge."""
    emu.latency = 0.2
    clock = manual(emu)
    calls = [
        asyncio.create_task(post_enhance(http, client_request_id="key-3", **JOB)) for _ in range(8)
    ]
    await until(lambda: clock.sleepers == 8 + 1)  # eight answers held, one job running
    clock.advance(0.2)
    answers = await asyncio.gather(*calls)
    assert {handle["job_id"] for _, handle in answers} == {emu.jobs()[0]["job_id"]}
    assert len(emu.jobs()) == 1
    assert len(emu.charges()) == 1


@pytest.mark.phota_emulator(latency=(0.2, 0.4))
def test_fixture_marker_sets_a_latency_range(phota_emulator: PhotaEmulator) -> None:
    """The fixture's marker takes a (low, high) latency range."""
    assert phota_emulator.latency == (0.2, 0.4)


@pytest.mark.parametrize("bad", [-0.1, (0.4, 0.2), (0.0, float("inf")), float("nan")])
def test_impossible_latency_is_refused(bad: float | tuple[float, float]) -> None:
    """A negative, reversed, endless or NaN latency is a ValueError."""
    with pytest.raises(ValueError, match="latency"):
        PhotaEmulator(latency=bad)


def test_cli_serves_with_latency_and_small_outputs() -> None:
    """``phota emulator --latency 0.3 --max-output-side 48`` holds answers and shrinks outputs."""
    argv = [sys.executable, "-m", "phota_async", "emulator", "--port", "0",
            "--latency", "0.3", "--max-output-side", "48"]  # fmt: skip
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        base_url = lines[1].strip().split("=", 1)[1]
        key = lines[2].strip().split("=", 1)[1]
        body = f'{{"image": "{b64(jpeg_bytes(3, (200, 160)))}"}}'.encode()
        request = urllib.request.Request(
            f"{base_url}/enhance",
            data=body,
            headers={"X-API-Key": key, "Content-Type": "application/json"},
        )
        started = time.monotonic()
        with urllib.request.urlopen(request, timeout=10) as resp:
            image = decode(base64.b64decode(json.load(resp)["images"][0]))
        assert time.monotonic() - started >= 0.29
        assert max(image.size) == 48
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.parametrize("bad", ["-1", "0.4:0.2", "soon"])
def test_cli_refuses_a_bad_latency(bad: str) -> None:
    """``phota emulator --latency`` with a negative, reversed or non-number value exits 2."""
    proc = subprocess.run(
        [sys.executable, "-m", "phota_async", "emulator", "--port", "0", f"--latency={bad}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--latency" in proc.stderr


async def test_a_real_clock_emulator_holds_each_answer_for_its_latency() -> None:
    """Without a clock given, the latency is real time: an answer takes at least that long."""
    async with (
        PhotaEmulator(latency=0.3) as emu,
        aiohttp.ClientSession(headers={"X-API-Key": emu.api_key}) as http,
    ):
        started = time.monotonic()
        async with http.get(f"{emu.base_url}/profiles/ids") as resp:
            assert resp.status == 200
        assert time.monotonic() - started >= 0.3
