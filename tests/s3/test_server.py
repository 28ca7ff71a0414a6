"""The S3 test server itself: a real S3 endpoint on loopback."""

from __future__ import annotations

from aiobotocore.session import get_session


async def test_the_fixture_bucket_exists_on_the_loopback_server(s3_env: str, bucket: str) -> None:
    """The bucket fixture creates a bucket that the server on 127.0.0.1 lists."""
    assert s3_env.startswith("http://127.0.0.1:")
    async with get_session().create_client("s3", endpoint_url=s3_env) as s3:
        listed = await s3.list_buckets()
    assert bucket in [b["Name"] for b in listed["Buckets"]]
