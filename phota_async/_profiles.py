"""``phota.profiles``: trained subjects, their training photos, and waiting for training.

A created profile is never lost. Training has no idempotency key in the API, so a profile
created without a tag gets a unique one (``phota-`` and 32 hex digits): when the answer to
``POST /profiles/add`` is lost, ``create`` looks the tag up (``GET /profiles/ids?tag=``) and
returns the profile it finds instead of raising. With a tag of the caller's own (which other
profiles may share) it raises ``OutcomeUnknownError`` carrying the tag to look it up with.
Right after creation the status endpoint may not know the profile yet (eventual consistency):
``create(wait=True)`` keeps polling through 404s for ``CREATED_NOT_FOUND_GRACE`` seconds, and
an error after that names the profile's id.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from . import _protocol as proto
from ._blob import ImageBlob
from ._deadline import check_seconds
from ._files import off_loop
from ._inputs import check_url, prepare_image, read_all
from ._options import ImageInput, TrainingTier
from ._poll import Cadence, transient, wait_deadline
from ._protocol import Response
from ._session import Session
from ._uploads import UploadCall, Uploader, bind_uploader, upload_call
from ._validate import check_tag, check_training_set, training_fields
from .errors import (
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
    PhotaError,
    ProfileTrainingError,
    ReadTimeoutError,
    ResponseValidationError,
)
from .models import Profile, ProfileStatus

log = logging.getLogger("phota_async")

DEFAULT_TRAINING_WAIT = 1800.0
# Seconds after creation during which a 404 on the new profile's status is taken for the
# API's eventual consistency and polled through.
CREATED_NOT_FOUND_GRACE = 30.0
AUTO_TAG_PREFIX = "phota-"
CONTENT_TYPES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "heic": "image/heic",
}
Progress = Callable[[int, int], None]


class Profiles:
    """Trained subjects: ``phota.profiles``.

    Args:
        session: the client's session, which every call, upload and poll goes through.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    async def create(
        self,
        images: Sequence[ImageInput],
        *,
        tier: TrainingTier = "standard",
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
            tag: an immutable label (1-128 characters), usable as a filter in ``list``. When
                omitted, the profile gets a unique tag ``phota-<32 hex digits>`` (see
                ``Profile.tag``), by which a creation whose answer was lost is found again.
            uploader: makes local photos public URLs (see ``PresignedPutUploader``).
            upload_concurrency: the most uploads in flight at once.
            on_upload: called as ``on_upload(done, total)`` after each upload.
            wait: wait until training ends and return the READY profile.
            timeout: deadline in seconds for uploads and the call, plus the wait with
                ``wait=True`` (default 1800 s then).

        Returns:
            The new ``Profile`` (``VALIDATING``), or the READY one with ``wait=True``. When the
            creation's answer was lost but the profile was found by its generated tag, that
            profile.

        Raises:
            InvalidRequestError: wrong number of photos, an unreadable or non-image file, a
                local photo without an uploader, a bad tier, tag or timeout. Nothing was
                uploaded.
            OutcomeUnknownError: the answer was lost and the profile could not be found; it
                may exist (and be charged). ``.tag`` is the tag to look it up with
                (``profiles.list(tag=...)``) before creating it again.
            ReadTimeoutError: the deadline passed while uploading (no profile was created), or
                as for any call.
            ProfileTrainingError, WaitTimeoutError: with ``wait=True``, as for ``wait_ready``.
            NotFoundError: with ``wait=True``, the new profile's status was still not found
                ``CREATED_NOT_FOUND_GRACE`` seconds after creation; the message names its id.
            BudgetExceededError: under a budget, the training's price would pass it: no profile
                was created (local photos were uploaded first).
        """
        session = self._session
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            raise InvalidRequestError("images", "must be a list of training photos")
        check_training_set(len(images), tier, tag)
        if timeout is not None:
            timeout = check_seconds(timeout, "timeout")
        sources = [await _training_source(img, f"images[{i}]") for i, img in enumerate(images)]
        local = [i for i, s in enumerate(sources) if isinstance(s, ImageBlob)]
        if local and uploader is None:
            raise InvalidRequestError(
                f"images[{local[0]}]",
                "local photos need an uploader= (training takes URLs only), such as "
                "PresignedPutUploader",
            )
        deadline = session.timeout if timeout is None else timeout
        started = anyio.current_time()
        # Tells an uploader that tracks its objects which call each photo belongs to, and
        # how that call ended (S3Uploader's cleanup keeps what a training still reads).
        call = UploadCall()
        token = upload_call.set(call)
        try:
            with anyio.fail_after(deadline):
                urls = await _upload_all(
                    sources, bind_uploader(uploader, session), upload_concurrency, on_upload
                )
        except TimeoutError as exc:
            call.failed(exc, sent=False)
            raise ReadTimeoutError(
                f"profiles.create: the {deadline:g} s deadline passed while uploading the "
                "training photos; no profile was created"
            ) from None
        except BaseException as exc:
            call.failed(exc, sent=False)
            raise
        finally:
            upload_call.reset(token)
        generated = tag is None
        tag = f"{AUTO_TAG_PREFIX}{uuid.uuid4().hex}" if tag is None else tag
        remaining = max(0.0, deadline - (anyio.current_time() - started))
        try:
            fields = training_fields(urls, tier, tag)
            request = session.api.post("/profiles/add", fields, "paid")
            session.check_usable()
            reservation = session.guard.reserve_training(tier)  # None without a budget
        except BaseException as exc:
            call.failed(exc, sent=False)
            raise
        try:
            try:
                profile_id = await session.send(request, proto.decode_created_profile_id, remaining)
            except OutcomeUnknownError as lost:
                left = max(0.0, deadline - (anyio.current_time() - started))
                profile_id = await self._find_lost(lost, tag, generated, left)
        except BaseException as exc:
            if reservation is not None:
                reservation.ended_by(exc, retry="paid", sent=request.sent)
            call.failed(exc, sent=request.sent)
            raise
        call.created(profile_id)
        if reservation is not None:
            reservation.settle_as_reserved()  # a training costs its price
        if not wait:
            return Profile(id=profile_id, status=ProfileStatus.VALIDATING, tag=tag)
        wait_for = DEFAULT_TRAINING_WAIT if timeout is None else timeout
        return await self._wait_created(
            profile_id, max(0.0, wait_for - (anyio.current_time() - started))
        )

    async def _find_lost(
        self, lost: OutcomeUnknownError, tag: str, generated: bool, timeout: float
    ) -> str:
        """The id of the profile whose creation answer was lost, found by its generated tag;
        otherwise raise ``lost`` again with the tag to look it up with."""
        found: list[Profile] = []
        if generated:
            try:
                listed = await self.list(tag=tag, timeout=timeout)
                # A server that ignores the filter must not pass off another profile as this
                # one (plain id strings carry no tag: the filter is all there is to go by).
                found = [p for p in listed if p.tag in (tag, None)]
            except PhotaError as exc:
                log.debug("looking up the profile tagged %s failed: %s", tag, exc)
            if len(found) == 1:
                log.debug("the answer to POST /profiles/add was lost; found %s", found[0].id)
                return found[0].id
            hint = (
                f"No single profile tagged {tag!r} was listed: it was probably not created, but "
                "the list may lag; look again with profiles.list(tag=...) before creating it "
                "again."
            )
        else:
            hint = f"profiles.list(tag={tag!r}) lists it if it was created."
        error = OutcomeUnknownError(f"{lost} {hint}")
        error.tag = tag
        error.request_ids = lost.request_ids
        error.attempts = lost.attempts
        raise error from lost.__cause__

    async def _wait_created(self, profile_id: str, timeout: float) -> Profile:
        """``wait_ready`` for a profile just created: a 404 soon after creation is polled
        through, and an error names the profile, so that it is never lost."""
        created = anyio.current_time()

        def keep_on(exc: PhotaError) -> bool:
            if isinstance(exc, NotFoundError):
                return anyio.current_time() - created < CREATED_NOT_FOUND_GRACE
            return transient(exc)

        try:
            return await self._wait(profile_id, timeout, None, keep_on)
        except NotFoundError as exc:
            raise NotFoundError(
                exc.status,
                exc.code,
                f"profile {profile_id} was created (and charged), but its status was still not "
                f"found {CREATED_NOT_FOUND_GRACE:g} s later: {exc.detail}",
                body=exc.body,
                request_ids=exc.request_ids,
            ) from exc
        except PhotaError as exc:
            exc.add_note(f"profile {profile_id} was created; wait for it with wait_ready()")
            raise

    async def get(self, profile_id: str, *, timeout: float | None = None) -> Profile:
        """The current status of a profile.

        Raises:
            InvalidRequestError: ``profile_id`` is not a valid id.
            NotFoundError: there is no such profile.
        """
        session = self._session
        path = proto.profile_path(profile_id, "/status")
        request = session.api.get(path)

        def decode(response: Response) -> Profile:
            profile = proto.decode_profile(response)
            if profile.id != profile_id:  # another profile's status must not pass for this one's
                raise ResponseValidationError(
                    f"profile {profile_id}: the answer is about profile {profile.id}"
                )
            return profile

        return await session.send(request, decode, timeout)

    async def list(self, *, tag: str | None = None, timeout: float | None = None) -> list[Profile]:
        """Every profile of the account, optionally only those with ``tag``.

        Args:
            tag: list only the profiles created with this tag (1-128 characters).
            timeout: deadline for the call, in seconds.

        Returns:
            The ``Profile`` snapshots.

        Raises:
            InvalidRequestError: ``tag`` or ``timeout`` is invalid (nothing was sent).
        """
        check_tag(tag)
        session = self._session
        query = {"tag": tag} if tag is not None else None
        request = session.api.get("/profiles/ids", query)
        return await session.send(request, proto.decode_profiles, timeout)

    async def picture(self, profile_id: str, *, timeout: float | None = None) -> bytes:
        """The profile's picture, as JPEG bytes.

        Raises:
            InvalidRequestError: ``profile_id`` is not a valid id.
            NotFoundError: no such profile, or no picture yet.
        """
        session = self._session
        path = proto.profile_path(profile_id, "/profile_picture")
        request = session.api.get(path)
        return await session.send(request, proto.decode_image, timeout)

    async def delete(self, profile_id: str, *, timeout: float | None = None) -> None:
        """Delete a profile.

        Raises:
            InvalidRequestError: ``profile_id`` is not a valid id.
            NotFoundError: there is no such profile.
        """
        session = self._session
        request = session.api.delete(proto.profile_path(profile_id))
        try:
            await session.send(request, proto.check, timeout)
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
        return await self._wait(
            profile_id, wait_deadline(timeout, DEFAULT_TRAINING_WAIT), on_update, None
        )

    async def _wait(
        self,
        profile_id: str,
        timeout: float,
        on_update: Callable[[Profile], None] | None,
        keep_on: Callable[[PhotaError], bool] | None,
    ) -> Profile:
        policy = self._session.poll_policy

        def cadence(profile: Profile | None) -> Cadence:
            training = profile is not None and profile.status == ProfileStatus.IN_PROGRESS
            return policy.profile_training if training else policy.profile_setup

        profile = await self._session.poller.wait(
            ("profile", profile_id),
            lambda: self.get(profile_id),
            lambda p: p.is_terminal,
            cadence,
            timeout,
            f"profile {profile_id}",
            on_update,
            keep_on,
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
                blob.path if blob.path is not None else await off_loop(read_all, blob)
            )
            name = blob.path.name if blob.path else f"photo-{index}.{blob.format}"
            urls[index] = await uploader(data, name, CONTENT_TYPES[blob.format])
        done += 1
        if on_upload is not None:
            on_upload(done, len(pending))

    try:
        async with anyio.create_task_group() as group:
            for index, blob in pending:
                group.start_soon(upload, index, blob)
    except BaseExceptionGroup as failed:
        # The first failed upload cancels the others: its own error, not a group, is what the
        # caller catches (an uploader's StorageError, an OSError, a PhotaError).
        raise failed.exceptions[0] from failed.exceptions[0].__cause__
    return urls
