"""Helpers shared by the emulator contract tests: training sets, polling, moving the clock."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp

from phota_async.testing import ManualClock, PhotaEmulator
from tests.conftest import jpeg_bytes, png_bytes

P = "/v1/phota"
# Clock seconds of the contract tests' emulator (real service: about 20 minutes of training).
TRAINING = 20 * 60.0
VALIDATION = 30.0
JOB_QUEUE = 5.0
JOB_RUN = 40.0


def training_urls(emu: PhotaEmulator, count: int, *, flat: bool = False) -> list[str]:
    """Store ``count`` training photos in the emulator's file store and return their URLs."""
    return [
        emu.store_file(png_bytes((40, 40, 40)) if flat else jpeg_bytes(i), "image/jpeg")
        for i in range(count)
    ]


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until ``condition()`` holds: for work the clock does not pace (decoding
    photos, rendering, sockets). The waiting itself asserts nothing."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


async def status_of(http: aiohttp.ClientSession, profile_id: str) -> dict[str, object]:
    async with http.get(f"{P}/profiles/{profile_id}/status") as resp:
        return dict(await resp.json())


async def wait_for_status(
    http: aiohttp.ClientSession, profile_id: str, wanted: set[str]
) -> dict[str, object]:
    """Poll a profile until its status is in ``wanted`` (bounded to a few seconds)."""
    for _ in range(400):
        body = await status_of(http, profile_id)
        if body["status"] in wanted:
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"profile never reached {wanted}")


async def create(http: aiohttp.ClientSession, urls: list[str], **extra: object) -> str:
    async with http.post(
        f"{P}/profiles/add", json={"image_urls": urls, "training_tier": "fast", **extra}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["profile_id"])


async def validated(http: aiohttp.ClientSession, emu: PhotaEmulator, profile_id: str) -> str:
    """Let validation's time pass; return the status once the photos have been checked."""
    manual(emu).advance(VALIDATION)
    body = await wait_for_status(http, profile_id, {"QUEUING", "IN_PROGRESS", "READY", "ERROR"})
    return str(body["status"])


async def ready_profile(http: aiohttp.ClientSession, emu: PhotaEmulator, **extra: object) -> str:
    """Create a fast-tier profile and move the clock until it is READY."""
    profile_id = await create(http, training_urls(emu, 5), **extra)
    assert await validated(http, emu, profile_id) == "QUEUING"
    manual(emu).advance(TRAINING)
    assert (await status_of(http, profile_id))["status"] == "READY"
    return profile_id


def manual(emu: PhotaEmulator) -> ManualClock:
    """The emulator's clock, which in these tests is always a ManualClock."""
    clock = emu.clock
    assert isinstance(clock, ManualClock)
    return clock
