"""Batches on the command line: manifests, failures, pending items, resumes and Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from phota_async._cli import main
from phota_async._manifest import Manifest
from phota_async.testing import PhotaEmulator
from tests.cli.conftest import FAST_POLLS, run_json


def test_manifest_rerun_skips_done(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun with --manifest skips every finished input."""
    argv = [
        "enhance",
        str(photos),
        "--out",
        str(tmp_path / "out"),
        "--manifest",
        str(tmp_path / "m.jsonl"),
        *FAST_POLLS,
    ]
    assert run_json(argv, capsys)[0] == 0
    code, data = run_json(argv, capsys)
    assert code == 0
    assert isinstance(data, dict)
    assert (data["done"], data["skipped"]) == (0, 5)


def test_failed_item_is_one_line_on_stderr(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unreadable input is reported in one stderr line; the others are done; exit 1."""
    (photos / "odd.jpg").mkdir()
    code = main(["enhance", str(photos), "--out", str(tmp_path / "out"), "--json"])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if "odd.jpg" in line]
    assert len(lines) == 1
    assert lines[0].startswith("failed: ")
    assert "Traceback" not in err
    assert len(list((tmp_path / "out").iterdir())) == 5


@pytest.mark.usefixtures("no_backoff")
def test_pending_items_exit_1_and_resume_without_paying(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lost submit answer leaves an item pending (exit 1); the rerun completes it unpaid."""
    argv = ["enhance", str(photos), "--out", str(tmp_path / "out"),
            "--manifest", str(tmp_path / "m.jsonl"), "--concurrency", "1", *FAST_POLLS]  # fmt: skip
    env.add_fault("/enhance", drop="after", times=10)
    code, data = run_json(argv, capsys)
    assert code == 1
    assert isinstance(data, dict)
    assert list(data["pending_reasons"]) == ["submit answer lost"]
    env.clear_faults()
    code, data = run_json(argv, capsys)
    assert code == 0
    assert len(env.charges()) == 5


def test_rerun_of_a_finished_manifest_sends_nothing(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once every input is done, running the same command again sends no request at all."""
    argv = ["enhance", str(photos), "--out", str(tmp_path / "out"),
            "--manifest", str(tmp_path / "m.jsonl"), *FAST_POLLS]  # fmt: skip
    assert run_json(argv, capsys)[0] == 0
    sent = len(env.requests)
    assert run_json(argv, capsys)[0] == 0
    assert len(env.requests) == sent


def test_outputs_inside_the_input_folder_are_not_taken_for_inputs(
    env: PhotaEmulator, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --out inside the input folder, a rerun neither sends nor pays for its own outputs."""
    argv = ["enhance", str(photos), "--out", str(photos / "enhanced"),
            "--manifest", str(photos / "run.manifest"), *FAST_POLLS]  # fmt: skip
    assert run_json(argv, capsys)[0] == 0
    sent = len(env.requests)
    code, data = run_json(argv, capsys)
    assert code == 0
    assert isinstance(data, dict)
    assert (data["done"], data["skipped"]) == (0, 5)
    assert len(env.requests) == sent


def _batch_process(emu: PhotaEmulator, photos: Path, tmp_path: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PHOTA_API_KEY": emu.api_key, "PHOTA_BASE_URL": emu.base_url}
    argv = [sys.executable, "-m", "phota_async", "enhance", str(photos), "--out",
            str(tmp_path / "out"), "--manifest", str(tmp_path / "m.jsonl"),
            "--concurrency", "2", "--json", *FAST_POLLS]  # fmt: skip
    return subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_intent(manifest: Path, proc: subprocess.Popen[str]) -> None:
    for _ in range(3000):
        with contextlib.suppress(sqlite3.Error):
            if Manifest.read(manifest):
                return
        assert proc.poll() is None
        time.sleep(0.01)
    raise AssertionError("the batch never started")


def _read_until(proc: subprocess.Popen[str], text: str) -> str:
    """Read the process's stderr up to the first line containing ``text`` (or its end)."""
    assert proc.stderr is not None
    seen = ""
    while line := proc.stderr.readline():
        seen += line
        if text in line:
            break
    return seen


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_exits_130_with_a_resume_hint(
    phota_emulator: PhotaEmulator, photos: Path, tmp_path: Path, presses: int
) -> None:
    """Ctrl-C finishes (or, pressed twice, abandons) what is in flight, prints the summary and
    a resume hint naming the manifest, exits 130; the rerun finishes paying each input once."""
    emu = phota_emulator
    # Every answer is held after the charge: the items in flight when Ctrl-C comes are paid
    # for but not yet known, the window a resume must cover.
    emu.latency = 0.4
    proc = _batch_process(emu, photos, tmp_path)
    _wait_for_intent(tmp_path / "m.jsonl", proc)
    proc.send_signal(signal.SIGINT)
    first = _read_until(proc, "in flight, Ctrl-C again to abandon")
    if presses == 2:
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    err = first + err
    assert proc.returncode == 130
    assert "in flight, Ctrl-C again to abandon" in err
    assert f"manifest {tmp_path / 'm.jsonl'}" in err
    data = json.loads(out)
    assert data["interrupted"] is True
    assert data["done"] < 5
    # Pressed once, what was in flight is finished; pressed twice, it is left pending.
    assert (data["pending"] > 0) is (presses == 2)
    emu.latency = 0.0
    rerun = _batch_process(emu, photos, tmp_path)
    rerun.communicate(timeout=60)
    assert rerun.returncode == 0
    assert len(emu.charges()) == 5
