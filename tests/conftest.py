"""Shared fixtures: a running emulator on port 0, plain sessions, retry waits switched off.

Helper functions (images, loopback servers, virtual time) live in ``tests/helpers.py``.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

import phota_async
from phota_async.testing import PhotaEmulator

# The helpers moved to tests/helpers.py; existing ``from tests.conftest import ...`` keep working.
from tests.helpers import b64, decode, jpeg_bytes, local_server, png_bytes

__all__ = ["b64", "decode", "jpeg_bytes", "local_server", "png_bytes"]


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C works in the processes tests start, however the suite was launched.

    A non-interactive shell starts a background job (``.ci/run &``) with SIGINT ignored, and
    every process inherits that: the tests that stop a child with SIGINT (``phota emulator``, a
    batch's first Ctrl-C) would wait on a child that cannot hear it. A Python handler is reset
    to the default on exec, so children get the default disposition again.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
async def emu() -> AsyncIterator[PhotaEmulator]:
    """An emulator served by the test's own loop, with fast clocks and small outputs."""
    async with PhotaEmulator(
        training_seconds=0.3, validation_seconds=0.02, max_output_side=128
    ) as emulator:
        yield emulator


@pytest.fixture
def threaded_emu() -> Iterator[PhotaEmulator]:
    """An emulator on its own thread and loop, so the test's loop holds only client tasks."""
    with PhotaEmulator(
        training_seconds=0.3, validation_seconds=0.02, max_output_side=128
    ) as emulator:
        yield emulator


@pytest.fixture
async def http(emu: PhotaEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session that sends the emulator's API key."""
    async with aiohttp.ClientSession(
        base_url=emu.origin, headers={"X-API-Key": emu.api_key}
    ) as session:
        yield session


@pytest.fixture
async def anon(emu: PhotaEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session with no API key."""
    async with aiohttp.ClientSession(base_url=emu.origin) as session:
        yield session


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """Retries still happen, without their waits (for suites that do not time them)."""
    with phota_async.set_testing():
        yield
