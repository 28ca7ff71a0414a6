"""Contract: with a state folder, a download URL is announced only once its output file and row
are written, so that a process killed right after the announcement leaves no URL answering 404.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from phota_async.testing import PhotaEmulator
from phota_async.testing._store import StateStore
from tests.helpers import b64, jpeg_bytes

FAST = {"validation_seconds": 0.01, "job_queue_seconds": 0.01, "job_run_seconds": 0.01}
JOB = {"image": b64(jpeg_bytes()), "async": True, "response_mode": "urls"}


def stored_outputs(folder: Path) -> set[str]:
    """The output keys the state folder's database names (what a restart would serve)."""
    with sqlite3.connect(folder / "emulator.sqlite3") as db:
        keys = {k for (k,) in db.execute("SELECT key FROM outputs")}
    db.close()
    return keys


async def test_a_job_is_not_succeeded_before_its_output_is_in_the_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While an output's write to the folder is held up, its job does not read SUCCEEDED."""
    entered, release = threading.Event(), threading.Event()
    save_output = StateStore.save_output

    def slow_save(self: StateStore, *args: Any) -> None:
        entered.set()
        release.wait(10)
        save_output(self, *args)

    monkeypatch.setattr(StateStore, "save_output", slow_save)
    emu = PhotaEmulator(state_dir=tmp_path, max_output_side=64, **FAST)
    async with emu, aiohttp.ClientSession(headers={"X-API-Key": emu.api_key}) as http:
        async with http.post(emu.base_url + "/enhance", json=JOB) as resp:
            job_id = (await resp.json())["job_id"]
        await asyncio.get_running_loop().run_in_executor(None, entered.wait, 10)
        async with http.get(f"{emu.base_url}/jobs/{job_id}") as resp:
            held = (await resp.json())["status"]
        release.set()
        for _ in range(500):
            async with http.get(f"{emu.base_url}/jobs/{job_id}") as resp:
                job = await resp.json()
            if job["status"] == "SUCCEEDED":
                break
            await asyncio.sleep(0.01)
        assert held == "RUNNING"
        assert len(stored_outputs(tmp_path)) == 1


async def test_a_submit_killed_before_its_charge_is_written_leaves_no_job_behind(
    tmp_path: Path,
) -> None:
    """If the charge of a keyed submit never reaches the folder, neither do its job and key:
    the restarted emulator runs and charges the resubmit once."""
    emu = PhotaEmulator(state_dir=tmp_path, max_output_side=64, **FAST)
    async with emu, aiohttp.ClientSession(headers={"X-API-Key": emu.api_key}) as http:

        def killed(entry: Any, balance: float) -> None:
            raise RuntimeError("the process died here")

        emu._state.billing.sink = killed
        async with http.post(emu.base_url + "/enhance", json={**JOB, "client_request_id": "k"}):
            pass
    again = PhotaEmulator(state_dir=tmp_path, max_output_side=64, **FAST)
    async with again, aiohttp.ClientSession(headers={"X-API-Key": again.api_key}) as http:
        async with http.post(
            again.base_url + "/enhance", json={**JOB, "client_request_id": "k"}
        ) as resp:
            job_id = (await resp.json())["job_id"]
        charged = [e["job_id"] for e in again.charges()]
    assert charged == [job_id]
