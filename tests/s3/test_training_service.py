"""The training web service example (``examples/training_service.py``), end to end: photos
posted as multipart go to a real S3 server (moto), the emulator trains from their presigned
URLs, and the photos are deleted from the bucket once training has ended."""

from __future__ import annotations

import aiohttp
import pytest
from aiobotocore.session import get_session
from aiohttp.test_utils import TestClient, TestServer

from phota_async import PollPolicy
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes
from tests.test_examples import load


@pytest.fixture
def service_env(
    emu: PhotaEmulator, s3_env: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> str:
    """The service's environment: the emulator, the S3 endpoint and the test's bucket."""
    monkeypatch.setenv("PHOTA_API_KEY", emu.api_key)
    monkeypatch.setenv("PHOTA_BASE_URL", emu.base_url)
    monkeypatch.setenv("PHOTA_S3_BUCKET", bucket)
    monkeypatch.setenv("PHOTA_S3_ENDPOINT_URL", s3_env)
    return bucket


def _form(count: int) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for i in range(count):
        form.add_field("photo", jpeg_bytes(i), filename=f"me{i}.jpg", content_type="image/jpeg")
    form.add_field("tier", "fast")
    return form


async def _keys(endpoint: str, bucket: str) -> list[str]:
    async with get_session().create_client("s3", endpoint_url=endpoint) as s3:
        listed = await s3.list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


async def test_posted_photos_train_a_profile_through_s3(s3_env: str, service_env: str) -> None:
    """Five posted photos are stored in S3, the profile trains READY, and then the photos are
    deleted from the bucket."""
    module = load("training_service")
    app = module.create_app(poll=PollPolicy().scaled(0.01))
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/profiles", data=_form(5))
        assert resp.status == 202
        profile_id = (await resp.json())["profile_id"]
        assert len(await _keys(s3_env, service_env)) == 5
        assert await app[module.TRAINING][profile_id] == "READY"
        status = await (await client.get(f"/profiles/{profile_id}")).json()
        assert status["status"] == "READY"
    assert await _keys(s3_env, service_env) == []


async def test_too_few_photos_are_refused_before_anything_is_stored(
    s3_env: str, service_env: str
) -> None:
    """Two photos for the fast tier (5-10) answer 400, and nothing reaches the bucket."""
    app = load("training_service").create_app()
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/profiles", data=_form(2))
        assert resp.status == 400
    assert await _keys(s3_env, service_env) == []
