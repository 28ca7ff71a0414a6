"""The ``phota`` commands end to end: outputs, JSON and exit codes."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from phota_async import PhotaClient
from phota_async._cli import main
from phota_async.testing import PhotaEmulator
from tests.cli.conftest import FAST_POLLS, image_format, run_json
from tests.conftest import jpeg_bytes


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


@pytest.mark.phota_emulator(training_seconds=0.2)
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
            *FAST_POLLS,
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

    async def submit() -> str:
        async with PhotaClient() as phota:
            return (await phota.jobs.submit_generate("x")).id

    job_id = asyncio.run(submit())
    assert run_json(["jobs", "get", job_id], capsys)[1]["job_id"] == job_id  # type: ignore[index]
    code, data = run_json(["jobs", "wait", job_id, "--out", str(tmp_path), *FAST_POLLS], capsys)
    assert code == 0
    assert isinstance(data, dict)
    assert len(data["outputs"]) == 1


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


def test_emulator_command_serves_with_the_given_key_until_ctrl_c() -> None:
    """`phota emulator --port 0 --key K` prints where it listens and the key, and Ctrl-C ends it
    with exit 0."""
    key = "phota_emu_cli_fixed_key_0001"
    proc = subprocess.Popen(
        [sys.executable, "-m", "phota_async", "emulator", "--port", "0", "--key", key],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        assert lines[1].startswith("export PHOTA_BASE_URL=http://127.0.0.1:")
        assert lines[2] == f"export PHOTA_API_KEY={key}\n"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_batch_flags_reach_every_request(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--prompt, --format and --profile are sent on every enhance request of the batch."""
    pid = env.add_profile()
    argv = ["enhance", str(photos), "--out", str(tmp_path / "out"), "--prompt", "warmer",
            "--format", "png", "--profile", pid]  # fmt: skip
    assert run_json(argv, capsys)[0] == 0
    bodies = [r["json"] for r in env.requests if r["path"].endswith("/enhance")]
    assert len(bodies) == 5
    for body in bodies:
        assert (body["prompt"], body["output_format"], body["profile_ids"]) == (
            "warmer",
            "png",
            [pid],
        )
    assert {image_format(p) for p in (tmp_path / "out").iterdir()} == {"PNG"}
