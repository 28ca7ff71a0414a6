"""The emulator runs in the current loop, in a thread, as a pytest fixture, and from the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

import anyio
import pytest

from phota_async.testing import PhotaEmulator


def fetch_ids(emu: PhotaEmulator) -> dict:
    request = urllib.request.Request(
        f"{emu.base_url}/profiles/ids", headers={"X-API-Key": emu.api_key}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


def test_threaded_emulator_serves_synchronous_code() -> None:
    """``with PhotaEmulator()`` serves from a thread, usable by blocking code."""
    with PhotaEmulator() as emu:
        assert fetch_ids(emu) == {"profiles": []}
    with pytest.raises(RuntimeError, match="not running"):
        _ = emu.base_url


def test_fixture_serves_sync_tests(phota_emulator: PhotaEmulator) -> None:
    """The plugin's fixture is a running emulator in a synchronous test."""
    assert fetch_ids(phota_emulator) == {"profiles": []}


async def test_fixture_serves_asyncio_tests(phota_emulator: PhotaEmulator) -> None:
    """The plugin's fixture works from a pytest-asyncio test too."""
    import aiohttp

    async with (
        aiohttp.ClientSession(headers={"X-API-Key": phota_emulator.api_key}) as session,
        session.get(f"{phota_emulator.base_url}/profiles/ids") as resp,
    ):
        assert resp.status == 200


def test_fixture_serves_anyio_code(phota_emulator: PhotaEmulator) -> None:
    """Code run under anyio reaches the fixture's emulator."""

    async def main() -> int:
        import aiohttp

        async with (
            aiohttp.ClientSession(headers={"X-API-Key": phota_emulator.api_key}) as session,
            session.get(f"{phota_emulator.base_url}/profiles/ids") as resp,
        ):
            return resp.status

    assert anyio.run(main) == 200


@pytest.mark.phota_emulator(balance=3.5)
def test_fixture_takes_options_from_a_marker(phota_emulator: PhotaEmulator) -> None:
    """The phota_emulator marker configures the fixture's emulator."""
    assert phota_emulator.balance == 3.5


async def test_started_twice_is_an_error() -> None:
    """Starting a running emulator again is refused."""
    async with PhotaEmulator() as emu:
        with pytest.raises(RuntimeError, match="already running"):
            await emu.start()


def test_cli_prints_url_and_key_and_stops_on_ctrl_c() -> None:
    """``phota emulator --port 0`` prints the base URL and key, and exits 0 on SIGINT."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "phota_async", "emulator", "--port", "0"],
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
        request = urllib.request.Request(f"{base_url}/profiles/ids", headers={"X-API-Key": key})
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.communicate()
