"""A CLI batch killed with SIGKILL at random moments resumes to every input done exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from PIL import Image

from phota_async.testing import PhotaEmulator
from tests.conftest import jpeg_bytes

INPUTS = 24


def run_batch(
    emu: PhotaEmulator, photos: Path, out: Path, manifest: Path, kill_after: float | None
) -> int | None:
    """Run `phota enhance --jobs` in a subprocess; SIGKILL it after `kill_after` seconds."""
    env = {**os.environ, "PHOTA_API_KEY": emu.api_key, "PHOTA_BASE_URL": emu.base_url}
    argv = [sys.executable, "-m", "phota_async", "enhance", str(photos), "--out", str(out),
            "--manifest", str(manifest), "--jobs", "--concurrency", "4", "--json"]  # fmt: skip
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after is None:
        return proc.wait(timeout=120)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    return None


def test_kill_nine_and_resume(threaded_emu: PhotaEmulator, tmp_path: Path) -> None:
    """After three SIGKILLs and a final run, each input is done once, charged once, and whole."""
    emu = threaded_emu
    emu.balance = 1e6
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(INPUTS):
        (photos / f"p{i:02d}.jpg").write_bytes(jpeg_bytes(i, (40, 40)))
    out, manifest = tmp_path / "out", tmp_path / "run.jsonl"
    rng = random.Random(11)
    for _ in range(3):
        run_batch(emu, photos, out, manifest, kill_after=rng.uniform(0.8, 2.5))
    assert run_batch(emu, photos, out, manifest, kill_after=None) == 0

    entries = [
        json.loads(line) for line in manifest.read_text().splitlines() if line.strip().endswith("}")
    ]
    done = Counter(e["input"] for e in entries if e["status"] == "done")
    assert sorted(done) == sorted(str(p.resolve()) for p in photos.iterdir())
    assert set(done.values()) == {1}
    assert len(emu.charges()) == INPUTS
    finals = [p for p in out.iterdir() if not p.name.endswith(".part")]
    assert len(finals) == INPUTS
    for path in finals:
        with Image.open(path) as img:
            img.load()
