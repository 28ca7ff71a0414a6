"""Fixtures for the ``phota`` command line: photos on disk, an emulator named by the environment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from phota_async._cli import main
from phota_async.testing import PhotaEmulator
from tests.conftest import jpeg_bytes

# Polls every 50 ms: the emulator finishes jobs and training in well under a second, and the
# documented cadence (jobs 1 s, profiles 5 s) would make every wait a sleep.
FAST_POLLS = ["--poll-interval", "0.05"]


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
    """The format Pillow reads in the file (``"JPEG"``, ``"PNG"``)."""
    with Image.open(path) as img:
        return img.format


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, object]:
    """Run ``phota ARGV --json``; return the exit code and the decoded stdout."""
    code = main([*argv, "--json"])
    return code, json.loads(capsys.readouterr().out)
