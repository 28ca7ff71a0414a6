"""``phota demo``: the tour a new user runs first."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.cli.conftest import run_json


def test_demo_makes_real_images_and_a_contact_sheet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`phota demo` trains a profile, runs every call and writes real images plus a contact sheet."""
    out = tmp_path / "demo"
    code, summary = run_json(["demo", "--out", str(out), "--training-seconds", "0.3"], capsys)
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
