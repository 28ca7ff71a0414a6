"""Fixtures for the ASGI suites: the shared S3 server and bucket (tests/s3/fixtures.py)."""

from __future__ import annotations

from tests.s3.fixtures import bucket, s3_env, s3_server

__all__ = ["bucket", "s3_env", "s3_server"]
