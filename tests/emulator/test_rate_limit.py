"""Contract: the emulator's rate limit, a token bucket per account on the emulator's clock."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from phota_async._cli import main
from phota_async.testing import ManualClock, PhotaEmulator, RateLimit
from tests.conftest import b64, jpeg_bytes
from tests.emulator.helpers import P


async def ids(http: aiohttp.ClientSession) -> tuple[int, dict[str, str]]:
    async with http.get(f"{P}/profiles/ids") as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


async def enhance(http: aiohttp.ClientSession) -> tuple[int, dict[str, object]]:
    async with http.post(f"{P}/enhance", json={"image": b64(jpeg_bytes())}) as resp:
        return resp.status, await resp.json()


async def test_a_request_that_finds_the_bucket_empty_gets_429_with_retry_after(
    emu: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """With a bucket of 2, the third request at once is refused with 429 and ``Retry-After``."""
    emu.rate_limit = RateLimit(rate=0.5, burst=2)
    statuses = [(await ids(http))[0] for _ in range(2)]
    status, headers = await ids(http)
    assert statuses == [200, 200]
    assert status == 429
    assert headers["Retry-After"] == "2"


async def test_the_refusal_can_come_without_retry_after(
    emu: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """``retry_after=False`` refuses with a bare 429, as a server that gives no hint."""
    emu.rate_limit = {"rate": 1, "retry_after": False}
    await ids(http)
    status, headers = await ids(http)
    assert status == 429
    assert "Retry-After" not in headers


async def test_status_503_answers_refusals_as_an_overloaded_service(
    emu: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """``status=503`` makes every request beyond the bucket a 503 ``SERVICE_UNAVAILABLE``."""
    emu.rate_limit = RateLimit(rate=1, burst=1, status=503)
    await ids(http)
    async with http.get(f"{P}/profiles/ids") as resp:
        assert (resp.status, (await resp.json())["code"]) == (503, "SERVICE_UNAVAILABLE")
    async with http.get(f"{P}/profiles/ids") as resp:
        assert resp.status == 503


async def test_a_refused_studio_call_is_not_charged(
    emu: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """A paid call refused by the rate limit costs nothing: one charge for one success."""
    emu.rate_limit = RateLimit(rate=1, burst=1)
    first, _ = await enhance(http)
    second, body = await enhance(http)
    assert (first, second, body["code"]) == (200, 429, "RATE_LIMITED")
    assert len(emu.charges()) == 1
    assert emu.net_spent() == pytest.approx(0.12)


async def test_refusals_are_counted_in_the_request_log(
    emu: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """Every refusal is in the request log with its status, and in ``rate_limited``."""
    emu.rate_limit = RateLimit(rate=1, burst=1)
    for _ in range(4):
        await ids(http)
    assert [r["status"] for r in emu.requests] == [200, 429, 429, 429]
    assert emu.rate_limited == 3


async def test_the_bucket_refills_on_the_emulator_clock(
    emu: PhotaEmulator, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """At 4 requests a second, a quarter of a second on the clock earns one more request."""
    emu.rate_limit = RateLimit(rate=4, burst=1)
    await ids(http)
    assert (await ids(http))[0] == 429
    clock.advance(0.25)
    assert (await ids(http))[0] == 200
    assert (await ids(http))[0] == 429


async def test_the_limit_can_be_halved_while_running(
    emu: PhotaEmulator, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """Halving the rate midway takes effect at once: a second then earns half as many."""
    emu.rate_limit = RateLimit(rate=4, burst=4)
    assert [(await ids(http))[0] for _ in range(4)] == [200] * 4
    emu.rate_limit = RateLimit(rate=2, burst=2)
    assert (await ids(http))[0] == 429
    clock.advance(1.0)
    assert [(await ids(http))[0] for _ in range(3)] == [200, 200, 429]


async def test_a_limit_put_back_after_a_pause_without_one_starts_from_a_full_bucket(
    emu: PhotaEmulator, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    """A bucket emptied before the limit was lifted is full again when a limit comes back a
    minute later, as it would be had the limit stayed."""
    emu.rate_limit = RateLimit(rate=1, burst=2)
    assert [(await ids(http))[0] for _ in range(3)] == [200, 200, 429]
    emu.rate_limit = None
    clock.advance(60.0)
    emu.rate_limit = RateLimit(rate=1, burst=2)
    assert [(await ids(http))[0] for _ in range(3)] == [200, 200, 429]


async def test_per_endpoint_buckets_keep_endpoints_apart(
    emu: PhotaEmulator, http: aiohttp.ClientSession
) -> None:
    """With ``per_endpoint``, an exhausted ``/enhance`` bucket leaves profile calls alone."""
    emu.rate_limit = RateLimit(rate=1, burst=1, per_endpoint=True)
    assert (await enhance(http))[0] == 200
    assert (await enhance(http))[0] == 429
    assert (await ids(http))[0] == 200


async def test_requests_without_a_valid_key_spend_no_tokens(
    emu: PhotaEmulator, http: aiohttp.ClientSession, anon: aiohttp.ClientSession
) -> None:
    """A request refused for its key (403) does not take the account's token."""
    emu.rate_limit = RateLimit(rate=1, burst=1)
    async with anon.get(f"{P}/profiles/ids") as resp:
        assert resp.status == 403
    assert (await ids(http))[0] == 200


async def test_no_limit_by_default(emu: PhotaEmulator, http: aiohttp.ClientSession) -> None:
    """Without a rate limit, a burst of requests is all answered."""
    assert emu.rate_limit is None
    assert {(await ids(http))[0] for _ in range(30)} == {200}


@pytest.mark.parametrize("value", [0, -1, float("inf"), "fast", True])
def test_a_nonsense_rate_limit_is_refused(value: object) -> None:
    """A rate that is not a positive finite number is a ``ValueError`` at construction."""
    with pytest.raises(ValueError, match="rate"):
        PhotaEmulator(rate_limit=value)  # type: ignore[arg-type]


@pytest.mark.phota_emulator(rate_limit={"rate": 5, "status": 503})
def test_the_fixture_takes_the_rate_limit_from_its_marker(
    phota_emulator: PhotaEmulator,
) -> None:
    """``@pytest.mark.phota_emulator(rate_limit=...)`` configures the fixture's emulator."""
    assert phota_emulator.rate_limit == RateLimit(rate=5, status=503)


def test_the_emulator_command_takes_a_rate_limit() -> None:
    """`phota emulator --rate-limit 1:1 --no-retry-after` refuses the second request at once
    with a bare 429, and says so when it starts."""
    key = "phota_emu_cli_rate_limit_0001"
    argv = ["emulator", "--port", "0", "--key", key, "--rate-limit", "1:1", "--no-retry-after"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "phota_async", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        base_url = lines[2].strip().split("=", 1)[1]
        assert lines[1].startswith("rate limit: 1 requests/s, burst 1, refusals answered 429")
        answers = []
        for _ in range(2):
            request = urllib.request.Request(f"{base_url}/profiles/ids", headers={"X-API-Key": key})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answers.append((response.status, response.headers.get("Retry-After")))
            except urllib.error.HTTPError as refused:
                answers.append((refused.code, refused.headers.get("Retry-After")))
                refused.close()
        assert answers == [(200, None), (429, None)]
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.phota_emulator(rate_limit={"rate": 4, "burst": 1})
def test_a_cli_batch_reports_the_throttling(
    phota_emulator: PhotaEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A batch the server throttles ends with every photo done, and its progress lines, its
    summary and its JSON say how many answers were throttled."""
    monkeypatch.setenv("PHOTA_API_KEY", phota_emulator.api_key)
    monkeypatch.setenv("PHOTA_BASE_URL", phota_emulator.base_url)
    for i in range(4):
        (tmp_path / f"p{i}.jpg").write_bytes(jpeg_bytes(i, (32, 32)))
    assert main(["enhance", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    refused = phota_emulator.rate_limited
    assert refused >= 1
    assert captured.out.strip().startswith("4 done, 0 failed")
    assert f"; throttled {refused} (429/503), pacing " in captured.out
    assert "(429/503), pacing " in captured.err
