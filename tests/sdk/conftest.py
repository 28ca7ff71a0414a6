"""Fixtures for SDK tests: a client on the emulator, backoff waits switched off."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

import phota_async
from phota_async import PhotaClient
from phota_async.testing import PhotaEmulator


@pytest.fixture(autouse=True)
def _no_backoff() -> Iterator[None]:
    """Retries still happen, without their waits."""
    with phota_async.set_testing():
        yield


@pytest.fixture
async def emu() -> AsyncIterator[PhotaEmulator]:
    """The shared emulator fixture with jobs that finish ten times sooner (about 15 ms):
    SDK tests wait on many jobs, and none of them times a job's phases."""
    async with PhotaEmulator(
        training_seconds=0.3,
        validation_seconds=0.02,
        job_queue_seconds=0.005,
        job_run_seconds=0.01,
        max_output_side=128,
    ) as emulator:
        yield emulator


@pytest.fixture
async def phota(emu: PhotaEmulator) -> AsyncIterator[PhotaClient]:
    """A client talking to the test's emulator."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as client:
        yield client
