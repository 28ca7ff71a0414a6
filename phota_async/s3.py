"""Training photos through S3 or any S3-compatible store (the ``[s3]`` extra).

Phota trains profiles from photo URLs only. ``S3Uploader`` puts local photos into a bucket and
hands Phota presigned GET URLs, so nothing has to be public:

```python
from phota_async.s3 import S3Uploader

async with S3Uploader("my-bucket", "phota/") as s3:
    profile = await phota.profiles.create(paths, uploader=s3, wait=True)
```

How it behaves, and why:

- Object keys are content addressed: ``<prefix><sha256 of the bytes>.<extension>``. A retried
  upload (or the same photo in two profiles) lands on the same key and is not stored twice;
  a photo already in the bucket is not sent again. With ``cleanup=True`` the uploader owns
  its objects alone: its keys are ``<prefix><session>/<sha256>.<extension>``, under a random
  segment of its own, so that no other uploader (another run, another process) finds, shares
  or deletes them; within the uploader they stay content addressed.
- Cleanup (``cleanup=True``) deletes a photo only when nothing of this uploader still needs
  it. Each ``profiles.create`` call's photos are tracked: ``finish(profile)`` deletes those of
  the call that made ``profile``, except the ones another call still uses (a profile not
  finished yet, a call still uploading, a call whose outcome is unknown). A call that made no
  profile (refused, such as a 402; cut short by an error or Ctrl-C while uploading; its request
  never sent) leaves its photos to ``discard()``, which leaving the ``async with`` block calls.
  A call whose request may have landed without an answer (``OutcomeUnknownError``, a
  cancellation mid-request) keeps its photos: Phota may be training from them.
- The same photo twice in one ``profiles.create`` is refused (``InvalidRequestError`` naming
  both files, before any training is requested): the API's 10-50 (fast: 5-10) counts distinct
  photos of the subject, and a copy would count twice while teaching nothing. A file is hashed and uploaded through one
  open handle: one replaced or deleted meanwhile still uploads the bytes that were hashed, and
  one written to meanwhile fails with ``OSError`` (its object deleted), never leaving other
  bytes under its key. The digest also travels as ``ChecksumSHA256`` for stores that check it.
- The bucket is checked once, before the first upload: a missing or forbidden bucket is a
  ``StorageError`` raised by the upload step of ``profiles.create``, that is before the
  training is requested (and paid).
- The presigned URLs live ``url_ttl`` seconds (default 24 h): validation, queueing and about
  20 minutes of training must fit in it, with room for a busy queue. SigV4 allows at most
  7 days; temporary credentials (STS, SSO) end a URL's life when they expire.
- Credentials and region come from the usual AWS chain (environment, config files, instance
  roles); ``endpoint_url`` points at MinIO, Cloudflare R2, GCS interoperability and the like
  (path-style addressing then).
- ``on_progress`` is called with an ``UploadProgress`` (photos and bytes done so far, how many
  were already in the bucket, seconds since the first upload began) after each photo; the
  command line draws its ``n/N photos, MB, MB/s`` line from it.
- aiobotocore is imported on first use only: importing ``phota_async`` or this module does
  not need it. Its own retries (standard mode) cover a store's transient errors; every upload
  is idempotent (same key, same bytes), so retrying is always safe.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import anyio
import attrs

from ._files import off_loop, settled
from ._uploads import UploadCall, upload_call
from .errors import InvalidRequestError, PhotaError
from .models import Profile

__all__ = ["DEFAULT_URL_TTL", "MAX_URL_TTL", "S3Uploader", "StorageError", "UploadProgress"]

DEFAULT_URL_TTL = 24 * 3600
"""How long presigned training-photo URLs live by default, in seconds (24 h)."""
MAX_URL_TTL = 7 * 24 * 3600  # the longest a SigV4 presigned URL may live
"""The longest ``url_ttl`` accepted, in seconds (7 days, the limit of SigV4 presigning)."""
_CHUNK = 1 << 20
# Bytes hashed on the loop itself; more goes to the I/O pool.
_INLINE_HASH = 256 * 1024
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/heic": "heic",
    "image/heif": "heif",
}
_SAFE_EXTENSION = re.compile(r"[a-z0-9]{1,8}")
_UNSAFE_PREFIX = re.compile(r"[\x00-\x1f\x7f]|(?:^|/)\.{1,2}(?:/|$)")
_MISSING = frozenset({"404", "NoSuchBucket", "NotFound"})
_FORBIDDEN = frozenset({"403", "AccessDenied", "Forbidden"})
# The most seconds leaving an ``async with`` block spends deleting the photos of calls that
# made no profile, even when it is left by a cancellation (Ctrl-C).
_EXIT_CLEANUP_SECONDS = 30.0

log = logging.getLogger("phota_async.s3")


class _Loose:
    """The owner of photos uploaded outside ``profiles.create`` (a direct call)."""

    state = "loose"
    profile_id = None


_LOOSE = _Loose()
Owner = UploadCall | _Loose


class StorageError(PhotaError):
    """The object store refused or failed an operation of an ``S3Uploader``.

    Attributes:
        code: the store's error code (such as ``"NoSuchBucket"``), or ``None`` when no answer
            came back.
        bucket: the bucket concerned.
    """

    def __init__(self, message: str, *, code: str | None, bucket: str) -> None:
        super().__init__(message)
        self.code = code
        self.bucket = bucket


@attrs.frozen
class UploadProgress:
    """How far an ``S3Uploader`` has got, as passed to its ``on_progress`` callback.

    Attributes:
        photos: photos done (stored, or found already stored) since the uploader was made.
        bytes: their size in bytes.
        skipped: how many of them were already in the bucket (not sent again).
        seconds: seconds since the first of them began (hashing included).
    """

    photos: int
    bytes: int
    skipped: int
    seconds: float

    @property
    def mb_per_second(self) -> float:
        """Throughput in MB/s (10**6 bytes), 0 before any time has passed."""
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


ProgressCallback = Callable[[UploadProgress], None]


class S3Uploader:
    """Upload training photos to S3 (or an S3-compatible store) and hand out presigned URLs.

    Implements the ``Uploader`` protocol of ``profiles.create(..., uploader=...)``. Use it as
    an ``async with`` block to keep one connection pool over many uploads; used without one,
    it opens its client on the first upload and closes it when no upload is in flight.

    Args:
        bucket: the bucket's name; it must exist.
        prefix: put before every key, such as ``"phota/training/"`` (a ``/`` is added when
            missing).
        endpoint_url: an S3-compatible endpoint (MinIO, R2, GCS interoperability); AWS when
            ``None``.
        region: the bucket's region; from the AWS configuration when ``None``.
        url_ttl: lifetime of each presigned GET URL in seconds (default 24 h, at most 7 days).
        concurrency: the most uploads in flight at once.
        cleanup: own the photos (keys under a random segment of this uploader) and let
            ``finish(profile)`` delete that profile's photos once it is READY or ERROR (Phota
            reads them until then), ``discard()`` those of calls that made no profile.
        on_progress: called with an ``UploadProgress`` after each photo is stored (or found
            already stored), on the event loop; keep it quick. An exception it raises fails
            that photo's upload.

    Raises:
        InvalidRequestError: an argument is invalid.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        url_ttl: float = DEFAULT_URL_TTL,
        concurrency: int = 4,
        cleanup: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        if not isinstance(bucket, str) or not re.fullmatch(r"[A-Za-z0-9._-]{1,255}", bucket):
            raise InvalidRequestError("bucket", "must be an S3 bucket name")
        if not isinstance(prefix, str) or len(prefix) > 512:
            raise InvalidRequestError("prefix", "must be a string of at most 512 characters")
        if _UNSAFE_PREFIX.search(prefix):
            # A "." or ".." segment is resolved away by URL normalisation somewhere between
            # Phota and the store (the presigned URL then points elsewhere, or its signature
            # fails), and control characters are refused by stores or mangled in headers.
            raise InvalidRequestError(
                "prefix", "must not hold control characters or '.' or '..' path segments"
            )
        if isinstance(url_ttl, bool) or not isinstance(url_ttl, (int, float)):
            raise InvalidRequestError("url_ttl", "must be a number of seconds")
        if not 1 <= url_ttl <= MAX_URL_TTL:
            raise InvalidRequestError(
                "url_ttl", f"must be between 1 and {MAX_URL_TTL} seconds (7 days)"
            )
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidRequestError("concurrency", "must be an integer >= 1")
        prefix = prefix.lstrip("/")
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.endpoint_url = endpoint_url
        self.region = region
        self.url_ttl = int(url_ttl)
        self.concurrency = concurrency
        self.cleanup = cleanup
        self.on_progress = on_progress
        # Under cleanup, a segment of this uploader's own: nobody else finds its objects.
        self.session_id = secrets.token_hex(8) if cleanup else None
        self.key_prefix = self.prefix + (f"{self.session_id}/" if self.session_id else "")
        self._done = UploadProgress(0, 0, 0, 0.0)
        self._first: float | None = None  # when the first upload began (monotonic)
        self._uploaded: dict[str, None] = {}  # ordered set of keys
        # Who uses each key: the create calls (or _LOOSE) whose photos it holds; and, per
        # owner, its photos' digests and file names (a photo twice in one call is refused).
        self._owners: dict[str, set[Owner]] = {}
        self._photos: dict[Owner, dict[str, tuple[str, str]]] = {}  # digest -> (key, name)
        self._deleting: dict[str, asyncio.Event] = {}  # keys being deleted right now
        self._limit = asyncio.Semaphore(concurrency)
        self._lock: asyncio.Lock | None = None
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._users = 0
        self._entered = 0
        self._checked = False

    def __repr__(self) -> str:
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Uploader({self.bucket!r}, {self.prefix!r}{where})"

    @property
    def progress(self) -> UploadProgress:
        """Photos and bytes done so far (see ``on_progress``)."""
        return self._done

    @property
    def uploaded_keys(self) -> tuple[str, ...]:
        """The keys this uploader stored or found in the bucket, in order, each once."""
        return tuple(self._uploaded)

    async def __aenter__(self) -> S3Uploader:
        await self._acquire()
        self._entered += 1
        self._users -= 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self.cleanup and self._entered == 1:
                # Bounded and shielded: Ctrl-C still deletes what no profile will read.
                with anyio.move_on_after(_EXIT_CLEANUP_SECONDS, shield=True):
                    try:
                        await self.discard()
                    except StorageError as failed:
                        if exc is None:
                            raise
                        log.warning("could not delete the photos of failed calls: %s", failed)
        finally:
            self._entered -= 1
            if self._entered == 0 and self._users == 0:
                await self._close()

    async def aclose(self) -> None:
        """Close the client now (uploads in flight fail). Idempotent."""
        self._entered = 0
        await self._close()

    async def check(self) -> None:
        """Check that the bucket exists and can be reached, before anything is paid.

        ``profiles.create`` does this by itself on the first upload; call it to fail even
        earlier, before the photos are read.

        Raises:
            StorageError: the bucket does not exist, access is denied, or the store cannot be
                reached.
        """
        await self._acquire()
        await self._release()

    async def __call__(self, data: bytes | Path, filename: str, content_type: str) -> str:
        """Store one photo under its content's key; return a presigned GET URL for it.

        Args:
            data: the photo's bytes, or a file streamed from disk.
            filename: its name (the extension is kept on the key).
            content_type: its media type.

        Returns:
            A presigned URL valid for ``url_ttl`` seconds.

        Raises:
            StorageError: the store refused or failed (after its own retries).
            OSError: the file cannot be read.
        """
        if self._first is None:
            self._first = time.monotonic()
        owner: Owner = upload_call.get() or _LOOSE
        if isinstance(data, bytes):
            digest, size = await _sha256(data)
            key = self._claim(owner, digest, filename, content_type)
            found_before = await self._store(key, data, digest, content_type)
            url = await self._presign(key)
        else:
            # One handle for the hash and the upload: a file replaced or deleted meanwhile
            # still uploads the bytes that were hashed; one changed in place is caught by
            # its size or modification time, so no object holds other bytes than its key says.
            handle = await settled(_open, data, undo=_close)
            try:
                before = _identity(handle)
                digest, size = await off_loop(_hash_handle, handle)
                key = self._claim(owner, digest, filename, content_type)
                found_before = await self._store(key, handle, digest, content_type)
                if _identity(handle) != before:
                    await self._forget(owner, digest, key, delete=not found_before)
                    raise OSError(f"{data} changed while it was being uploaded; upload it again")
                url = await self._presign(key)
            finally:
                handle.close()
        done = self._done
        self._done = UploadProgress(
            done.photos + 1,
            done.bytes + size,
            done.skipped + found_before,
            time.monotonic() - self._first,
        )
        if self.on_progress is not None:
            self.on_progress(self._done)
        return url

    def _claim(self, owner: Owner, digest: bytes, filename: str, content_type: str) -> str:
        """Record that ``owner`` uses the photo with this digest; return its key.

        Synchronous, so that a cleanup choosing what to delete sees every use claimed before
        it chose, and a use claimed after waits for that deletion to end (``_store``).

        Raises:
            InvalidRequestError: the same photo is already part of this create call.
        """
        key = f"{self.key_prefix}{digest.hex()}.{_extension(filename, content_type)}"
        photos = self._photos.setdefault(owner, {})
        seen = photos.get(digest.hex())
        if seen is not None and owner is not _LOOSE:
            raise InvalidRequestError(
                "images",
                f"{filename!r} is the same photo as {seen[1]!r}: a training set counts "
                "distinct photos, so remove the copy",
            )
        photos[digest.hex()] = (key, filename)
        self._owners.setdefault(key, set()).add(owner)
        return key

    async def _store(
        self, key: str, body: bytes | BinaryIO, digest: bytes, content_type: str
    ) -> bool:
        """Put ``body`` under ``key`` unless it is there; whether it was found there."""
        while (deleting := self._deleting.get(key)) is not None:
            await deleting.wait()  # a cleanup chose it before this use was claimed
        client = await self._acquire()
        try:
            async with self._limit:
                found = await self._exists(client, key)
                if not found:
                    await self._put(client, key, body, content_type, digest)
                self._uploaded[key] = None
        finally:
            await self._release()
        return found

    async def _presign(self, key: str) -> str:
        client = await self._acquire()
        try:
            url: str = await client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=self.url_ttl
            )
        finally:
            await self._release()
        return url

    async def _forget(self, owner: Owner, digest: bytes, key: str, *, delete: bool) -> None:
        """Drop ``owner``'s use of a photo whose file changed while it was uploaded; delete
        its object when ``delete`` and nobody else uses it."""
        self._photos.get(owner, {}).pop(digest.hex(), None)
        unused = self._release_keys(owner, [key])
        if delete and unused:
            await self._delete(unused, "delete a photo")

    def _release_keys(self, owner: Owner, keys: list[str]) -> list[str]:
        """Drop ``owner``'s use of ``keys``; the ones nobody uses any more, now marked as
        being deleted (synchronously: see ``_claim``)."""
        unused = []
        for key in keys:
            owners = self._owners.get(key)
            if owners is None:
                continue
            owners.discard(owner)
            if not owners and key not in self._deleting:
                del self._owners[key]
                self._deleting[key] = asyncio.Event()
                unused.append(key)
        return unused

    def _drop(self, owners: Sequence[Owner]) -> list[str]:
        """Forget ``owners``; the keys nobody uses any more, marked as being deleted."""
        unused = []
        for owner in owners:
            photos = self._photos.pop(owner, {})
            unused += self._release_keys(owner, [key for key, _ in photos.values()])
        return unused

    async def finish(self, profile: Profile) -> int:
        """With ``cleanup=True``, delete the photos of ``profile`` now that it has ended,
        except those another call of this uploader still needs.

        The photos are those uploaded by the ``profiles.create`` call that made ``profile``
        (through this uploader). A photo another of its calls also uses stays until that call
        is done with it: its profile finished, or the call discarded.

        Args:
            profile: the profile trained from these photos, as last seen (``wait_ready``'s
                answer, or ``ProfileTrainingError.profile``).

        Returns:
            How many photos were deleted (0 with ``cleanup=False``, or for a profile not made
            through this uploader).

        Raises:
            InvalidRequestError: the profile is still training (its photos are still needed);
                nothing was deleted.
            StorageError: the store refused or failed.
        """
        if not profile.is_terminal:
            raise InvalidRequestError(
                "profile",
                f"profile {profile.id} is {profile.status}: its photos are deleted only once it "
                "is READY or ERROR",
            )
        calls = [o for o in self._photos if o.state == "created" and o.profile_id == profile.id]
        unused = self._drop(calls)
        if not self.cleanup:
            self._unmark(unused)
            return 0
        return await self._delete(unused, "delete the uploaded photos")

    async def discard(self) -> int:
        """Delete the photos of ``profiles.create`` calls that made no profile, except those
        another call still needs; leaving the ``async with`` block does it with
        ``cleanup=True``.

        A call made no profile when it failed before its request was sent (an upload error, a
        deadline, Ctrl-C, a budget refusal) or was refused by the API (such as 402). A call
        whose request may have landed (``OutcomeUnknownError``) keeps its photos, and so do
        calls still running and photos uploaded outside ``profiles.create``.

        Returns:
            How many photos were deleted (0 with ``cleanup=False``: shared keys stay).

        Raises:
            StorageError: the store refused or failed.
        """
        unused = self._drop([o for o in self._photos if o.state == "none"])
        if not self.cleanup:
            self._unmark(unused)
            return 0
        return await self._delete(unused, "delete the photos of failed calls")

    def _unmark(self, keys: list[str]) -> None:
        for key in keys:
            self._deleting.pop(key).set()

    async def delete_uploaded(self) -> int:
        """Delete every object this uploader stored or found; call it once the profile is
        READY or ERROR (Phota reads the photos until then).

        Returns:
            How many keys were deleted.

        Raises:
            StorageError: the store refused or failed.
        """
        keys = [k for k in self._uploaded if k not in self._deleting]
        self._photos.clear()
        self._owners.clear()
        for key in keys:
            self._deleting[key] = asyncio.Event()
        return await self._delete(keys, "delete the uploaded photos")

    async def _delete(self, keys: list[str], what: str) -> int:
        """Delete ``keys`` (marked as being deleted), then unmark them; how many."""
        if not keys:
            return 0
        try:
            client = await self._acquire()
            try:
                for start in range(0, len(keys), 1000):  # the most one DeleteObjects takes
                    batch = keys[start : start + 1000]
                    await self._call(
                        client.delete_objects,
                        what,
                        Bucket=self.bucket,
                        Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                    )
                    for key in batch:
                        self._uploaded.pop(key, None)
            finally:
                await self._release()
        finally:
            self._unmark(keys)
        return len(keys)

    # -- the client's life ------------------------------------------------------------------

    async def _acquire(self) -> Any:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._client is None:
                stack = AsyncExitStack()
                try:
                    context = await self._create_client()
                    self._client = await stack.enter_async_context(context)
                    self._stack = stack
                except BaseException:
                    await stack.aclose()
                    raise
            self._users += 1
            try:
                if not self._checked:
                    await self._check_bucket(self._client)
                    self._checked = True
            except BaseException:
                await self._release()
                raise
            return self._client

    async def _release(self) -> None:
        self._users -= 1
        if self._users == 0 and self._entered == 0:
            await self._close()

    async def _close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            with anyio.CancelScope(shield=True):  # a cancelled upload still closes the pool
                await stack.aclose()

    async def _create_client(self) -> Any:
        # Importing aiobotocore is over a second of blocking work: done in a thread on first
        # use, so that the loop keeps serving meanwhile; S3's models are parsed there too
        # (``_warm``), and the shared loader keeps them for every client.
        session = await off_loop(_prepared_session)
        from aiobotocore.config import AioConfig

        config = AioConfig(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=self.concurrency,
            signature_version="s3v4",
            s3={
                # Path-style URLs work with every S3-compatible store (MinIO needs them).
                "addressing_style": "path" if self.endpoint_url else "auto",
                # Over plain http (a local MinIO, moto) SigV4 would sign the payload's
                # SHA-256, and botocore reads and hashes every file on the event loop to do
                # so (a stall of tens of ms per 4 MiB photo). The photo's SHA-256 travels in
                # the signed x-amz-checksum-sha256 header instead, as botocore does by itself
                # over https.
                "payload_signing_enabled": False,
            },
        )
        return session.create_client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )

    # -- store operations -------------------------------------------------------------------

    async def _check_bucket(self, client: Any) -> None:
        await self._call(client.head_bucket, "reach the bucket", Bucket=self.bucket)

    async def _exists(self, client: Any, key: str) -> bool:
        try:
            await self._call(client.head_object, "look the photo up", Bucket=self.bucket, Key=key)
        except StorageError as exc:
            if exc.code in _MISSING:
                return False
            raise
        return True

    async def _put(
        self, client: Any, key: str, body: bytes | BinaryIO, content_type: str, digest: bytes
    ) -> None:
        if not isinstance(body, bytes):
            body.seek(0)
        await self._call(
            client.put_object,
            "upload the photo",
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            ChecksumSHA256=base64.b64encode(digest).decode(),
        )

    async def _call(self, operation: Any, what: str, **params: Any) -> Any:
        """One store operation, its failures translated into ``StorageError``."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await operation(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = str(error.get("Code") or status)
            raise StorageError(
                self._explain(what, code, exc), code=code, bucket=self.bucket
            ) from exc
        except BotoCoreError as exc:
            raise StorageError(
                f"cannot {what} in bucket {self.bucket!r}: {exc}", code=None, bucket=self.bucket
            ) from exc

    def _explain(self, what: str, code: str, exc: Exception) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        if code in {"404", "NoSuchBucket"} and what == "reach the bucket":
            return (
                f"the bucket {self.bucket!r} does not exist{where}; create it or fix the name "
                "(no training was requested)"
            )
        if code in _FORBIDDEN:
            return (
                f"access to the bucket {self.bucket!r}{where} was denied while trying to {what}; "
                "check the AWS credentials and the bucket's policy"
            )
        return f"cannot {what} in bucket {self.bucket!r}{where}: {exc}"


_loader: Any = None  # botocore's data loader, shared: it caches the models it parsed


def _prepared_session() -> Any:
    """A new aiobotocore session (blocking on first use: run it in a thread).

    Each client gets its own session (credentials are resolved per session, on its loop), but
    they all share one data loader, so S3's models are parsed once per process, not once per
    client.
    """
    global _loader
    try:
        from aiobotocore.session import get_session
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError("S3Uploader needs aiobotocore: pip install 'phota-async[s3]'") from exc
    from aiobotocore.config import AioConfig  # noqa: F401 - imported here, off the loop

    session = get_session()
    if _loader is None:
        loader = session.get_component("data_loader")
        _warm(loader)
        _loader = loader
    else:
        session.register_component("data_loader", _loader)
    return session


def _warm(loader: Any) -> None:
    """Have ``loader`` parse and cache S3's models now, in this thread.

    An aiobotocore client reads them while it is created, on the event loop: the first one
    stalled the loop for about half a second. A plain botocore client, made here through the
    same loader, reads the same files the same way; the clients made after it find them in
    the loader's cache. Dummy credentials: this client sends nothing.
    """
    import botocore.session

    warm = botocore.session.get_session()
    warm.register_component("data_loader", loader)
    client = warm.create_client(
        "s3",
        region_name="us-east-1",
        aws_access_key_id="unused",
        aws_secret_access_key="unused",  # noqa: S106 - a placeholder, never sent
    )
    client.close()


def _extension(filename: str, content_type: str) -> str:
    suffix = Path(filename).suffix.lstrip(".").lower()
    if suffix == "jpeg":
        suffix = "jpg"
    if _SAFE_EXTENSION.fullmatch(suffix):
        return suffix
    return _EXTENSIONS.get(content_type.lower(), "bin")


async def _sha256(data: bytes) -> tuple[bytes, int]:
    """The SHA-256 digest and the size of a photo."""
    if len(data) <= _INLINE_HASH:
        return hashlib.sha256(data).digest(), len(data)
    return await off_loop(lambda: hashlib.sha256(data).digest()), len(data)


def _hash_handle(handle: BinaryIO) -> tuple[bytes, int]:
    digest = hashlib.sha256()
    size = 0
    handle.seek(0)
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return digest.digest(), size


def _identity(handle: BinaryIO) -> tuple[int, int]:
    """The open file's size and modification time: what changes when it is written to."""
    stat = os.fstat(handle.fileno())
    return stat.st_size, stat.st_mtime_ns


def _open(path: Path) -> BinaryIO:
    return path.open("rb")


def _close(handle: BinaryIO) -> None:
    handle.close()
