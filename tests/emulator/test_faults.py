"""Contract: each scripted fault kind, and how many requests it touches."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from phota_async.testing import Fault, ManualClock, PhotaEmulator
from tests.emulator.helpers import P, manual, until


async def test_status_fault_answers_with_retry_after(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A status fault answers that status with Retry-After, then the path works again."""
    emu.add_fault("/profiles/ids", status=429, retry_after=2)
    async with http.get(f"{P}/profiles/ids") as first:
        body = await first.json()
        assert (first.status, first.headers["Retry-After"]) == (429, "2")
        assert body["request_id"] == first.headers["X-Request-Id"]
    async with http.get(f"{P}/profiles/ids") as second:
        assert second.status == 200


async def test_fault_applies_times_then_stops(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A fault with times=3 hits exactly three matching requests."""
    emu.add_fault("/profiles/ids", status=503, times=3)
    statuses = []
    for _ in range(4):
        async with http.get(f"{P}/profiles/ids") as resp:
            statuses.append(resp.status)
    assert statuses == [503, 503, 503, 200]


async def test_fault_glob_and_method_filter(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A fault matches by glob and only the given method."""
    emu.add_fault("/profiles/*/status", method="GET", status=500)
    async with http.delete(f"{P}/profiles/x") as other_path:
        assert other_path.status == 404
    async with http.get(f"{P}/profiles/x/status") as hit:
        assert hit.status == 500


async def test_html_body_fault(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """A status fault may carry a non-JSON body, as a proxy would send."""
    emu.add_fault("/generate", status=502, body="<html>Bad Gateway</html>")
    async with http.post(f"{P}/generate", json={"prompt": "x"}) as resp:
        assert (resp.status, resp.content_type) == (502, "text/html")
        assert "Bad Gateway" in await resp.text()
    assert emu.ledger == []


async def test_delay_fault_slows_then_processes(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A delay fault holds the request for its time on the clock, then processes it normally."""
    emu.add_fault("/profiles/ids", delay=0.3)
    clock = manual(emu)

    async def list_ids() -> int:
        async with http.get(f"{P}/profiles/ids") as resp:
            return resp.status

    call = asyncio.create_task(list_ids())
    await until(lambda: clock.sleepers == 1)
    assert emu.requests[-1]["status"] is None  # received, not processed yet
    clock.advance(0.3)
    assert await call == 200


async def test_drop_before_does_not_process(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """drop=before closes the connection and nothing is charged."""
    emu.add_fault("/generate", drop="before")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(f"{P}/generate", json={"prompt": "x"}):
            pass
    assert emu.ledger == []


async def test_drop_after_processes_and_charges(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """drop=after processes (and charges) the call, then closes without answering."""
    emu.add_fault("/generate", drop="after")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(f"{P}/generate", json={"prompt": "x"}):
            pass
    assert len(emu.charges()) == 1


async def test_truncated_body(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """truncate sends half the body under the full Content-Length, then closes."""
    emu.add_fault("/generate", truncate=True)
    async with http.post(f"{P}/generate", json={"prompt": "x"}) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_malformed_body(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """malformed answers 200 with a JSON content type and a body that does not parse."""
    emu.add_fault("/profiles/ids", malformed=True)
    async with http.get(f"{P}/profiles/ids") as resp:
        assert (resp.status, resp.content_type) == (200, "application/json")
        with pytest.raises(ValueError, match="Expecting value"):
            await resp.json()


async def test_wrong_content_type(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """content_type relabels the real body."""
    emu.add_fault("/profiles/ids", content_type="text/plain")
    async with http.get(f"{P}/profiles/ids") as resp:
        assert resp.content_type == "text/plain"
        assert "profiles" in await resp.text()


async def test_faults_are_logged(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """The request log names the fault each request suffered."""
    emu.add_fault("/profiles/ids", status=503)
    async with http.get(f"{P}/profiles/ids"):
        pass
    assert emu.requests[-1]["fault"] == "status=503"


def test_fault_needs_exactly_one_effect() -> None:
    """A Fault with no effect, or two, is refused at once."""
    with pytest.raises(ValueError, match="exactly one"):
        Fault(path="/x")
    with pytest.raises(ValueError, match="exactly one"):
        Fault(path="/x", status=500, truncate=True)


async def test_clear_faults(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """clear_faults forgets pending faults."""
    emu.add_fault("/profiles/ids", status=500, times=5)
    emu.clear_faults()
    async with http.get(f"{P}/profiles/ids") as resp:
        assert resp.status == 200


async def test_stopping_cuts_a_delay_fault_short() -> None:
    """An emulator stops without waiting out a pending delay; the held request is answered."""
    clock = ManualClock()
    emu = PhotaEmulator(clock=clock)
    await emu.start()
    try:
        emu.add_fault("/profiles/ids", delay=3600)
        async with aiohttp.ClientSession(headers={"X-API-Key": emu.api_key}) as session:

            async def list_ids() -> int:
                async with session.get(f"{emu.base_url}/profiles/ids") as resp:
                    return resp.status

            call = asyncio.create_task(list_ids())
            await until(lambda: clock.sleepers == 1)
            await asyncio.wait_for(emu.stop(), 30)  # the delay alone would hold it for 60 s
            assert await call == 200
    finally:
        await emu.stop()
    assert clock.now() == 0
