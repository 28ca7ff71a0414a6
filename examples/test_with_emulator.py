"""How to test your own code against the Phota emulator with pytest-asyncio.

Installing phota_async registers the ``phota_emulator`` fixture: a running local Phota API per
test, stopped afterwards. Point your client at it and check what the API saw and charged.

    pytest examples/test_with_emulator.py
"""

from __future__ import annotations

import pytest

import phota_async
from phota_async import PhotaClient
from phota_async.errors import OutcomeUnknownError
from phota_async.testing import PhotaEmulator


async def brighten_all(phota: PhotaClient, photos: list[bytes]) -> list[bytes]:
    """The code under test: brighten photos, one edit each."""
    results = [await phota.edit("make it brighter", images=[photo]) for photo in photos]
    return [await result.read() for result in results]


def sample_photo() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (90, 60, 40)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
async def phota(phota_emulator: PhotaEmulator):  # type: ignore[no-untyped-def]
    """A client on the test's emulator, with retry waits switched off."""
    phota_async.set_testing(True)
    async with PhotaClient(
        api_key=phota_emulator.api_key, base_url=phota_emulator.base_url
    ) as client:
        yield client
    phota_async.set_testing(False)


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
