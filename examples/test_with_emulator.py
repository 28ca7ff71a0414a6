"""How to test your own code against the Phota emulator with pytest and pytest-asyncio.

Needs: ``pip install 'phota-async[emulator]' pytest pytest-asyncio`` (pytest-asyncio >= 0.23).
Nothing to configure: this file works in pytest-asyncio's default *strict* mode (async fixtures
are declared with ``@pytest_asyncio.fixture`` and async tests carry ``@pytest.mark.asyncio``),
and also under ``asyncio_mode = "auto"``. (If your pytest configuration turns warnings into
errors, recent pytest-asyncio also wants ``asyncio_default_fixture_loop_scope = "function"``
there: it warns when that option is unset.)

Installing phota_async registers the ``phota_emulator`` fixture: a running local Phota API per
test, on its own thread, stopped afterwards. Point your client at it and check what the API saw
and charged. ``@pytest.mark.phota_emulator(clock="manual")`` gives the emulator a clock that
moves only when the test calls ``phota_emulator.clock.advance(seconds)``, so a 20-minute
training or a job's run time costs no real waiting.

    pytest test_with_emulator.py
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from PIL import Image

from phota_async import PhotaClient, RetryPolicy
from phota_async.errors import OutcomeUnknownError
from phota_async.testing import ManualClock, PhotaEmulator


async def brighten_all(phota: PhotaClient, photos: list[bytes]) -> list[bytes]:
    """The code under test: brighten photos, one edit each."""
    results = [await phota.edit("make it brighter", images=[photo]) for photo in photos]
    return [await result.read() for result in results]


def sample_photo() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 60, 40)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest_asyncio.fixture
async def phota(phota_emulator: PhotaEmulator) -> AsyncIterator[PhotaClient]:
    """A client on the test's emulator that retries without waiting between attempts."""
    no_waits = RetryPolicy(initial_backoff=0, max_backoff=0, max_retry_after=0)
    async with PhotaClient(
        api_key=phota_emulator.api_key, base_url=phota_emulator.base_url, retry=no_waits
    ) as client:
        yield client


@pytest.mark.asyncio
async def test_each_photo_is_edited_and_charged_once(
    phota: PhotaClient, phota_emulator: PhotaEmulator
) -> None:
    """Two photos give two JPEGs and exactly two charges."""
    outputs = await brighten_all(phota, [sample_photo(), sample_photo()])
    assert all(out[:3] == b"\xff\xd8\xff" for out in outputs)
    assert len(phota_emulator.charges()) == 2


@pytest.mark.asyncio
async def test_rate_limits_are_retried(phota: PhotaClient, phota_emulator: PhotaEmulator) -> None:
    """A 429 from the API is retried without charging twice."""
    phota_emulator.add_fault("/edit", status=429, retry_after=1)
    await brighten_all(phota, [sample_photo()])
    assert len(phota_emulator.charges()) == 1


@pytest.mark.asyncio
async def test_lost_answer_is_reported_not_repaid(
    phota: PhotaClient, phota_emulator: PhotaEmulator
) -> None:
    """When the answer to a paid call is lost, the code sees OutcomeUnknownError, not a resend."""
    phota_emulator.add_fault("/edit", drop="after")
    with pytest.raises(OutcomeUnknownError):
        await brighten_all(phota, [sample_photo()])
    assert len(phota_emulator.charges()) == 1


@pytest.mark.asyncio
@pytest.mark.phota_emulator(clock="manual")
async def test_a_long_job_finishes_when_the_clock_says_so(
    phota: PhotaClient, phota_emulator: PhotaEmulator
) -> None:
    """A job is RUNNING until the emulator's clock has passed its run time, then succeeds."""
    clock = phota_emulator.clock
    assert isinstance(clock, ManualClock)
    job = await phota.jobs.submit_enhance(sample_photo())
    clock.advance(60)  # the emulator's default queue and run times are well under a minute
    result = await job.wait(timeout=30)
    assert (await result.read())[:3] == b"\xff\xd8\xff"
    assert len(phota_emulator.charges()) == 1
