"""Uploaders: how local training photos become the public URLs that ``/profiles/add`` takes.

An uploader is any ``async (data, filename, content_type) -> public_url`` callable, where
``data`` is a ``Path`` (streamed from disk) or ``bytes``. Two are built in:

- ``PresignedPutUploader(presign, client)``: your storage hands out a presigned PUT URL and the
  public URL for each file (S3, GCS, R2 ...); the photo is PUT there, streamed from disk.
- ``emulator_uploader(client)``: the emulator's own file store, for tests and the demo.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from . import _protocol as proto
from .errors import ResponseValidationError

if TYPE_CHECKING:
    from ._client import PhotaClient


class Uploader(Protocol):
    """Puts one training photo somewhere public and returns its URL."""

    async def __call__(self, data: bytes | Path, filename: str, content_type: str) -> str: ...


Presign = Callable[[str, str], Awaitable[tuple[str, str]]]
"""``async (filename, content_type) -> (put_url, public_url)``."""


class PresignedPutUploader:
    """Upload each photo with a PUT to a presigned URL, then hand Phota its public URL.

    Args:
        presign: gives ``(put_url, public_url)`` for a file name and content type.
        client: the ``PhotaClient`` whose connections, retries and deadlines the PUT uses.
    """

    def __init__(self, presign: Presign, client: PhotaClient) -> None:
        self._presign = presign
        self._client = client

    async def __call__(self, data: bytes | Path, filename: str, content_type: str) -> str:
        put_url, public_url = await self._presign(filename, content_type)
        await self._client.put_file(put_url, data, content_type)
        return public_url


def _grant(response: proto.Response) -> tuple[str, str]:
    data: Any = proto.json_of(proto.check(response), "upload grant")
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("upload_url", "url")
    ):
        raise ResponseValidationError("upload grant: expected upload_url and url")
    return data["upload_url"], data["url"]


def emulator_uploader(client: PhotaClient) -> PresignedPutUploader:
    """An uploader into the emulator's file store (``phota_async.testing.PhotaEmulator``)."""
    parts = urlsplit(client.base_url)
    grant_url = f"{parts.scheme}://{parts.netloc}/_emulator/uploads"

    async def presign(filename: str, content_type: str) -> tuple[str, str]:
        request = proto.Request(
            "POST", grant_url, "/_emulator/uploads", client._api.headers, b"", "safe"
        )
        return await client._send(request, _grant)

    return PresignedPutUploader(presign, client)
