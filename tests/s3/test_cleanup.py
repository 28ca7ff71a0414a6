"""S3Uploader cleanup against a real S3 server: a photo is deleted only when nothing of its
uploader still needs it, and never one another uploader stored."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiobotocore.session import get_session
from aiohttp import web

from phota_async import PhotaClient
from phota_async.errors import APIError, InvalidRequestError, OutcomeUnknownError
from phota_async.s3 import S3Uploader
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes, local_server


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Eight distinct training photos on disk."""
    paths = []
    for i in range(8):
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(jpeg_bytes(i))
        paths.append(path)
    return paths


async def _keys(endpoint: str, bucket: str) -> set[str]:
    async with get_session().create_client("s3", endpoint_url=endpoint) as s3:
        listed = await s3.list_objects_v2(Bucket=bucket)
    return {o["Key"] for o in listed.get("Contents", [])}


def _key(s3: S3Uploader, path: Path) -> str:
    return f"{s3.key_prefix}{hashlib.sha256(path.read_bytes()).hexdigest()}.jpg"


def _adds(emu: PhotaEmulator) -> list[object]:
    return [r for r in emu.requests if r["method"] == "POST" and "profiles/add" in r["path"]]


async def test_finishing_a_profile_keeps_the_photos_another_profile_trains_from(
    phota: PhotaClient, s3_env: str, bucket: str, photos: list[Path]
) -> None:
    """Two profiles of one uploader share two photos: finishing the first deletes only its
    own three, and the second's five stay until it is finished in turn."""
    async with S3Uploader(bucket, "t", endpoint_url=s3_env, cleanup=True) as s3:
        first = await phota.profiles.create(photos[:5], tier="fast", uploader=s3)
        second = await phota.profiles.create(photos[3:], tier="fast", uploader=s3)
        second_keys = {_key(s3, p) for p in photos[3:]}
        ready = await phota.profiles.wait_ready(first.id, timeout=30)
        assert await s3.finish(ready) == 3
        assert await _keys(s3_env, bucket) == second_keys
        done = await phota.profiles.wait_ready(second.id, timeout=30)
        assert await s3.finish(done) == 5
    assert await _keys(s3_env, bucket) == set()


async def test_another_uploaders_cleanup_never_deletes_this_uploaders_photos(
    phota: PhotaClient, s3_env: str, bucket: str, photos: list[Path]
) -> None:
    """Two cleanup uploaders given the same photos store them under segments of their own, so
    finishing the first one's profile leaves the second one's photos in place."""
    async with (
        S3Uploader(bucket, "t", endpoint_url=s3_env, cleanup=True) as one,
        S3Uploader(bucket, "t", endpoint_url=s3_env, cleanup=True) as two,
    ):
        first = await phota.profiles.create(photos[:5], tier="fast", uploader=one, wait=True)
        await phota.profiles.create(photos[:5], tier="fast", uploader=two)
        assert two.progress.skipped == 0
        assert all(k.startswith(f"t/{two.session_id}/") for k in two.uploaded_keys)
        assert await one.finish(first) == 5
        assert await _keys(s3_env, bucket) == set(two.uploaded_keys)


async def test_without_cleanup_keys_are_shared_across_uploaders(
    s3_env: str, bucket: str, photos: list[Path]
) -> None:
    """With cleanup=False a second uploader finds the first one's objects and sends nothing."""
    for _ in range(2):
        async with S3Uploader(bucket, "t", endpoint_url=s3_env) as s3:
            for path in photos[:2]:
                await s3(path, path.name, "image/jpeg")
    assert s3.progress.skipped == 2
    assert len(await _keys(s3_env, bucket)) == 2


async def test_a_refused_create_leaves_its_photos_to_discard(
    phota: PhotaClient, emu: PhotaEmulator, s3_env: str, bucket: str, photos: list[Path]
) -> None:
    """A create refused with 402 after its uploads made no profile: discard() deletes its
    photos."""
    emu.add_fault("/profiles/add", status=402, body={"code": "PAYMENT_REQUIRED", "detail": "no"})
    async with S3Uploader(bucket, endpoint_url=s3_env, cleanup=True) as s3:
        with pytest.raises(APIError) as refused:
            await phota.profiles.create(photos[:5], tier="fast", uploader=s3)
        assert refused.value.status == 402
        assert len(await _keys(s3_env, bucket)) == 5
        assert await s3.discard() == 5
        assert await _keys(s3_env, bucket) == set()


async def test_leaving_the_block_deletes_the_photos_of_a_create_cut_short(
    phota: PhotaClient, emu: PhotaEmulator, s3_env: str, bucket: str, photos: list[Path]
) -> None:
    """A create cancelled (Ctrl-C) after some photos were stored requests no training, and
    leaving the uploader's block deletes what it stored."""
    stored = asyncio.Event()
    async with S3Uploader(
        bucket, endpoint_url=s3_env, cleanup=True, concurrency=1, on_progress=lambda p: stored.set()
    ) as s3:
        task = asyncio.create_task(
            phota.profiles.create(photos[:5], tier="fast", uploader=s3, upload_concurrency=1)
        )
        await stored.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _keys(s3_env, bucket)
    assert await _keys(s3_env, bucket) == set()
    assert _adds(emu) == []


async def test_a_create_whose_answer_was_lost_keeps_its_photos(
    phota: PhotaClient, emu: PhotaEmulator, s3_env: str, bucket: str, photos: list[Path]
) -> None:
    """A create whose answer was lost may have made a profile that trains from the photos:
    leaving the block keeps them."""
    emu.add_fault("/profiles/add", drop="after")
    async with S3Uploader(bucket, endpoint_url=s3_env, cleanup=True) as s3:
        with pytest.raises(OutcomeUnknownError):
            await phota.profiles.create(photos[:5], tier="fast", tag="mine", uploader=s3)
        assert await s3.discard() == 0
    assert len(await _keys(s3_env, bucket)) == 5


async def test_the_same_photo_twice_in_one_create_is_refused(
    phota: PhotaClient, emu: PhotaEmulator, s3_env: str, bucket: str, photos: list[Path]
) -> None:
    """A copy of a photo in the same training set is refused naming both files, before any
    training is requested; the block's exit deletes what was stored."""
    copy = photos[0].with_name("copy of p0.jpg")
    shutil.copyfile(photos[0], copy)
    async with S3Uploader(bucket, endpoint_url=s3_env, cleanup=True) as s3:
        with pytest.raises(InvalidRequestError, match=r"'copy of p0.jpg' is the same photo as"):
            await phota.profiles.create(
                [*photos[:5], copy], tier="fast", uploader=s3, upload_concurrency=1
            )
    assert _adds(emu) == []
    assert await _keys(s3_env, bucket) == set()


async def test_photos_uploaded_outside_a_create_survive_discard(
    s3_env: str, bucket: str, photos: list[Path]
) -> None:
    """A photo uploaded by calling the uploader directly belongs to no create call: discard()
    and the block's exit keep it."""
    async with S3Uploader(bucket, endpoint_url=s3_env, cleanup=True) as s3:
        await s3(photos[0], photos[0].name, "image/jpeg")
        assert await s3.discard() == 0
    assert len(await _keys(s3_env, bucket)) == 1


@pytest.fixture
async def held_deletes(s3_env: str) -> AsyncIterator[tuple[str, asyncio.Event, asyncio.Event]]:
    """A proxy to the S3 server holding each DeleteObjects until ``release`` is set; yields its
    endpoint, an event set when a delete arrives, and ``release``."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def forward(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "POST" and "delete" in request.query:
            arrived.set()
            await release.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(
                request.method, s3_env + request.path_qs, data=body, headers=headers
            ) as resp,
        ):
            data = await resp.read()
            skip = {"content-length", "transfer-encoding", "connection"}
            passed = {k: v for k, v in resp.headers.items() if k.lower() not in skip}
            return web.Response(status=resp.status, body=data, headers=passed)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    async with local_server(app) as endpoint:
        yield endpoint, arrived, release


async def test_a_photo_claimed_while_its_deletion_runs_is_stored_again(
    phota: PhotaClient,
    bucket: str,
    photos: list[Path],
    held_deletes: tuple[str, asyncio.Event, asyncio.Event],
) -> None:
    """A create using photos that a finish is deleting at that moment waits for the deletion,
    then stores them again: the new profile's URLs all point at objects."""
    endpoint, arrived, release = held_deletes
    async with S3Uploader(bucket, endpoint_url=endpoint, cleanup=True) as s3:
        first = await phota.profiles.create(photos[:5], tier="fast", uploader=s3, wait=True)
        finishing = asyncio.create_task(s3.finish(first))
        await arrived.wait()
        creating = asyncio.create_task(phota.profiles.create(photos[:5], tier="fast", uploader=s3))
        for _ in range(50):  # let the create hash its photos and reach the held keys
            await asyncio.sleep(0.01)
        assert not creating.done()
        release.set()
        assert await finishing == 5
        await creating
        keys = set(s3.uploaded_keys)
        assert len(keys) == 5
        assert await _keys(endpoint, bucket) == keys
