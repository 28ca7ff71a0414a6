"""Contract: with a state folder, a restarted emulator keeps the account: its key and secrets,
profiles on their training timeline, jobs and their downloads, idempotency keys and the ledger.
A folder that is not an emulator's state is refused with a clear error.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from phota_async._cli import main
from phota_async.testing import ManualClock, PhotaEmulator, StateDirError
from tests.helpers import b64, jpeg_bytes

P = "/v1/phota"
FAST = {"validation_seconds": 0.01, "job_queue_seconds": 0.01, "job_run_seconds": 0.01}
JOB = {"image": b64(jpeg_bytes()), "async": True, "response_mode": "urls"}


def emulator(folder: Path, **options: Any) -> PhotaEmulator:
    return PhotaEmulator(state_dir=folder, max_output_side=64, **{**FAST, **options})


async def call(
    emu: PhotaEmulator, method: str, path: str, json: Any = None
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession(headers={"X-API-Key": emu.api_key}) as session,
        session.request(method, emu.base_url + path, json=json) as resp,
    ):
        return resp.status, await resp.json()


async def finished(emu: PhotaEmulator, job_id: str) -> dict[str, Any]:
    for _ in range(500):
        _status, job = await call(emu, "GET", f"/jobs/{job_id}")
        if job["status"] in ("SUCCEEDED", "FAILED"):
            return job
        await asyncio.sleep(0.01)
    raise AssertionError("job never finished")


async def download(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200
        return await resp.read()


async def first_run(folder: Path) -> dict[str, Any]:
    """An account's first life: a profile, a finished job with a key, its output downloaded."""
    async with emulator(folder) as emu:
        profile_id = emu.add_profile(tag="me")
        _, handle = await call(emu, "POST", "/enhance", {**JOB, "client_request_id": "k1"})
        job = await finished(emu, handle["job_id"])
        url = job["result"]["download_urls"][0]
        return {
            "port": int(emu.origin.rsplit(":", 1)[1]),
            "key": emu.api_key,
            "secret": emu.webhook_secret,
            "profile_id": profile_id,
            "job": job,
            "image": await download(url),
            "ledger": emu.ledger,
            "balance": emu.balance,
        }


async def test_a_restart_keeps_the_key_and_webhook_secret(tmp_path: Path) -> None:
    """With no key given, a restarted emulator accepts the key (and signs with the secret) of
    its first run."""
    before = await first_run(tmp_path)
    async with emulator(tmp_path) as again:
        status, _ = await call(again, "GET", "/profiles/ids")
    assert status == 200
    assert (again.api_key, again.webhook_secret) == (before["key"], before["secret"])


async def test_a_restart_keeps_profiles(tmp_path: Path) -> None:
    """A profile made before the restart is listed, READY, with its tag."""
    before = await first_run(tmp_path)
    async with emulator(tmp_path) as emu:
        _, body = await call(emu, "GET", "/profiles/ids")
    assert body["profiles"] == [
        {"profile_id": before["profile_id"], "status": "READY", "tag": "me"}
    ]


async def test_a_finished_job_still_downloads_after_a_restart(tmp_path: Path) -> None:
    """The job reads back SUCCEEDED with the same URL, which serves the same bytes."""
    before = await first_run(tmp_path)
    async with emulator(tmp_path, port=before["port"]) as emu:
        _, job = await call(emu, "GET", f"/jobs/{before['job']['job_id']}")
        assert job == before["job"]
        assert await download(job["result"]["download_urls"][0]) == before["image"]


async def test_a_repeated_key_after_a_restart_returns_the_job_uncharged(tmp_path: Path) -> None:
    """The same client_request_id returns the original job; the ledger gains no entry."""
    before = await first_run(tmp_path)
    async with emulator(tmp_path) as emu:
        status, handle = await call(emu, "POST", "/enhance", {**JOB, "client_request_id": "k1"})
        assert (status, handle["job_id"]) == (202, before["job"]["job_id"])
        assert emu.ledger == before["ledger"]


async def test_a_restart_keeps_the_ledger_and_balance(tmp_path: Path) -> None:
    """Charges and the balance read back as they were; the next charge appends to them."""
    before = await first_run(tmp_path)
    async with emulator(tmp_path, balance=5.0) as emu:
        assert (emu.ledger, emu.balance) == (before["ledger"], before["balance"])
        await call(emu, "POST", "/enhance", {"image": JOB["image"]})
        assert emu.ledger[: len(before["ledger"])] == before["ledger"]
        assert len(emu.ledger) == len(before["ledger"]) + 1


async def test_training_resumes_its_timeline_after_a_restart(tmp_path: Path) -> None:
    """A profile in training becomes READY when it would have without the restart."""
    async with emulator(tmp_path) as emu:
        profile_id = emu.add_profile(training_seconds=600)
        (first,) = emu.profiles()
    async with emulator(tmp_path, training_seconds=5) as emu:
        (again,) = emu.profiles()
    assert again["profile_id"] == profile_id
    assert again["status"] == "QUEUING"
    assert again["ready_at"] == pytest.approx(first["ready_at"], abs=0.01)


async def test_an_unfinished_job_runs_after_a_restart(tmp_path: Path) -> None:
    """A job still queued when the emulator stopped is run by the next one, and succeeds."""
    async with emulator(tmp_path, clock=ManualClock(), job_queue_seconds=0.2) as emu:
        _, handle = await call(emu, "POST", "/enhance", JOB)
        assert handle["status"] == "QUEUED"
    async with emulator(tmp_path) as emu:
        job = await finished(emu, handle["job_id"])
    assert job["status"] == "SUCCEEDED"


async def test_a_deleted_profile_stays_deleted(tmp_path: Path) -> None:
    """Deleting a profile removes it from the state folder too."""
    before = await first_run(tmp_path)
    async with emulator(tmp_path) as emu:
        await call(emu, "DELETE", f"/profiles/{before['profile_id']}")
    async with emulator(tmp_path) as emu:
        assert emu.profiles() == []


async def test_an_evicted_output_leaves_the_state_folder(tmp_path: Path) -> None:
    """With max_outputs=1, the older output's file is deleted, not only forgotten."""
    async with emulator(tmp_path, max_outputs=1) as emu:
        for _ in range(2):
            await call(emu, "POST", "/enhance", {"image": JOB["image"], "response_mode": "urls"})
    assert len(list((tmp_path / "outputs").iterdir())) == 1


def test_a_folder_of_other_files_is_refused(tmp_path: Path) -> None:
    """A non-empty folder with no emulator database is not taken over."""
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StateDirError, match="not empty and holds no emulator state"):
        PhotaEmulator(state_dir=tmp_path)


def test_a_corrupt_database_is_refused(tmp_path: Path) -> None:
    """A database file that is not SQLite gives a clear error, not a traceback from sqlite3."""
    (tmp_path / "emulator.sqlite3").write_bytes(b"this is not a database, only text" * 100)
    with pytest.raises(StateDirError, match="not a readable emulator state"):
        PhotaEmulator(state_dir=tmp_path)


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    """A SQLite database made by another program is left alone."""
    with sqlite3.connect(tmp_path / "emulator.sqlite3") as db:
        db.execute("CREATE TABLE t (x)")
    db.close()
    with pytest.raises(StateDirError, match="another application"):
        PhotaEmulator(state_dir=tmp_path)


async def test_unreadable_records_are_refused(tmp_path: Path) -> None:
    """A record that is not the JSON this emulator wrote gives a clear error."""
    async with emulator(tmp_path) as emu:
        emu.add_profile()
    with sqlite3.connect(tmp_path / "emulator.sqlite3") as db:
        db.execute("UPDATE profiles SET record = '{not json'")
    db.close()
    with pytest.raises(StateDirError, match="records this emulator cannot read"):
        emulator(tmp_path)


def test_cli_names_the_state_dir_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phota emulator --state-dir` on a foreign folder exits 2 with one readable line."""
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["emulator", "--port", "0", "--state-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("phota: error: --state-dir: state dir ")


async def test_a_folder_in_use_by_a_running_emulator_is_refused(tmp_path: Path) -> None:
    """A second emulator on the folder of a running one fails with StateDirError, not silently
    keeping a second, diverging copy of the account."""
    async with emulator(tmp_path):
        with pytest.raises(StateDirError, match="in use by another running emulator"):
            emulator(tmp_path)
