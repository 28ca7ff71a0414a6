"""What the command line says when it cannot run: one line, exit 2, in the CLI's own words."""

from __future__ import annotations

from pathlib import Path

import pytest

from phota_async._cli import main
from phota_async._cli._commands import _emulator_retention
from phota_async._cli._parser import build_parser, flag_for
from phota_async.testing import PhotaEmulator


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


def test_missing_key_names_the_flag_not_the_python_argument(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The no-key error tells a command-line user about --api-key, not about `api_key=...`."""
    monkeypatch.delenv("PHOTA_API_KEY", raising=False)
    monkeypatch.delenv("PHOTA_KEY", raising=False)
    assert main(["generate", "a lighthouse", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--api-key" in err
    assert "api_key" not in err


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


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["generate", "x", "--aspect-ratio", "2:1"], "--aspect-ratio"),
        (["generate", "x", "--model", "reve", "--resolution", "4K"], "--resolution"),
        (["generate", "x", "--model", "nope"], "--model"),
        (["profiles", "status", "bad!id"], "PROFILE_ID"),
        (["jobs", "get", "bad!id"], "JOB_ID"),
    ],
)
def test_a_refused_parameter_is_named_by_its_flag(
    argv: list[str],
    flag: str,
    env: PhotaEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A value the SDK refuses is reported under the flag that set it, before anything is sent."""
    if argv[0] == "generate":
        argv = [*argv, "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"phota: error: {flag}: ")
    assert env.requests == []


def test_a_refused_batch_option_is_named_by_its_flag(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad --profile in a batch is reported as `--profile #1`, not as `profile_ids[0]`."""
    argv = ["enhance", str(photos / "sub"), "--out", str(tmp_path / "out"), "--profile", "bad!id"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "--profile #1: 'bad!id' is not a valid id" in err
    assert "profile_ids" not in err
    assert env.charges() == []


@pytest.mark.parametrize(
    ("field", "command", "flag"),
    [
        ("images[2]", "edit", "IMAGE #3"),
        ("prompt", "edit", "PROMPT"),
        ("prompt", "enhance", "--prompt"),
        ("output_format", "generate", "--format"),
        ("images", "profiles", "PHOTO"),
        ("profile_ids[0]", "remix", "--profile #1"),
        ("something_new", "edit", "something_new"),
    ],
)
def test_flag_table(field: str, command: str, flag: str) -> None:
    """An SDK parameter maps to the flag or positional that sets it in that command."""
    assert flag_for(field, command) == flag


@pytest.mark.parametrize("port", ["65536", "-1", "http"])
def test_an_impossible_emulator_port_is_a_usage_error_naming_the_flag(
    port: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phota emulator --port 99999` exits 2 naming --port, before anything listens."""
    assert main(["emulator", "--port", port]) == 2
    err = capsys.readouterr().err
    assert "argument --port: need a port number from 0 to 65535" in err
    assert "Traceback" not in err


def test_emulator_max_jobs_reaches_the_emulator() -> None:
    """`phota emulator --max-jobs 5` caps the emulator's job records at 5."""
    args = build_parser().parse_args(["emulator", "--max-jobs", "5"])
    assert _emulator_retention(args)["max_jobs"] == 5
