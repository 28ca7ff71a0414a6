"""A real S3 server (moto in server mode) on loopback, one per test session, with dummy
credentials, and a fresh bucket per test: fixtures for every suite that stores photos in S3
(imported by the ``conftest.py`` of tests/s3 and tests/asgi)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from moto.server import ThreadedMotoServer

# Dummy credentials: the server accepts any, and no test may reach a real account.
_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, port 0; yields its endpoint URL, stopped after."""
    saved = pytest.MonkeyPatch()
    for name, value in _ENV.items():
        saved.setenv(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        saved.undo()


@pytest.fixture
def s3_env(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The server's endpoint, with the dummy credentials in the environment of this test."""
    for name, value in _ENV.items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
async def bucket(s3_env: str) -> AsyncIterator[str]:
    """A new, empty bucket on the S3 server, named for this test."""
    from aiobotocore.session import get_session

    name = f"photos-{uuid.uuid4().hex[:12]}"
    async with get_session().create_client("s3", endpoint_url=s3_env) as s3:
        await s3.create_bucket(Bucket=name)
        yield name
