"""Each example runs against the emulator."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp.test_utils import TestClient, TestServer

from phota_async.testing import PhotaEmulator
from tests.conftest import jpeg_bytes

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def env(phota_emulator: PhotaEmulator, monkeypatch: pytest.MonkeyPatch) -> PhotaEmulator:
    monkeypatch.setenv("PHOTA_API_KEY", phota_emulator.api_key)
    monkeypatch.setenv("PHOTA_BASE_URL", phota_emulator.base_url)
    return phota_emulator


async def test_web_service_edits_synchronously(env: PhotaEmulator) -> None:
    """The service's /edit answers the edited JPEG from its shared client."""
    app = load("web_service").create_app()
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/edit", params={"prompt": "make it warmer"}, data=jpeg_bytes())
        assert resp.status == 200
        assert (await resp.read())[:3] == b"\xff\xd8\xff"
        bad = await client.post("/edit", params={"prompt": ""}, data=jpeg_bytes())
        assert bad.status == 400


async def test_web_service_receives_its_job_callback(env: PhotaEmulator) -> None:
    """A job submitted by the service is called back to its webhook and then served."""
    module = load("web_service")
    app = module.create_app()
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.post("/jobs", params={"prompt": "blur"}, data=jpeg_bytes())
        job_id = (await resp.json())["job_id"]
        result = await client.get(f"/jobs/{job_id}")
        assert result.status == 200
        for _ in range(100):
            if app[module.FINISHED].get(job_id):
                break
            await asyncio.sleep(0.02)
        assert app[module.FINISHED][job_id] == "SUCCEEDED"
    assert env.callbacks[0]["status"] == 204


def test_batch_enhance_script_resumes(
    env: PhotaEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The batch script enhances a folder; a second run finds everything done."""
    source = tmp_path / "in"
    source.mkdir()
    for i in range(6):
        (source / f"{i}.jpg").write_bytes(jpeg_bytes(i, (40, 40)))
    script = load("batch_enhance")
    assert script.main([str(source), str(tmp_path / "out")]) == 0
    assert len(list((tmp_path / "out").glob("*.jpg"))) == 6
    assert script.main([str(source), str(tmp_path / "out")]) == 0
    assert "0 done, 0 failed, 6 skipped" in capsys.readouterr().out
    assert len(env.charges()) == 6


def test_pytest_example_passes() -> None:
    """The example test file passes under pytest-asyncio, as a user would run it."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(EXAMPLES / "test_with_emulator.py"),
            "-q",
            "-p",
            "no:cacheprovider",
            # A user's project has none of this repository's addopts (xdist workers, markers).
            "-o",
            "addopts=",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        cwd=EXAMPLES.parent,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout
