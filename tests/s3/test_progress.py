"""S3Uploader's progress reports, and PUTs signed without hashing the photo again."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from phota_async.s3 import S3Uploader, UploadProgress
from tests.helpers import jpeg_bytes, local_server
from tests.s3.gateway import Gateway


async def test_on_progress_counts_photos_bytes_and_skips(
    s3_env: str, bucket: str, tmp_path: Path
) -> None:
    """Each photo done is reported with the running totals; one already stored counts as
    skipped."""
    paths = []
    for i in range(3):
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(jpeg_bytes(i))
        paths.append(path)
    seen: list[UploadProgress] = []
    async with S3Uploader(bucket, endpoint_url=s3_env, on_progress=seen.append) as s3:
        for path in [*paths, paths[0]]:
            await s3(path, path.name, "image/jpeg")
    sizes = [p.stat().st_size for p in paths]
    assert [(p.photos, p.bytes, p.skipped) for p in seen] == [
        (1, sizes[0], 0),
        (2, sizes[0] + sizes[1], 0),
        (3, sum(sizes), 0),
        (4, sum(sizes) + sizes[0], 1),
    ]
    assert s3.progress == seen[-1]
    assert all(p.seconds > 0 for p in seen)


async def test_a_put_is_not_hashed_again_to_be_signed(
    s3_env: str, bucket: str, tmp_path: Path
) -> None:
    """Over plain http a PUT is signed as UNSIGNED-PAYLOAD (botocore does not read and hash the
    file on the event loop) and carries the photo's digest in x-amz-checksum-sha256."""
    path = tmp_path / "me.jpg"
    path.write_bytes(jpeg_bytes(7))
    gate = Gateway(s3_env)
    async with (
        local_server(gate.app()) as endpoint,
        S3Uploader(bucket, endpoint_url=endpoint) as s3,
    ):
        await s3(path, path.name, "image/jpeg")
    digest = hashlib.sha256(path.read_bytes()).digest()
    assert s3.uploaded_keys == (f"{digest.hex()}.jpg",)
    assert [h["X-Amz-Content-SHA256"] for h in gate.put_headers] == ["UNSIGNED-PAYLOAD"]
    assert [h["x-amz-checksum-sha256"] for h in gate.put_headers] == [
        base64.b64encode(digest).decode()
    ]
