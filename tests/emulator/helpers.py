"""Helpers shared by the emulator contract tests: training sets and profile polling."""

from __future__ import annotations

import asyncio

import aiohttp

from phota_async.testing import PhotaEmulator
from tests.conftest import jpeg_bytes, png_bytes

P = "/v1/phota"


def training_urls(emu: PhotaEmulator, count: int, *, flat: bool = False) -> list[str]:
    """Store ``count`` training photos in the emulator's file store and return their URLs."""
    return [
        emu.store_file(png_bytes((40, 40, 40)) if flat else jpeg_bytes(i), "image/jpeg")
        for i in range(count)
    ]


async def wait_for_status(
    http: aiohttp.ClientSession, profile_id: str, wanted: set[str], seen: list[str] | None = None
) -> dict[str, object]:
    """Poll a profile until its status is in ``wanted`` (bounded to a few seconds)."""
    for _ in range(400):
        async with http.get(f"{P}/profiles/{profile_id}/status") as resp:
            body = await resp.json()
        if seen is not None and (not seen or seen[-1] != body["status"]):
            seen.append(body["status"])
        if body["status"] in wanted:
            return dict(body)
        await asyncio.sleep(0.01)
    raise AssertionError(f"profile never reached {wanted}")


async def create(http: aiohttp.ClientSession, urls: list[str], **extra: object) -> str:
    async with http.post(
        f"{P}/profiles/add", json={"image_urls": urls, "training_tier": "fast", **extra}
    ) as resp:
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["profile_id"])


async def ready_profile(http: aiohttp.ClientSession, emu: PhotaEmulator, **extra: object) -> str:
    """Create a fast-tier profile and wait until it is READY."""
    profile_id = await create(http, training_urls(emu, 5), **extra)
    await wait_for_status(http, profile_id, {"READY"})
    return profile_id
