"""The session seam: what transports declare about sent requests, and uploaders that put
through the client that uses them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web

from phota_async import PhotaClient, PresignedPutUploader
from phota_async._protocol import Request, Response
from phota_async.errors import OutcomeUnknownError, PhotaError, ReadTimeoutError
from phota_async.testing import PhotaEmulator
from tests.conftest import jpeg_bytes, local_server


class SilentTransport:
    """A third-party transport that never answers and says nothing about ``request.sent``."""

    async def send(self, request: Request) -> Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    async def download(self, request: Request, dest: Path) -> Response:
        return await self.send(request)  # pragma: no cover

    async def aclose(self) -> None:
        pass


class MarkingSilentTransport(SilentTransport):
    """The same, declaring that it marks a request as sent once it has a connection (and it
    never gets one)."""

    marks_sent = True


async def test_a_third_party_transport_counts_a_paid_call_as_possibly_sent() -> None:
    """With a transport that does not declare marks_sent, a paid call cut off by its deadline
    may have been processed: OutcomeUnknownError, not a plain timeout."""
    transport = SilentTransport()
    async with PhotaClient(api_key="k", base_url="https://api.test", transport=transport) as p:
        with pytest.raises(OutcomeUnknownError, match="may have been processed"):
            await p.generate("a lighthouse", timeout=0.05)


async def test_a_transport_that_marks_sent_reports_an_unsent_call_as_unsent() -> None:
    """A transport declaring marks_sent that never marked the request: the cut-off call was
    certainly not sent, so it is a ReadTimeoutError saying nothing was sent."""
    transport = MarkingSilentTransport()
    async with PhotaClient(api_key="k", base_url="https://api.test", transport=transport) as p:
        with pytest.raises(ReadTimeoutError, match="nothing was sent"):
            await p.generate("a lighthouse", timeout=0.05)


async def test_presigned_uploader_puts_through_the_client_that_creates_the_profile(
    emu: PhotaEmulator,
) -> None:
    """PresignedPutUploader(presign), given no client, PUTs each photo to its presigned URL
    through the client whose profiles.create uses it, and the profile trains from them."""
    store: dict[str, bytes] = {}

    async def put(request: web.Request) -> web.Response:
        store[request.match_info["name"]] = await request.read()
        return web.Response(status=200)

    async def get(request: web.Request) -> web.Response:
        return web.Response(body=store[request.match_info["name"]], content_type="image/jpeg")

    app = web.Application()
    app.router.add_put("/bucket/{name}", put)
    app.router.add_get("/bucket/{name}", get)
    photos = [jpeg_bytes(seed=1) for _ in range(5)]
    async with local_server(app) as origin:

        async def presign(filename: str, content_type: str) -> tuple[str, str]:
            url = f"{origin}/bucket/{filename}"
            return url, url

        async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
            profile = await phota.profiles.create(
                photos, tier="fast", uploader=PresignedPutUploader(presign)
            )
    assert sorted(store) == [f"photo-{i}.jpeg" for i in range(5)]
    assert all(body == photos[0] for body in store.values())
    assert profile.id


async def test_presigned_uploader_called_on_its_own_says_where_it_belongs() -> None:
    """Called outside profiles.create, a PresignedPutUploader has no client to put through and
    says so before presigning anything."""
    presigned: list[str] = []

    async def presign(filename: str, content_type: str) -> tuple[str, str]:
        presigned.append(filename)  # pragma: no cover
        return "", ""  # pragma: no cover

    with pytest.raises(PhotaError, match=r"profiles\.create\(\.\.\., uploader=\.\.\.\)"):
        await PresignedPutUploader(presign)(b"\xff\xd8\xff", "a.jpg", "image/jpeg")
    assert presigned == []
