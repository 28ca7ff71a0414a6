"""Fixtures for the S3 uploader: a real S3 server (moto in server mode) on loopback, one per
test session, with dummy credentials, and a fresh bucket per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from phota_async import PhotaClient, PollPolicy
from phota_async.testing import PhotaEmulator

# The S3 server and bucket fixtures are shared with tests/asgi.
from tests.s3.fixtures import bucket, s3_env, s3_server

__all__ = ["bucket", "s3_env", "s3_server"]


@pytest.fixture
async def emu() -> AsyncIterator[PhotaEmulator]:
    """An emulator with quick training, which downloads the photos from their URLs."""
    async with PhotaEmulator(
        training_seconds=0.3, validation_seconds=0.02, max_output_side=128
    ) as emulator:
        yield emulator


@pytest.fixture
async def phota(emu: PhotaEmulator) -> AsyncIterator[PhotaClient]:
    """A client talking to the test's emulator, polling a hundred times faster than the
    defaults (training there takes 0.3 s)."""
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, poll=PollPolicy().scaled(0.01)
    ) as client:
        yield client
