"""Shared fixtures: a running emulator on port 0, throwaway loopback servers, small real images."""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

import phota_async
from phota_async.testing import PhotaEmulator
from phota_async.testing._images import sample_photo


def jpeg_bytes(seed: int = 1, size: tuple[int, int] = (96, 96)) -> bytes:
    """A real JPEG of a synthetic portrait."""
    buf = io.BytesIO()
    sample_photo(seed, size).save(buf, format="JPEG")
    return buf.getvalue()


def png_bytes(
    colour: tuple[int, int, int] = (90, 120, 200), size: tuple[int, int] = (64, 48)
) -> bytes:
    """A real PNG of one flat colour."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decode(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@contextlib.asynccontextmanager
async def local_server(app: web.Application, **runner: float) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yield its origin; shut it down afterwards."""
    app_runner = web.AppRunner(app, **runner)
    await app_runner.setup()
    try:
        await web.TCPSite(app_runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{app_runner.addresses[0][1]}"
    finally:
        await app_runner.cleanup()


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
    phota_async.set_testing(True)
    yield
    phota_async.set_testing(False)
