"""Emulator contract tests run on a ManualClock: time moves only when a test advances it.

The ``emu`` and ``threaded_emu`` fixtures here replace the suite-wide ones for this folder, so
training, job phases, latency and URL expiry are exact and cost no real waiting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from phota_async.testing import ManualClock, PhotaEmulator
from tests.emulator.helpers import JOB_QUEUE, JOB_RUN, TRAINING, VALIDATION


def options(clock: ManualClock) -> dict[str, object]:
    return {
        "clock": clock,
        "training_seconds": TRAINING,
        "validation_seconds": VALIDATION,
        "job_queue_seconds": JOB_QUEUE,
        "job_run_seconds": JOB_RUN,
        "max_output_side": 128,
    }


@pytest.fixture
def clock() -> ManualClock:
    """The test's clock, at 0 until the test moves it."""
    return ManualClock()


@pytest.fixture
async def emu(clock: ManualClock) -> AsyncIterator[PhotaEmulator]:
    """An emulator served by the test's own loop, living by the test's manual clock."""
    async with PhotaEmulator(**options(clock)) as emulator:  # type: ignore[arg-type]
        yield emulator


@pytest.fixture
def threaded_emu(clock: ManualClock) -> Iterator[PhotaEmulator]:
    """An emulator on its own thread and loop, living by the test's manual clock."""
    with PhotaEmulator(**options(clock)) as emulator:  # type: ignore[arg-type]
        yield emulator
