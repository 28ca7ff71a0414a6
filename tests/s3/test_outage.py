"""A storage outage mid-upload: the store answers 503 to some PUTs; the uploads are retried and
every photo ends as exactly one object."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiobotocore.session import get_session
from aiohttp import web

from phota_async import PhotaClient
from phota_async.s3 import S3Uploader
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes, local_server


def _outage_proxy(upstream: str, failures: int) -> tuple[web.Application, list[str]]:
    """A proxy to ``upstream`` that answers 503 to the first ``failures`` PUTs, after reading
    their bodies (the bytes went over the wire: an outage mid-upload)."""
    app = web.Application()
    refused: list[str] = []

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "PUT" and len(refused) < failures:
            refused.append(request.path)
            return web.Response(status=503, text="<Error><Code>SlowDown</Code></Error>")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(
                request.method, upstream + request.path_qs, data=body, headers=headers
            ) as resp,
        ):
            data = await resp.read()
            passed = {
                k: v
                for k, v in resp.headers.items()
                if k.lower() not in {"content-length", "transfer-encoding", "connection"}
            }
            return web.Response(status=resp.status, body=data, headers=passed)

    app.router.add_route("*", "/{tail:.*}", forward)
    return app, refused


async def test_an_outage_mid_upload_is_retried_without_duplicates(
    phota: PhotaClient, emu: PhotaEmulator, s3_env: str, bucket: str, tmp_path: Path
) -> None:
    """Three PUTs refused with 503 are retried; the profile trains and the bucket holds one
    object per photo."""
    paths = []
    for i in range(5):
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(jpeg_bytes(i))
        paths.append(path)
    app, refused = _outage_proxy(s3_env, failures=3)
    async with local_server(app) as proxy, S3Uploader(bucket, endpoint_url=proxy) as s3:
        profile = await phota.profiles.create(
            paths, tier="fast", uploader=s3, wait=True, timeout=60
        )
    assert profile.is_ready
    assert len(refused) == 3
    async with get_session().create_client("s3", endpoint_url=s3_env) as client:
        listed = await client.list_objects_v2(Bucket=bucket)
    assert len(listed["Contents"]) == 5
