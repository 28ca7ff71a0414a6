"""What the emulator does, like the real service, when storage will not hand over a training
photo: the profile ends ERROR with a message that says why, and the SDK's error says that the
photo URLs expired or are unreachable, without ever showing a presigned query string."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from phota_async import PhotaClient
from phota_async.errors import ProfileTrainingError
from phota_async.s3 import S3Uploader
from tests.helpers import jpeg_bytes, local_server
from tests.s3.gateway import Gateway

SIGNED_PARTS = ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token")


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Five training photos on disk."""
    paths = []
    for i in range(5):
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(jpeg_bytes(i))
        paths.append(path)
    return paths


@pytest.fixture
async def gateway(s3_env: str) -> AsyncIterator[tuple[Gateway, str]]:
    """A storage gateway in front of the moto server; yields it and its endpoint URL."""
    gate = Gateway(s3_env)
    async with local_server(gate.app()) as endpoint:
        yield gate, endpoint


async def test_urls_expired_before_the_download_end_the_profile_in_error(
    phota: PhotaClient, bucket: str, photos: list[Path], gateway: tuple[Gateway, str]
) -> None:
    """URLs that expired before the emulator fetched them end the profile ERROR, and the
    SDK's error says the URLs expired."""
    gate, endpoint = gateway
    gate.ahead = 7200.0  # storage's clock two hours on: as if validation had queued that long
    async with S3Uploader(bucket, endpoint_url=endpoint, url_ttl=3600) as s3:
        with pytest.raises(ProfileTrainingError) as info:
            await phota.profiles.create(photos, tier="fast", uploader=s3, wait=True, timeout=60)
    error = info.value
    assert error.profile.status == "ERROR"
    assert error.photos_unreachable
    assert "the URL has expired" in (error.profile.message or "")
    assert "expired or are unreachable" in str(error)


async def test_a_403_from_storage_ends_the_profile_in_error(
    phota: PhotaClient, bucket: str, photos: list[Path], gateway: tuple[Gateway, str]
) -> None:
    """One photo refused with 403 AccessDenied ends the profile ERROR naming that photo, its
    bucket and key, and the refusal."""
    gate, endpoint = gateway
    async with S3Uploader(bucket, "refused/", endpoint_url=endpoint) as s3:
        urls = [await s3(p, p.name, "image/jpeg") for p in photos]
        key = s3.uploaded_keys[2]
        gate.deny.add(key)
        with pytest.raises(ProfileTrainingError) as info:
            await phota.profiles.create(urls, tier="fast", wait=True, timeout=60)
    message = info.value.profile.message or ""
    assert "image_urls.2 could not be downloaded" in message
    assert 'storage answered 403 AccessDenied "Access Denied"' in message
    assert f"/{bucket}/{key}?***" in message
    assert info.value.photos_unreachable


async def test_presigned_query_strings_reach_storage_byte_for_byte(
    phota: PhotaClient, bucket: str, photos: list[Path], gateway: tuple[Gateway, str]
) -> None:
    """The emulator sends each presigned URL exactly as signed (no re-quoting of %2F, %20
    or %2B), and the profile trains."""
    gate, endpoint = gateway
    signed: list[str] = []
    async with S3Uploader(bucket, "a b+c/ü", endpoint_url=endpoint) as s3:

        async def recording(data: bytes | Path, filename: str, content_type: str) -> str:
            url = await s3(data, filename, content_type)
            signed.append(url)
            return url

        profile = await phota.profiles.create(
            photos, tier="fast", uploader=recording, wait=True, timeout=60
        )
    assert profile.is_ready
    assert all("%2F" in url and "%20" in url and "%2B" in url for url in signed)
    sent = [url.removeprefix(endpoint) for url in signed]
    assert sorted(gate.raw_gets) == sorted(sent)


async def test_presigned_urls_never_show_in_logs_reprs_or_errors(
    phota: PhotaClient,
    bucket: str,
    photos: list[Path],
    gateway: tuple[Gateway, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With debug logging on, no log line, repr or error text holds a presigned query."""
    gate, endpoint = gateway
    gate.ahead = 7200.0
    caplog.set_level(logging.DEBUG)
    async with S3Uploader(bucket, endpoint_url=endpoint, url_ttl=3600) as s3:
        with pytest.raises(ProfileTrainingError) as info:
            await phota.profiles.create(photos, tier="fast", uploader=s3, wait=True, timeout=60)
        texts = [str(info.value), repr(info.value), repr(info.value.profile), repr(s3)]
    texts += [r.getMessage() for r in caplog.records if r.name.startswith("phota_async")]
    assert any(f"/{bucket}/" in t for t in texts)  # the bucket and key stay readable
    for text in texts:
        assert not any(part in text for part in SIGNED_PARTS), text
