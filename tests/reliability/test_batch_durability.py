"""A CLI batch killed with SIGKILL at random moments resumes to every input done exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from phota_async._manifest import Manifest
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes

# SIGKILLs at random moments of a real CLI run: a wide window on purpose (`pytest -m slow`).
pytestmark = pytest.mark.slow

INPUTS = 24


def run_batch(
    emu: PhotaEmulator,
    photos: Path,
    out: Path,
    manifest: Path,
    kill_after: float | None,
    flags: tuple[str, ...] = (),
) -> int | None:
    """Run `phota enhance` in a subprocess; SIGKILL it after `kill_after` seconds."""
    env = {**os.environ, "PHOTA_API_KEY": emu.api_key, "PHOTA_BASE_URL": emu.base_url}
    argv = [sys.executable, "-m", "phota_async", "enhance", str(photos), "--out", str(out),
            "--manifest", str(manifest), *flags, "--concurrency", "4", "--json"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after is None:
        return proc.wait(timeout=120)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return None


@pytest.mark.parametrize("flags", [("--jobs",), ()], ids=["jobs", "default"])
def test_kill_nine_and_resume(
    threaded_emu: PhotaEmulator, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    """After three SIGKILLs and a final run, each input is done once, charged once, and whole,
    with or without --jobs (a manifest run always uses keyed jobs)."""
    emu = threaded_emu
    emu.balance = 1e6
    emu.add_fault("/enhance", delay=0.3, times=10_000)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(INPUTS):
        (photos / f"p{i:02d}.jpg").write_bytes(jpeg_bytes(i, (40, 40)))
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    rng = random.Random(11)
    for _ in range(3):
        run_batch(emu, photos, out, manifest, kill_after=rng.uniform(0.8, 2.5), flags=flags)
    assert run_batch(emu, photos, out, manifest, kill_after=None, flags=flags) == 0

    records = Manifest.read(manifest)
    assert sorted(records) == sorted(str(p.resolve()) for p in photos.iterdir())
    assert {r.state for r in records.values()} == {"done"}
    assert len(emu.charges()) == INPUTS
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]
    finals = list(out.iterdir())
    assert len(finals) == INPUTS
    for path in finals:
        with Image.open(path) as img:
            img.load()
