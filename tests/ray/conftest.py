"""One local Ray instance per test session, and an emulator in a process of its own per test.

Ray's workers import the test modules (the dying subclass in ``test_pipeline.py``) through
``PYTHONPATH``; the actors of every pipeline ask for a quarter of a CPU, so that Ray Data's read
tasks are not starved on two cores.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from phota_async.testing._images import sample_photo
from tests.ray.emulator_process import ROOT, EmulatorProcess


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """A local Ray instance: two CPUs, no dashboard, a small object store, loopback only."""
    import ray

    ray.init(
        num_cpus=2,
        _node_ip_address="127.0.0.1",
        include_dashboard=False,
        object_store_memory=150 * 1024 * 1024,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    """The emulator in its own process: 256 px outputs, fast jobs."""
    process = EmulatorProcess(max_output_side=256, balance=1e6, job_run_seconds=0.05)
    try:
        yield process
    finally:
        process.close()


def write_photos(folder: Path, count: int, size: int = 256) -> list[Path]:
    """``count`` distinct JPEGs of ``size`` px in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        buf = io.BytesIO()
        sample_photo(i + 1, (size, size)).save(buf, format="JPEG", quality=80)
        path = folder / f"photo{i:04d}.jpg"
        path.write_bytes(buf.getvalue())
        paths.append(path)
    return paths
