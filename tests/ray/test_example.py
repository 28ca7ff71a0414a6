"""examples/ray_enhance.py runs against the emulator on the session's Ray instance."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.ray.conftest import write_photos
from tests.ray.emulator_process import ROOT, EmulatorProcess

pytestmark = [
    pytest.mark.ray,
    pytest.mark.usefixtures("ray_session"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ray_enhance", ROOT / "examples/ray_enhance.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_enhances_a_folder_and_a_rerun_pays_nothing(
    emulator: EmulatorProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The script writes every output and a results table; run again, it skips every photo."""
    monkeypatch.setenv("PHOTA_API_KEY", emulator.api_key)
    monkeypatch.setenv("PHOTA_BASE_URL", emulator.base_url)
    write_photos(tmp_path / "in", 12)
    script = load_example()
    argv = [str(tmp_path / "in"), str(tmp_path / "out"), "--run-id", "example-run"]
    assert script.main(argv) == 0
    assert "12 done, 0 failed, 0 skipped" in capsys.readouterr().out
    with open(tmp_path / "out/results.csv", encoding="utf-8") as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == 12
    assert all(Path(row["output_paths"]).exists() for row in rows)
    assert script.main(argv) == 0
    assert "0 done, 0 failed, 12 skipped" in capsys.readouterr().out
    assert emulator.ledger()["charges"] == 12
