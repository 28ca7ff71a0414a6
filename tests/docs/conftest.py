"""The local S3 server, for pages that store photos in a bucket."""

from tests.s3.fixtures import s3_env, s3_server

__all__ = ["s3_env", "s3_server"]
