"""`phota emulator --seed N --max-output-side PX`: a reproducible, small-output dev server."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import urllib.request

from PIL import Image


def generate_once(*flags: str) -> bytes:
    """Start `phota emulator` with ``flags``, make one generate call, stop it; the image."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "phota_async", "emulator", "--port", "0", *flags],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = {}
        while len(lines) < 2:
            line = proc.stdout.readline()
            assert line, "the emulator ended before printing its address"
            if line.startswith("export "):
                name, value = line[len("export ") :].strip().split("=", 1)
                lines[name] = value
        request = urllib.request.Request(
            lines["PHOTA_BASE_URL"] + "/generate",
            data=json.dumps({"prompt": "a lighthouse", "output_format": "png"}).encode(),
            headers={"X-API-Key": lines["PHOTA_API_KEY"], "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return base64.b64decode(json.load(resp)["images"][0])
    finally:
        proc.terminate()
        proc.communicate(timeout=30)  # also closes the pipe


def test_seed_and_max_output_side_flags_reach_the_emulator() -> None:
    """Two servers started with the same --seed answer the same call with the same bytes, at
    most --max-output-side pixels wide."""
    first = generate_once("--seed", "5", "--max-output-side", "64")
    assert first == generate_once("--seed", "5", "--max-output-side", "64")
    assert Image.open(io.BytesIO(first)).size == (64, 64)
