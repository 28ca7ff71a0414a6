"""Frozen snapshots of what the API returns.

Models are immutable: refreshing a profile or a job returns a new object. They are forward
compatible: unknown fields in a response are ignored, and a status string the SDK does not know
is kept as it is (compare against the constants below rather than assuming the set is closed).
Signed URLs are kept out of ``repr``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NoReturn, Protocol

import attrs

from ._blob import close_images


class SpooledImage(Protocol):
    """A decoded output image held in a temporary file (``_decode.SpooledImage``); a protocol
    here, so that models import nothing of the I/O code."""

    head: bytes

    @property
    def closed(self) -> bool:
        """Whether the temporary file was released."""

    def close(self) -> None:
        """Release the temporary file. Idempotent."""

    def read(self) -> bytes:
        """The whole image, read from the temporary file."""

    def save(self, path: Path) -> Path:
        """Copy the image to ``path`` atomically; return the path."""


def wire(name: str) -> dict[str, str]:
    """Field metadata naming the JSON key a field is read from (the converter's rename policy)."""
    return {"wire": name}


class ProfileStatus:
    """Profile statuses. ``VALIDATING -> QUEUING -> IN_PROGRESS -> READY``, or a failure."""

    VALIDATING: Final = "VALIDATING"
    QUEUING: Final = "QUEUING"
    IN_PROGRESS: Final = "IN_PROGRESS"
    READY: Final = "READY"
    ERROR: Final = "ERROR"
    INACTIVE: Final = "INACTIVE"
    UNKNOWN: Final = "UNKNOWN"  # a list answer that gave only ids
    TRAINING: Final = frozenset({VALIDATING, QUEUING, IN_PROGRESS})
    FAILED: Final = frozenset({ERROR, INACTIVE})


class JobStatus:
    """Job statuses. ``QUEUED -> RUNNING -> SUCCEEDED | FAILED``."""

    QUEUED: Final = "QUEUED"
    RUNNING: Final = "RUNNING"
    SUCCEEDED: Final = "SUCCEEDED"
    FAILED: Final = "FAILED"
    FINISHED: Final = frozenset({SUCCEEDED, FAILED})


@attrs.frozen
class Profile:
    """A trained (or training) subject.

    Attributes:
        id: the profile id, used as ``[[id]]`` in prompts.
        status: one of ``ProfileStatus``, or a newer status string kept as is.
        message: the server's explanation, mostly for ``ERROR``; may be ``None`` or empty.
        tag: the immutable tag given at creation, when the answer included it.
    """

    id: str = attrs.field(metadata=wire("profile_id"))
    status: str = ProfileStatus.UNKNOWN
    message: str | None = None
    tag: str | None = None

    @property
    def is_ready(self) -> bool:
        """Whether the profile can be named in studio calls."""
        return self.status == ProfileStatus.READY

    @property
    def is_failed(self) -> bool:
        """Whether training ended without a usable profile (``ERROR`` or ``INACTIVE``)."""
        return self.status in ProfileStatus.FAILED

    @property
    def is_terminal(self) -> bool:
        """Whether the status will not change any more."""
        return self.is_ready or self.is_failed


@attrs.frozen
class KnownSubjects:
    """How often each trained subject appears across the outputs (used for billing)."""

    counts: dict[str, int] = attrs.Factory(dict)


@attrs.frozen
class ResultBody:
    """The 200 body of a studio call, as sent on the wire."""

    known_subjects: KnownSubjects = attrs.Factory(KnownSubjects)
    images: list[str] = attrs.field(factory=list, repr=False)
    download_urls: list[str] = attrs.field(factory=list, repr=False)
    # Images decoded while the answer streamed in, by the marker that stands for each in
    # ``images`` (never read from the wire: the converter skips private fields).
    _decoded: Mapping[str, bytes | SpooledImage] = attrs.field(
        factory=dict, repr=False, eq=False, alias="decoded"
    )


@attrs.frozen
class JobError:
    """Why a job failed."""

    code: str | None = None
    detail: str | None = None


@attrs.frozen
class JobHandle:
    """The 202 answer to an asynchronous submit."""

    id: str = attrs.field(metadata=wire("job_id"))
    status: str = JobStatus.QUEUED
    poll_url: str | None = attrs.field(default=None, repr=False)


class JobBackend(Protocol):
    """What a ``Job`` needs from the client that made it, to refresh and wait on itself."""

    async def refresh_job(self, job: Job) -> Job:
        """The job's current state, fetched once."""

    async def wait_job(
        self, job: Job, timeout: float | None, on_update: Callable[[Job], None] | None = None
    ) -> ImageResult:
        """Poll until the job ends; its result, or the error it ended with."""


class JobResumer(Protocol):
    """Rebuilds saved jobs: ``phota.jobs``."""

    def resume(self, data: dict[str, Any]) -> Job:
        """A job rebuilt from ``Job.to_json()``, bound to this client."""


class HasJobs(Protocol):
    """A client that can resume saved jobs, such as a ``PhotaClient``."""

    @property
    def jobs(self) -> JobResumer:
        """The client's jobs namespace, which resumes saved jobs."""


@attrs.frozen
class Job:
    """A snapshot of an asynchronous job.

    Attributes:
        id: the job id.
        status: one of ``JobStatus``, or a newer status string kept as is.
        client_request_id: the idempotency key it was submitted with, when known.
        created_at, updated_at: server times, when the answer included them.
        error: why it failed, once ``FAILED``.
    """

    id: str = attrs.field(metadata=wire("job_id"))
    status: str = JobStatus.QUEUED
    client_request_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    error: JobError | None = None
    result: ResultBody | None = attrs.field(default=None, repr=False)
    output_format: str = "jpg"
    request_id: str | None = attrs.field(default=None, repr=False, eq=False)
    _backend: JobBackend | None = attrs.field(default=None, repr=False, eq=False, alias="backend")

    @property
    def is_finished(self) -> bool:
        """Whether the job ended, either way."""
        return self.status in JobStatus.FINISHED

    def _bound(self) -> JobBackend:
        if self._backend is None:
            raise ValueError("this Job is not bound to a client; use phota.jobs.resume(data)")
        return self._backend

    async def refresh(self) -> Job:
        """A new snapshot of this job from the API (this one does not change)."""
        return await self._bound().refresh_job(self)

    async def wait(
        self,
        timeout: float | None = 900.0,
        *,
        on_update: Callable[[Job], None] | None = None,
    ) -> ImageResult:
        """Wait until the job finishes; return its result.

        Args:
            timeout: deadline in seconds (``None`` means the default 900 s, never "forever";
                pass ``math.inf`` to wait without limit).
            on_update: called with each new snapshot (``QUEUED``, ``RUNNING``, then the final
                one), once per observed status change, for progress displays; as
                ``profiles.wait_ready``'s. An exception it raises ends the wait and propagates.

        Returns:
            The finished job's ``ImageResult``.

        Raises:
            JobFailedError: the job ended ``FAILED``.
            WaitTimeoutError: the deadline passed (``.last`` holds the last snapshot).
        """
        return await self._bound().wait_job(self, timeout, on_update)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled without its binding to a live client (for multiprocessing and distributed
        # engines): bind the copy again with ``phota.jobs.wait(job)`` or ``Job.from_json``.
        fields = {f.alias: getattr(self, f.name) for f in attrs.fields(Job) if f.alias != "backend"}
        return (_unbound_job, (fields,))

    def to_json(self) -> dict[str, str | None]:
        """What a restarted worker needs to resume this job (see ``Job.from_json``)."""
        return {
            "job_id": self.id,
            "status": self.status,
            "client_request_id": self.client_request_id,
            "output_format": self.output_format,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, object], client: HasJobs) -> Job:
        """Rebuild a job saved with ``to_json()``, bound to ``client`` so it can ``wait()``.

        Args:
            data: what ``to_json()`` returned.
            client: the ``PhotaClient`` to refresh and wait through.

        Returns:
            The ``Job``.

        Raises:
            InvalidRequestError: ``data`` is not a saved job.
        """
        return client.jobs.resume(dict(data))


def _unbound_job(fields: dict[str, Any]) -> Job:
    """Unpickle a job, unbound."""
    return Job(**fields)


_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"WEBP", 8, "webp"),
)


def sniff_extension(data: bytes, fallback: str) -> str:
    """The file extension matching an image's magic bytes (``fallback`` when unknown)."""
    for magic, offset, ext in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return ext
    return fallback


Fetcher = Callable[[str], Awaitable[bytes]]
Saver = Callable[[str, Path], Awaitable[str]]


@attrs.frozen
class OutputImage:
    """One output image: inline bytes, a decoded image in a temporary file, or a signed URL
    downloaded on demand. ``ImageResult.read()`` and ``save()`` handle all three.

    Attributes:
        index: position among the call's outputs.
        data: the image bytes when the call used ``response_mode="bytes"`` and the image is
            at most 1 MiB; a larger one is kept in a temporary file (``data`` is ``None``).
        url: the signed download URL when it used ``"urls"`` (kept out of ``repr``).
        format: ``"jpg"`` or ``"png"``, as requested.
    """

    index: int
    format: str
    data: bytes | None = attrs.field(default=None, repr=False)
    url: str | None = attrs.field(default=None, repr=False)
    _spool: SpooledImage | None = attrs.field(default=None, repr=False, eq=False, alias="spool")


@attrs.frozen
class ImageResult:
    """The outcome of a studio call (or of a finished job).

    Large bytes-mode images (over 1 MiB) are held in unlinked temporary files, not in memory.
    ``aclose()`` (or ``async with result:``) closes them once the result is done with; after
    that ``read()`` and ``save()`` of those images raise ``ValueError``. A result that is never
    closed releases its files when it is garbage-collected.

    Attributes:
        outputs: every output image, in order.
        known_subjects: ``{profile_id: count}`` of trained subjects recognised in the outputs.
        request_id: the ``X-Request-Id`` of the call that produced it.
    """

    outputs: tuple[OutputImage, ...]
    known_subjects: Mapping[str, int]
    request_id: str | None = None
    _fetch: Fetcher | None = attrs.field(default=None, repr=False, eq=False, alias="fetch")
    _save: Saver | None = attrs.field(default=None, repr=False, eq=False, alias="save")

    def __len__(self) -> int:
        return len(self.outputs)

    async def read(self, index: int = 0) -> bytes:
        """The bytes of one output image, downloading it when it is a URL.

        Raises:
            IndexError: there is no output at ``index``.
            ValueError: the image was held in a temporary file that ``aclose()`` released.
            PhotaError: the download failed (``ResponseTooLargeError`` past
                ``max_image_bytes``).
        """
        output = self.outputs[index]
        if output.data is not None:
            return output.data
        if output._spool is not None:
            from ._files import off_loop

            return await off_loop(output._spool.read)
        if output.url is None or self._fetch is None:
            raise ValueError(f"output {index} has neither bytes nor a download URL")
        return await self._fetch(output.url)

    async def save(self, directory: str | Path, *, stem: str = "image") -> list[Path]:
        """Write every output into ``directory`` (created if needed); return the paths.

        Files are named ``{stem}-{index}.{ext}`` with the extension the bytes really have; the
        stem is kept whole, dots included (``2024.05.01 beach`` gives
        ``2024.05.01 beach-0.jpg``). Each file is written to a temporary file and renamed into
        place, so a crash never leaves a partial image under the final name; URL outputs are
        streamed to disk. Files get the permissions of the process's umask.

        Args:
            directory: the folder to write into.
            stem: the name every output's file name starts with.

        Returns:
            The paths written, in output order.

        Raises:
            PhotaError: downloading a URL output failed.
            OSError: the files could not be written.
        """
        from ._files import off_loop, write_atomic

        folder = Path(directory)
        paths: list[Path] = []
        for output in self.outputs:
            if output.data is not None:
                ext = sniff_extension(output.data, output.format)
                target = folder / f"{stem}-{output.index}.{ext}"
                paths.append(await write_atomic(target, output.data))
            elif output._spool is not None:
                ext = sniff_extension(output._spool.head, output.format)
                target = folder / f"{stem}-{output.index}.{ext}"
                paths.append(await off_loop(output._spool.save, target))
            elif output.url is not None and self._save is not None:
                # The saver appends the extension the downloaded bytes turn out to have.
                ext = await self._save(output.url, folder / f"{stem}-{output.index}")
                paths.append(folder / f"{stem}-{output.index}.{ext}")
            else:
                raise ValueError(f"output {output.index} has neither bytes nor a download URL")
        return paths

    async def aclose(self) -> None:
        """Release the temporary files of large bytes-mode images. Idempotent."""
        from ._files import off_loop

        for output in self.outputs:
            if output._spool is not None and not output._spool.closed:
                await off_loop(output._spool.close)  # freeing a large file's pages takes time

    async def __aenter__(self) -> ImageResult:
        return self

    def __reduce__(self) -> NoReturn:
        # Its images may live in temporary files or behind a live client's downloads: what
        # crosses a process boundary is their bytes or their saved paths.
        raise TypeError(
            "an ImageResult does not pickle: send `await result.read(i)` bytes or the paths "
            "of `await result.save(dir)` instead"
        )

    def __enter__(self) -> NoReturn:
        raise TypeError("use `async with result:` (ImageResult is an async context manager)")

    def __exit__(self, *exc: object) -> NoReturn:
        raise TypeError("use `async with result:` (ImageResult is an async context manager)")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def image_result(
    body: ResultBody,
    output_format: str,
    request_id: str | None,
    decode: Callable[[str], bytes],
    fetch: Fetcher | None = None,
    save: Saver | None = None,
) -> ImageResult:
    """Build an ``ImageResult`` from a wire body (base64 images or signed URLs alike)."""
    outputs: list[OutputImage] = []
    try:
        for i, s in enumerate(body.images):
            found = body._decoded.get(s)
            if found is None:
                outputs.append(OutputImage(index=i, format=output_format, data=decode(s)))
            elif isinstance(found, bytes):
                outputs.append(OutputImage(index=i, format=output_format, data=found))
            else:
                outputs.append(OutputImage(index=i, format=output_format, spool=found))
    except BaseException:
        # A later image that does not decode: the spooled ones are closed now, not whenever
        # the error's traceback (which holds them) is dropped.
        close_images(body._decoded.values())
        raise
    used = set(body.images)
    for marker, unused in body._decoded.items():
        if marker not in used and not isinstance(unused, bytes):
            unused.close()  # a long string outside ``images``: an unknown field, ignored
    outputs += [
        OutputImage(index=len(outputs) + i, format=output_format, url=u)
        for i, u in enumerate(body.download_urls)
    ]
    return ImageResult(
        outputs=tuple(outputs),
        known_subjects=dict(body.known_subjects.counts),
        request_id=request_id,
        fetch=fetch,
        save=save,
    )


# Annotations are resolved now, in this module's namespace: the package re-exports some of
# these classes under ``__module__ = "phota_async"``, where the names they mention are absent.
for _model in (Profile, KnownSubjects, ResultBody, JobError, JobHandle, Job, OutputImage):
    attrs.resolve_types(_model)
del _model
