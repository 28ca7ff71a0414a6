"""Contract: the emulator's file store for training photos."""

from __future__ import annotations

import aiohttp

from phota_async.testing import PhotaEmulator
from tests.conftest import jpeg_bytes


async def test_upload_url_then_public_get(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """An upload URL accepts one PUT; the public URL then serves the bytes without a key."""
    async with http.post("/_emulator/uploads") as resp:
        grant = await resp.json()
    photo = jpeg_bytes()
    async with aiohttp.ClientSession() as anon:
        async with anon.put(
            grant["upload_url"], data=photo, headers={"Content-Type": "image/jpeg"}
        ) as put:
            assert put.status == 201
        async with anon.get(grant["url"]) as got:
            assert (await got.read(), got.content_type) == (photo, "image/jpeg")
        async with anon.put(grant["upload_url"], data=b"again") as reused:
            assert reused.status == 403


async def test_upload_grant_needs_the_key(anon: aiohttp.ClientSession) -> None:
    """Asking for an upload URL without the key answers 401."""
    async with anon.post("/_emulator/uploads") as resp:
        assert resp.status == 401


async def test_put_with_forged_token_is_refused(http: aiohttp.ClientSession) -> None:
    """A PUT whose token does not match is refused with 403."""
    async with http.post("/_emulator/uploads") as resp:
        grant = await resp.json()
    forged = grant["upload_url"].split("?token=")[0] + "?token=forged"
    async with http.put(forged, data=b"x") as resp:
        assert resp.status == 403


async def test_missing_file_is_404(anon: aiohttp.ClientSession) -> None:
    """An unknown file answers 404."""
    async with anon.get("/_emulator/files/nothing") as resp:
        assert resp.status == 404
