"""Uploaders: how local training photos become the public URLs that ``/profiles/add`` takes.

An uploader is any ``async (data, filename, content_type) -> public_url`` callable, where
``data`` is a ``Path`` (streamed from disk) or ``bytes``. Two are built in:

- ``PresignedPutUploader(presign)``: your storage hands out a presigned PUT URL and the
  public URL for each file (S3, GCS, R2 ...); the photo is PUT there, streamed from disk,
  through the session of the client whose ``profiles.create`` uses the uploader.
- ``emulator_uploader(client)``: the emulator's own file store, for tests and the demo.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import attrs

from . import _protocol as proto
from ._session import Session
from .errors import APIError, PhotaError, ResponseValidationError

CallState = Literal["uploading", "created", "none", "unknown"]


@attrs.define(eq=False)
class UploadCall:
    """One ``profiles.create`` call, as seen by the uploads it makes: ``upload_call`` holds it
    while its photos upload, so that an uploader keeping track of its objects (``S3Uploader``)
    knows which call each photo belongs to and how that call ended.

    Attributes:
        state: ``uploading`` until the call ends; then ``created`` (``profile_id`` says which
            profile trains from the photos), ``none`` (no profile can have been made: the
            photos are nobody's) or ``unknown`` (the creation may have landed).
        profile_id: the profile created, once ``created``.
    """

    state: CallState = "uploading"
    profile_id: str | None = None

    def created(self, profile_id: str) -> None:
        """The call made ``profile_id``."""
        self.state, self.profile_id = "created", profile_id

    def failed(self, error: BaseException, *, sent: bool) -> None:
        """The call raised ``error``; ``sent`` says whether its creation request may have been
        sent. Only a refusal that came back (4xx but 408/409, or 429/503) proves that no
        profile was made."""
        refused = isinstance(error, APIError) and (
            (400 <= error.status < 500 and error.status not in (408, 409))
            or error.status in (429, 503)
        )
        self.state = "none" if not sent or refused else "unknown"


upload_call: ContextVar[UploadCall | None] = ContextVar("phota_upload_call", default=None)
"""The ``profiles.create`` call whose photos are being uploaded, if any."""


class Uploader(Protocol):
    """Puts one training photo somewhere public and returns its URL."""

    async def __call__(self, data: bytes | Path, filename: str, content_type: str) -> str: ...


Presign = Callable[[str, str], Awaitable[tuple[str, str]]]
"""``async (filename, content_type) -> (put_url, public_url)``."""


class HasBaseUrl(Protocol):
    """Anything with the API's ``base_url``, such as a ``PhotaClient``."""

    @property
    def base_url(self) -> str: ...


class PresignedPutUploader:
    """Upload each photo with a PUT to a presigned URL, then hand Phota its public URL.

    The PUT goes through the client whose ``profiles.create`` uses the uploader (its
    connections, retries and deadlines).

    Args:
        presign: gives ``(put_url, public_url)`` for a file name and content type.
        client: accepted for compatibility and not needed: ``profiles.create`` puts the
            photos through its own client.
    """

    def __init__(self, presign: Presign, client: object = None) -> None:
        self._presign = presign
        self._session: Session | None = None

    def _bind(self, session: Session) -> PresignedPutUploader:
        bound = copy.copy(self)
        bound._session = session
        return bound

    async def _presigned(
        self, session: Session, filename: str, content_type: str
    ) -> tuple[str, str]:
        return await self._presign(filename, content_type)

    async def __call__(self, data: bytes | Path, filename: str, content_type: str) -> str:
        """Upload one photo; return its public URL.

        Raises:
            PhotaError: the uploader is used outside ``profiles.create`` (it has no client to
                put through), or the PUT failed.
        """
        session = self._session
        if session is None:
            raise PhotaError(
                "a PresignedPutUploader puts photos through the client that uses it: pass it "
                "as profiles.create(..., uploader=...)"
            )
        put_url, public_url = await self._presigned(session, filename, content_type)
        await session.put_file(put_url, data, content_type)
        return public_url


def bind_uploader(uploader: Uploader | None, session: Session) -> Uploader | None:
    """``uploader``, putting through ``session`` when it is one of ours."""
    if isinstance(uploader, PresignedPutUploader):
        return uploader._bind(session)
    return uploader


def _grant(response: proto.Response) -> tuple[str, str]:
    data: Any = proto.json_of(proto.check(response), "upload grant")
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), str) for k in ("upload_url", "url")
    ):
        raise ResponseValidationError("upload grant: expected upload_url and url")
    return data["upload_url"], data["url"]


async def _no_presign(filename: str, content_type: str) -> tuple[str, str]:
    raise AssertionError("the emulator grants its upload URLs itself")  # pragma: no cover


class _EmulatorUploader(PresignedPutUploader):
    """Asks the emulator for each upload URL, with the account's key."""

    def __init__(self, grant_url: str) -> None:
        super().__init__(_no_presign)
        self._grant_url = grant_url

    async def _presigned(
        self, session: Session, filename: str, content_type: str
    ) -> tuple[str, str]:
        request = proto.Request(
            "POST", self._grant_url, "/_emulator/uploads", session.api.headers, b"", "safe"
        )
        return await session.send(request, _grant)


def emulator_uploader(client: HasBaseUrl) -> PresignedPutUploader:
    """An uploader into the emulator's file store (``phota_async.testing.PhotaEmulator``).

    Args:
        client: the ``PhotaClient`` talking to the emulator (its ``base_url`` locates the
            store).

    Returns:
        The uploader, to pass as ``profiles.create(..., uploader=...)``.
    """
    parts = urlsplit(client.base_url)
    return _EmulatorUploader(f"{parts.scheme}://{parts.netloc}/_emulator/uploads")
