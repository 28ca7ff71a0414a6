"""S3Uploader against a real S3 server: training from local photos, content-addressed keys,
and a missing bucket refused before any paid call."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import BinaryIO

import aiohttp
import pytest
from aiobotocore.session import get_session

from phota_async import PhotaClient
from phota_async import s3 as s3_module
from phota_async.errors import InvalidRequestError
from phota_async.s3 import S3Uploader, StorageError
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes


def _photos(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"photo-{i}.jpg"
        path.write_bytes(jpeg_bytes(i))
        paths.append(path)
    return paths


async def _keys(endpoint: str, bucket: str) -> list[str]:
    async with get_session().create_client("s3", endpoint_url=endpoint) as s3:
        listed = await s3.list_objects_v2(Bucket=bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


async def test_local_photos_train_a_profile_through_s3(
    phota: PhotaClient, emu: PhotaEmulator, s3_env: str, bucket: str, tmp_path: Path
) -> None:
    """Photos on disk go to the bucket, the emulator fetches them by presigned URL, and the
    profile ends READY."""
    paths = _photos(tmp_path, 5)
    async with S3Uploader(bucket, "train", endpoint_url=s3_env) as s3:
        profile = await phota.profiles.create(
            paths, tier="fast", uploader=s3, wait=True, timeout=30
        )
    assert profile.is_ready
    expected = sorted(f"train/{hashlib.sha256(p.read_bytes()).hexdigest()}.jpg" for p in paths)
    assert await _keys(s3_env, bucket) == expected
    assert sorted(s3.uploaded_keys) == expected


async def test_presigned_urls_serve_the_photo_without_credentials(
    s3_env: str, bucket: str, tmp_path: Path
) -> None:
    """The URL handed to Phota answers a plain GET with the photo's bytes."""
    (path,) = _photos(tmp_path, 1)
    url = await S3Uploader(bucket, endpoint_url=s3_env)(path, path.name, "image/jpeg")
    assert "X-Amz-Signature=" in url
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == path.read_bytes()


async def test_a_retried_upload_stores_one_object(s3_env: str, bucket: str, tmp_path: Path) -> None:
    """Uploading the same photo again (a retry, or another name for it) leaves one object."""
    (path,) = _photos(tmp_path, 1)
    copy = tmp_path / "copy.JPEG"
    copy.write_bytes(path.read_bytes())
    async with S3Uploader(bucket, endpoint_url=s3_env) as s3:
        first = await s3(path, path.name, "image/jpeg")
        again = await s3(path, path.name, "image/jpeg")
        other = await s3(copy, copy.name, "image/jpeg")
        raw = await s3(path.read_bytes(), "upload", "image/jpeg")
    assert {u.split("?")[0] for u in (first, again, other, raw)} == {first.split("?")[0]}
    assert len(await _keys(s3_env, bucket)) == 1


async def test_a_missing_bucket_is_refused_before_training_is_requested(
    phota: PhotaClient, emu: PhotaEmulator, s3_env: str, tmp_path: Path
) -> None:
    """A bucket that does not exist fails the upload step with a clear error, and Phota is
    never asked to train (nothing is paid)."""
    paths = _photos(tmp_path, 5)
    uploader = S3Uploader("no-such-bucket-here", endpoint_url=s3_env)
    with pytest.raises(StorageError, match="does not exist") as caught:
        await phota.profiles.create(paths, tier="fast", uploader=uploader)
    assert caught.value.code in {"404", "NoSuchBucket"}
    assert [r for r in emu.requests if r["method"] == "POST"] == []


async def test_cleanup_deletes_the_photos_once_the_profile_is_ready(
    phota: PhotaClient, emu: PhotaEmulator, s3_env: str, bucket: str, tmp_path: Path
) -> None:
    """With cleanup=True, finish() refuses a profile still training, then deletes every photo
    once it is READY."""
    async with S3Uploader(bucket, endpoint_url=s3_env, cleanup=True) as s3:
        created = await phota.profiles.create(_photos(tmp_path, 5), tier="fast", uploader=s3)
        with pytest.raises(InvalidRequestError, match="VALIDATING"):
            await s3.finish(created)
        assert len(await _keys(s3_env, bucket)) == 5
        ready = await phota.profiles.wait_ready(created.id, timeout=30)
        assert await s3.finish(ready) == 5
    assert await _keys(s3_env, bucket) == []


async def test_without_cleanup_finish_keeps_the_photos(
    phota: PhotaClient, emu: PhotaEmulator, s3_env: str, bucket: str, tmp_path: Path
) -> None:
    """With cleanup=False (the default), finish() deletes nothing."""
    async with S3Uploader(bucket, endpoint_url=s3_env) as s3:
        profile = await phota.profiles.create(
            _photos(tmp_path, 5), tier="fast", uploader=s3, wait=True, timeout=30
        )
        assert await s3.finish(profile) == 0
    assert len(await _keys(s3_env, bucket)) == 5


def test_importing_the_module_does_not_import_aiobotocore() -> None:
    """phota_async and phota_async.s3 import without loading aiobotocore (it loads on first
    use)."""
    script = (
        "import sys, phota_async, phota_async.s3\n"
        "assert not [m for m in sys.modules if m.startswith(('aiobotocore', 'botocore'))]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_the_storage_module_names_the_same_uploader() -> None:
    """phota_async.storage.S3Uploader is phota_async.s3.S3Uploader."""
    from phota_async import s3, storage

    assert storage.S3Uploader is s3.S3Uploader
    assert storage.StorageError is s3.StorageError


async def test_a_cancelled_upload_closes_the_client(
    s3_env: str, bucket: str, tmp_path: Path
) -> None:
    """Cancelling an upload in flight (Ctrl-C) leaves no client open behind it."""
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg_bytes(1) + bytes(8 << 20))
    uploader = S3Uploader(bucket, endpoint_url=s3_env)
    task = asyncio.create_task(uploader(path, path.name, "image/jpeg"))
    while uploader._client is None and not task.done():
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert uploader._client is None


async def test_the_first_client_parses_no_model_on_the_event_loop(s3_env: str, bucket: str) -> None:
    """Opening the first client of a process reads S3's JSON models in a thread, not on the
    event loop's thread."""
    script = (
        "import asyncio, sys, threading\n"
        "import botocore.loaders\n"
        "from phota_async.s3 import S3Uploader\n"
        "original = botocore.loaders.JSONFileLoader.load_file\n"
        "on_loop = []\n"
        "def load_file(self, *args, **kwargs):\n"
        "    if threading.current_thread() is threading.main_thread():\n"
        "        on_loop.append(args)\n"
        "    return original(self, *args, **kwargs)\n"
        "botocore.loaders.JSONFileLoader.load_file = load_file\n"
        "asyncio.run(S3Uploader(sys.argv[2], endpoint_url=sys.argv[1]).check())\n"
        "assert not on_loop, on_loop\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, s3_env, bucket, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def test_a_photo_changed_while_uploading_leaves_no_mismatched_object(
    s3_env: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file written to between its hashing and its upload fails with OSError, and no object
    holds bytes other than its key's digest."""
    (path,) = _photos(tmp_path, 1)
    hash_handle = s3_module._hash_handle

    def hash_then_change(handle: BinaryIO) -> tuple[bytes, int]:
        found = hash_handle(handle)
        with path.open("r+b") as same_file:
            same_file.write(jpeg_bytes(9))
        return found

    monkeypatch.setattr(s3_module, "_hash_handle", hash_then_change)
    with pytest.raises(OSError, match="changed while it was being uploaded"):
        await S3Uploader(bucket, endpoint_url=s3_env)(path, path.name, "image/jpeg")
    assert await _keys(s3_env, bucket) == []


async def test_a_photo_deleted_after_hashing_uploads_the_hashed_bytes(
    s3_env: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file deleted between its hashing and its upload is still stored whole, under the
    digest of its bytes."""
    (path,) = _photos(tmp_path, 1)
    data = path.read_bytes()
    hash_handle = s3_module._hash_handle

    def hash_then_delete(handle: BinaryIO) -> tuple[bytes, int]:
        found = hash_handle(handle)
        path.unlink()
        return found

    monkeypatch.setattr(s3_module, "_hash_handle", hash_then_delete)
    url = await S3Uploader(bucket, endpoint_url=s3_env)(path, path.name, "image/jpeg")
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert await resp.read() == data
    assert await _keys(s3_env, bucket) == [f"{hashlib.sha256(data).hexdigest()}.jpg"]


@pytest.mark.parametrize("prefix", ["../photos", "a/./b", "a/..", "tab\there", "line\n"])
def test_a_prefix_that_urls_would_mangle_is_refused(prefix: str) -> None:
    """A prefix with a '.' or '..' segment or a control character is refused when the
    uploader is made, before anything is uploaded."""
    with pytest.raises(InvalidRequestError, match="prefix"):
        S3Uploader("photos", prefix)


@pytest.mark.parametrize("prefix", ["a b/ü/", "/lead", "x...y/", "..hidden/"])
def test_a_prefix_with_odd_but_safe_characters_is_accepted(prefix: str) -> None:
    """Spaces, non-ASCII letters, a leading '/' and dots inside a name are kept as given."""
    assert S3Uploader("photos", prefix).prefix.rstrip("/") == prefix.strip("/")
