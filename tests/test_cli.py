"""The ``phota`` command end to end: outputs, JSON, exit codes and one-line errors."""

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
from PIL import Image

from phota_async._cli import main
from phota_async._manifest import Manifest
from phota_async.testing import PhotaEmulator
from tests.conftest import jpeg_bytes


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder of five photos, one in a sub-folder."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(4):
        (folder / f"p{i}.jpg").write_bytes(jpeg_bytes(i, (48, 48)))
    (folder / "sub" / "p4.jpg").write_bytes(jpeg_bytes(4, (48, 48)))
    (folder / "notes.txt").write_text("not a photo")
    return folder


@pytest.fixture
def env(phota_emulator: PhotaEmulator, monkeypatch: pytest.MonkeyPatch) -> PhotaEmulator:
    """PHOTA_API_KEY and PHOTA_BASE_URL pointing at a running emulator."""
    monkeypatch.setenv("PHOTA_API_KEY", phota_emulator.api_key)
    monkeypatch.setenv("PHOTA_BASE_URL", phota_emulator.base_url)
    return phota_emulator


def image_format(path: str | Path) -> str | None:
    with Image.open(path) as img:
        return img.format


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, object]:
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_enhance_folder_writes_every_output(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phota enhance DIR --out DIR` enhances every image in the tree and exits 0."""
    code, data = run_json(["enhance", str(photos), "--out", str(tmp_path / "out")], capsys)
    assert code == 0
    assert isinstance(data, dict)
    assert (data["done"], data["failed"]) == (5, 0)
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outputs == [f"p{i}-0.jpg" for i in range(5)]


def test_failed_items_exit_1(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A batch with a failed item exits 1 and names the failure."""
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    code, data = run_json(["enhance", str(photos), "--out", str(tmp_path / "out")], capsys)
    assert code == 1
    assert isinstance(data, dict)
    assert data["failed"] == 1
    assert [i["input"] for i in data["items"] if i["error"]] == [str(photos / "broken.jpg")]


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
    ]
    assert run_json(argv, capsys)[0] == 0
    code, data = run_json(argv, capsys)
    assert code == 0
    assert isinstance(data, dict)
    assert (data["done"], data["skipped"]) == (0, 5)


def test_plain_output_is_one_summary_line(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json, stdout is a summary line and progress goes to stderr as plain lines."""
    assert main(["enhance", str(photos), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().startswith("5 done, 0 failed")
    assert "enhance: 5/5" in captured.err


def test_edit_and_remix_batches(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """edit and remix run over a folder too."""
    assert (
        run_json(["edit", "make it warmer", str(photos), "--out", str(tmp_path / "e")], capsys)[0]
        == 0
    )
    reference = photos / "p0.jpg"
    code, _ = run_json(
        ["remix", str(photos / "sub"), "--reference", str(reference), "--out", str(tmp_path / "r")],
        capsys,
    )
    assert code == 0
    assert len(list((tmp_path / "r").iterdir())) == 1


def test_generate_with_in_process_emulator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--emulator` needs no key and writes real images."""
    monkeypatch.delenv("PHOTA_API_KEY", raising=False)
    code, data = run_json(
        [
            "generate",
            "a lighthouse",
            "-n",
            "2",
            "--out",
            str(tmp_path),
            "--emulator",
            "--format",
            "png",
        ],
        capsys,
    )
    assert code == 0
    assert isinstance(data, dict)
    assert [image_format(p) for p in data["outputs"]] == ["PNG", "PNG"]


def test_profiles_commands(
    env: PhotaEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """profiles create --wait, list, status, picture and delete work together."""
    urls = [env.store_file(jpeg_bytes(i)) for i in range(5)]
    code, created = run_json(
        [
            "profiles",
            "create",
            *urls,
            "--tier",
            "fast",
            "--tag",
            "cli",
            "--wait",
            "--timeout",
            "30",
        ],
        capsys,
    )
    assert code == 0
    assert isinstance(created, dict)
    assert created["status"] == "READY"
    pid = created["profile_id"]
    assert [p["profile_id"] for p in run_json(["profiles", "list", "--tag", "cli"], capsys)[1]] == [
        pid
    ]  # type: ignore[union-attr]
    assert run_json(["profiles", "status", pid], capsys)[1]["status"] == "READY"  # type: ignore[index]
    assert run_json(["profiles", "wait", pid], capsys)[0] == 0
    picture = tmp_path / "pic.jpg"
    assert run_json(["profiles", "picture", pid, "--out", str(picture)], capsys)[0] == 0
    assert image_format(picture) == "JPEG"
    assert run_json(["profiles", "delete", pid], capsys)[0] == 0
    assert main(["profiles", "status", pid]) == 1
    assert "NotFoundError" in capsys.readouterr().err


def test_jobs_commands(
    env: PhotaEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """jobs get and jobs wait show and save a job submitted elsewhere."""
    import asyncio

    from phota_async import PhotaClient

    async def submit() -> str:
        async with PhotaClient() as phota:
            return (await phota.jobs.submit_generate("x")).id

    job_id = asyncio.run(submit())
    assert run_json(["jobs", "get", job_id], capsys)[1]["job_id"] == job_id  # type: ignore[index]
    code, data = run_json(["jobs", "wait", job_id, "--out", str(tmp_path)], capsys)
    assert code == 0
    assert isinstance(data, dict)
    assert len(data["outputs"]) == 1


def test_missing_key_is_a_usage_error_without_traceback(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    photos: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With no key the command exits 2 with one readable line."""
    monkeypatch.delenv("PHOTA_API_KEY", raising=False)
    monkeypatch.delenv("PHOTA_KEY", raising=False)
    assert main(["enhance", str(photos), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "PHOTA_API_KEY" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [["enhance", "nowhere-at-all", "--out", "x"], ["enhance", "."], ["frobnicate"], ["generate"]],
)
def test_usage_errors_exit_2(
    argv: list[str], env: PhotaEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad command lines exit 2."""
    assert main(argv) == 2


def test_invalid_parameter_exits_2(
    env: PhotaEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A parameter the SDK refuses exits 2 naming it."""
    assert main(["generate", "x", "-n", "9", "--out", str(tmp_path)]) == 2
    assert "-n: must be an integer from 1 to 4" in capsys.readouterr().err


def test_local_training_photos_need_the_emulator(
    env: PhotaEmulator, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Local training photos against the real API are a usage error (no uploader)."""
    assert main(["profiles", "create", str(photos), "--tier", "fast"]) == 2


def test_python_dash_m_runs_the_cli() -> None:
    """`python -m phota_async --help` prints the commands."""
    out = subprocess.run(
        [sys.executable, "-m", "phota_async", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in out.stdout
    assert "enhance" in out.stdout


def test_demo_makes_real_images_and_a_contact_sheet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phota demo` trains a profile, runs every call and writes real images plus a contact sheet."""
    out = tmp_path / "demo"
    code, summary = run_json(["demo", "--out", str(out)], capsys)
    assert code == 0
    assert isinstance(summary, dict)
    assert set(summary["files"]) == {"generate", "edit", "enhance", "remix"}
    for paths in summary["files"].values():
        for path in paths:
            with Image.open(path) as img:
                assert img.format == "JPEG"
                assert min(img.size) >= 64
    with Image.open(summary["contact_sheet"]) as sheet:
        assert sheet.format == "PNG"
        assert sheet.width > 800
    assert all(rid and rid.startswith("req_") for rid in summary["request_ids"].values())
    assert summary["charged_usd"] > 1.49


# -- batches: interruption, failures, resumes ----------------------------------------------


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


def test_pending_items_exit_1_and_resume_without_paying(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lost submit answer leaves an item pending (exit 1); the rerun completes it unpaid."""
    argv = ["enhance", str(photos), "--out", str(tmp_path / "out"),
            "--manifest", str(tmp_path / "m.jsonl"), "--concurrency", "1"]  # fmt: skip
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
            "--manifest", str(tmp_path / "m.jsonl")]  # fmt: skip
    assert run_json(argv, capsys)[0] == 0
    sent = len(env.requests)
    assert run_json(argv, capsys)[0] == 0
    assert len(env.requests) == sent


def test_outputs_inside_the_input_folder_are_not_taken_for_inputs(
    env: PhotaEmulator, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --out inside the input folder, a rerun neither sends nor pays for its own outputs."""
    argv = ["enhance", str(photos), "--out", str(photos / "enhanced"),
            "--manifest", str(photos / "run.manifest")]  # fmt: skip
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
            "--concurrency", "2", "--json"]  # fmt: skip
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


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_exits_130_with_a_resume_hint(
    phota_emulator: PhotaEmulator, photos: Path, tmp_path: Path, presses: int
) -> None:
    """Ctrl-C finishes (or, pressed twice, abandons) what is in flight, prints the summary and
    a resume hint naming the manifest, exits 130; the rerun finishes paying each input once."""
    emu = phota_emulator
    emu.add_fault("/enhance", delay=0.5, times=100)
    proc = _batch_process(emu, photos, tmp_path)
    _wait_for_intent(tmp_path / "m.jsonl", proc)
    for _ in range(presses):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "in flight, Ctrl-C again to abandon" in err
    assert f"manifest {tmp_path / 'm.jsonl'}" in err
    data = json.loads(out)
    assert data["interrupted"] is True
    assert data["done"] < 5
    emu.clear_faults()
    rerun = _batch_process(emu, photos, tmp_path)
    rerun.communicate(timeout=60)
    assert rerun.returncode == 0
    assert len(emu.charges()) == 5
