"""What the command line says when it cannot run: one line, exit 2, in the CLI's own words."""

from __future__ import annotations

from pathlib import Path

import pytest

from phota_async._cli import main
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
