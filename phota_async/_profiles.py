"""``phota.profiles``: trained subjects, their training photos, and waiting for training."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from . import _protocol as proto
from ._files import off_loop
from ._inputs import ImageBlob, check_url, prepare_image
from ._poll import Cadence, wait_deadline
from ._uploads import Uploader
from .errors import InvalidRequestError, NotFoundError, ProfileTrainingError
from .models import Profile, ProfileStatus

if TYPE_CHECKING:
    from ._client import PhotaClient

DEFAULT_TRAINING_WAIT = 1800.0
CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "heic": "image/heic",
}
Progress = Callable[[int, int], None]


class Profiles:
    """Trained subjects: ``phota.profiles``."""

    def __init__(self, client: PhotaClient) -> None:
        self._client = client

    async def create(
        self,
        images: Sequence[Any],
        *,
        tier: str = "standard",
        tag: str | None = None,
        uploader: Uploader | None = None,
        upload_concurrency: int = 4,
        on_upload: Progress | None = None,
        wait: bool = False,
        timeout: float | None = None,
    ) -> Profile:
        """Start training a profile from photos of one subject.

        Args:
            images: the training photos (standard: 10-50, fast: 5-10): public http(s) URLs, or
                local ``Path``, ``bytes``, binary files or PIL images sent through ``uploader``.
            tier: ``standard`` (about 20 minutes) or ``fast``.
            tag: an immutable label (1-128 characters), usable as a filter in ``list``.
            uploader: makes local photos public URLs (see ``PresignedPutUploader``).
            upload_concurrency: the most uploads in flight at once.
            on_upload: called as ``on_upload(done, total)`` after each upload.
            wait: wait until training ends and return the READY profile.
            timeout: deadline in seconds for uploads and the call, plus the wait with
                ``wait=True`` (default 1800 s then).

        Returns:
            The new ``Profile`` (``VALIDATING``), or the READY one with ``wait=True``.

        Raises:
            InvalidRequestError: wrong number of photos, an unreadable or non-image file, a
                local photo without an uploader, a bad tier or tag. Nothing was uploaded.
            OutcomeUnknownError: the answer was lost; the profile may exist (and be charged).
            ProfileTrainingError, WaitTimeoutError: with ``wait=True``, as for ``wait_ready``.
        """
        client = self._client
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            raise InvalidRequestError("images", "must be a list of training photos")
        proto.check_training_set(len(images), tier, tag)
        sources = [await _training_source(img, f"images[{i}]") for i, img in enumerate(images)]
        local = [i for i, s in enumerate(sources) if isinstance(s, ImageBlob)]
        if local and uploader is None:
            raise InvalidRequestError(
                f"images[{local[0]}]",
                "local photos need an uploader= (training takes URLs only), such as "
                "PresignedPutUploader",
            )
        deadline = client.timeout if timeout is None else timeout
        started = anyio.current_time()
        with anyio.fail_after(deadline):
            urls = await _upload_all(sources, uploader, upload_concurrency, on_upload)
        fields = proto.training_fields(urls, tier, tag)
        request = client._api.post("/profiles/add", fields, "paid")
        remaining = deadline - (anyio.current_time() - started)
        profile_id = await client._send(request, proto.decode_created_profile_id, remaining)
        if not wait:
            return Profile(id=profile_id, status=ProfileStatus.VALIDATING, tag=tag)
        wait_for = DEFAULT_TRAINING_WAIT if timeout is None else timeout
        return await self.wait_ready(
            profile_id, timeout=wait_for - (anyio.current_time() - started)
        )

    async def get(self, profile_id: str, *, timeout: float | None = None) -> Profile:
        """The current status of a profile.

        Raises:
            InvalidRequestError: ``profile_id`` is not a valid id.
            NotFoundError: there is no such profile.
        """
        client = self._client
        path = proto.profile_path(profile_id, "/status")
        request = client._api.get(path)
        return await client._send(request, proto.decode_profile, timeout)

    async def list(self, *, tag: str | None = None, timeout: float | None = None) -> list[Profile]:
        """Every profile of the account, optionally only those with ``tag``."""
        client = self._client
        query = {"tag": tag} if tag is not None else None
        request = client._api.get("/profiles/ids", query)
        return await client._send(request, proto.decode_profiles, timeout)

    async def picture(self, profile_id: str, *, timeout: float | None = None) -> bytes:
        """The profile's picture, as JPEG bytes.

        Raises:
            InvalidRequestError: ``profile_id`` is not a valid id.
            NotFoundError: no such profile, or no picture yet.
        """
        client = self._client
        path = proto.profile_path(profile_id, "/profile_picture")
        request = client._api.get(path)
        return await client._send(request, proto.decode_image, timeout)

    async def delete(self, profile_id: str, *, timeout: float | None = None) -> None:
        """Delete a profile.

        Raises:
            InvalidRequestError: ``profile_id`` is not a valid id.
            NotFoundError: there is no such profile.
        """
        client = self._client
        request = client._api.delete(proto.profile_path(profile_id))
        try:
            await client._send(request, proto.check, timeout)
        except NotFoundError as exc:
            # A retried delete whose earlier attempt went through finds nothing left to delete.
            if exc.attempts == 1:
                raise

    async def wait_ready(
        self,
        profile_id: str,
        *,
        timeout: float | None = DEFAULT_TRAINING_WAIT,
        on_update: Callable[[Profile], None] | None = None,
    ) -> Profile:
        """Wait until a profile is READY; every waiter on one profile shares one poll loop.

        Polls fast while the profile is validated and queued, then at the documented 10-30 s
        cadence while it trains. Transient errors while polling do not end the wait.

        Args:
            profile_id: the profile to wait for.
            timeout: the deadline in seconds (``None`` means the default 1800 s, never
                "forever"; pass ``math.inf`` to wait without limit).
            on_update: called with each new snapshot, for progress displays.

        Returns:
            The READY ``Profile``.

        Raises:
            ProfileTrainingError: the profile ended ``ERROR`` or ``INACTIVE`` (``.profile``).
            WaitTimeoutError: the deadline passed (``.last`` is the last snapshot seen).
            NotFoundError: the profile does not exist (or was deleted meanwhile).
        """
        proto.check_id(profile_id, "profile_id")
        policy = self._client.poll_policy

        def cadence(profile: Profile | None) -> Cadence:
            training = profile is not None and profile.status == ProfileStatus.IN_PROGRESS
            return policy.profile_training if training else policy.profile_setup

        profile = await self._client.poller.wait(
            ("profile", profile_id),
            lambda: self.get(profile_id),
            lambda p: p.is_terminal,
            cadence,
            wait_deadline(timeout, DEFAULT_TRAINING_WAIT),
            f"profile {profile_id}",
            on_update,
        )
        if profile.is_failed:
            raise ProfileTrainingError(profile)
        return profile


async def _training_source(value: Any, field: str) -> str | ImageBlob:
    if isinstance(value, str):
        return check_url(value, field)
    return await prepare_image(value, field)


async def _upload_all(
    sources: list[str | ImageBlob],
    uploader: Uploader | None,
    concurrency: int,
    on_upload: Progress | None,
) -> list[str]:
    """Upload every local photo under a concurrency bound; URLs pass through unchanged."""
    urls: list[str] = [s if isinstance(s, str) else "" for s in sources]
    pending = [(i, s) for i, s in enumerate(sources) if isinstance(s, ImageBlob)]
    if not pending or uploader is None:
        return urls
    limiter = anyio.CapacityLimiter(max(1, concurrency))
    done = 0

    async def upload(index: int, blob: ImageBlob) -> None:
        nonlocal done
        async with limiter:
            data: bytes | Path = (
                blob.path if blob.path is not None else await off_loop(blob.read_all)
            )
            name = blob.path.name if blob.path else f"photo-{index}.{blob.format}"
            urls[index] = await uploader(data, name, CONTENT_TYPES[blob.format])
        done += 1
        if on_upload is not None:
            on_upload(done, len(pending))

    async with anyio.create_task_group() as group:
        for index, blob in pending:
            group.start_soon(upload, index, blob)
    return urls
