"""``phota.jobs``: asynchronous studio calls that survive retries and restarts.

A submit sends ``async: true`` with ``response_mode: "urls"`` and a ``client_request_id`` made
once per logical submit and reused on every retry, so a retried submit returns the original job
instead of paying for a second one. ``Job.to_json()`` keeps what a restarted worker needs to
resume waiting on the same job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Unpack

import attrs

from . import _protocol as proto
from ._converter import structure
from ._options import EditOptions, EnhanceOptions, GenerateOptions, ImageInput, RemixOptions
from ._session import DEFAULT_JOB_WAIT, Session
from ._validate import (
    SUBMIT_ARGUMENTS,
    clock,
    edit_call,
    edit_fields,
    enhance_call,
    enhance_fields,
    generate_call,
    left,
    remix_call,
    remix_fields,
)
from .errors import InvalidRequestError
from .models import ImageResult, Job, JobBackend


class Jobs:
    """Asynchronous jobs: ``phota.jobs``.

    Args:
        session: the client's session, which every submit, poll and download goes through.
    """

    def __init__(self, session: Session) -> None:
        self._session = session

    # -- submitting ----------------------------------------------------------------------

    async def submit_generate(
        self,
        prompt: str,
        *,
        client_request_id: str | None = None,
        callback_url: str | None = None,
        timeout: float | None = None,
        **options: Unpack[GenerateOptions],
    ) -> Job:
        """Submit a generate as a job.

        Args:
            prompt: what to draw.
            client_request_id: your idempotency key, 1-256 characters (one is made when
                omitted); the same key sent again returns the original job.
            callback_url: an https URL to receive the signed job when it finishes.
            timeout: deadline for the submit, in seconds.
            **options: see ``GenerateOptions`` (as for ``PhotaClient.generate``).

        Returns:
            The ``Job``; ``await job.wait()`` for its ``ImageResult``.

        Raises:
            InvalidRequestError: an unknown option, an invalid value, key, callback URL or
                timeout (nothing was sent).
            OutcomeUnknownError: the submit's answer was lost; submit again with its
                ``client_request_id``.
        """
        call = generate_call(prompt, options, "submit_generate", SUBMIT_ARGUMENTS)
        return await self._submit(call, client_request_id, callback_url, timeout)

    async def submit_edit(
        self,
        prompt: str,
        *,
        images: Sequence[ImageInput],
        client_request_id: str | None = None,
        callback_url: str | None = None,
        timeout: float | None = None,
        **options: Unpack[EditOptions],
    ) -> Job:
        """Submit an edit as a job.

        Args:
            prompt: as for ``PhotaClient.edit``.
            images: as for ``PhotaClient.edit``.
            client_request_id: as for ``submit_generate``.
            callback_url: as for ``submit_generate``.
            timeout: as for ``submit_generate``.
            **options: see ``EditOptions``.

        Returns:
            The ``Job``.

        Raises:
            InvalidRequestError: an unknown option, an invalid value or image (nothing sent).
            OutcomeUnknownError: as for ``submit_generate``.
        """
        fields = edit_fields(prompt, options, "submit_edit", SUBMIT_ARGUMENTS)
        return await self._submit(
            lambda t: edit_call(fields, images, t), client_request_id, callback_url, timeout
        )

    async def submit_enhance(
        self,
        image: ImageInput,
        *,
        client_request_id: str | None = None,
        callback_url: str | None = None,
        timeout: float | None = None,
        **options: Unpack[EnhanceOptions],
    ) -> Job:
        """Submit an enhance as a job.

        Args:
            image: as for ``PhotaClient.enhance``.
            client_request_id: as for ``submit_generate``.
            callback_url: as for ``submit_generate``.
            timeout: as for ``submit_generate``.
            **options: see ``EnhanceOptions``.

        Returns:
            The ``Job``.

        Raises:
            InvalidRequestError: an unknown option, an invalid value or image (nothing sent).
            OutcomeUnknownError: as for ``submit_generate``.
        """
        fields = enhance_fields(options, "submit_enhance", SUBMIT_ARGUMENTS)
        return await self._submit(
            lambda t: enhance_call(image, fields, t), client_request_id, callback_url, timeout
        )

    async def submit_remix(
        self,
        image: ImageInput,
        *,
        reference: ImageInput,
        client_request_id: str | None = None,
        callback_url: str | None = None,
        timeout: float | None = None,
        **options: Unpack[RemixOptions],
    ) -> Job:
        """Submit a remix as a job.

        Args:
            image: as for ``PhotaClient.remix``.
            reference: as for ``PhotaClient.remix``.
            client_request_id: as for ``submit_generate``.
            callback_url: as for ``submit_generate``.
            timeout: as for ``submit_generate``.
            **options: see ``RemixOptions``.

        Returns:
            The ``Job``.

        Raises:
            InvalidRequestError: an unknown option, an invalid value or image (nothing sent).
            OutcomeUnknownError: as for ``submit_generate``.
        """
        fields = remix_fields(options, "submit_remix", SUBMIT_ARGUMENTS)
        return await self._submit(
            lambda t: remix_call(image, reference, fields, t),
            client_request_id,
            callback_url,
            timeout,
        )

    async def _submit(
        self,
        call: proto.StudioCall | Callable[[float], Awaitable[proto.StudioCall]],
        client_request_id: str | None,
        callback_url: str | None,
        timeout: float | None,
    ) -> Job:
        """Submit ``call``, or the call its images make once described (within the deadline:
        describing them counts against it), after checking the submit's own arguments."""
        proto.check_async(client_request_id, callback_url)
        budget, started = self._session.budget(timeout), clock()
        if not isinstance(call, proto.StudioCall):
            call = await call(budget)
        return await self._session.submit(
            call,
            client_request_id=client_request_id,
            callback_url=callback_url,
            timeout=left(budget, started),
        )

    # -- following -----------------------------------------------------------------------

    async def get(self, job_id: str, *, timeout: float | None = None) -> Job:
        """A fresh snapshot of a job.

        Raises:
            InvalidRequestError: ``job_id`` is not a valid id.
            NotFoundError: there is no such job.
        """
        job = Job(id=proto.check_id(job_id, "job_id"))
        return await self._session.refresh_job(job, timeout)

    async def wait(
        self,
        job: Job | str,
        *,
        timeout: float | None = DEFAULT_JOB_WAIT,
        on_update: Callable[[Job], None] | None = None,
    ) -> ImageResult:
        """Wait for a job (or job id) to finish and return its result.

        Every waiter on one job shares one poll loop.

        Args:
            job: the ``Job`` or its id.
            timeout: the deadline in seconds (``None`` means the default 900 s, never
                "forever"; pass ``math.inf`` to wait without limit).
            on_update: called with each new snapshot, once per observed status change
                (``QUEUED``, ``RUNNING``, then the final one), for progress displays; as
                ``profiles.wait_ready``'s. An exception it raises ends the wait and propagates.

        Returns:
            The finished job's ``ImageResult``.

        Raises:
            InvalidRequestError: ``job`` is not a valid id.
            JobFailedError: the job ended FAILED (``.job`` holds it).
            WaitTimeoutError: the deadline passed (``.last`` is the last snapshot).
        """
        target = job if isinstance(job, Job) else Job(id=proto.check_id(job, "job_id"))
        return await self._session.wait_job(target, timeout, on_update)

    def resume(self, data: dict[str, Any]) -> Job:
        """A ``Job`` from ``Job.to_json()`` output, bound to this client, ready to ``wait()``."""
        return job_from_json(data, self._session)

    def notify(self, job_id: str) -> bool:
        """Poll ``job_id`` now (a verified webhook said it changed); ``False`` if nobody waits."""
        return self._session.poller.nudge(("job", job_id))


def job_from_json(data: Any, backend: JobBackend) -> Job:
    """Rebuild a job snapshot saved with ``Job.to_json()``."""
    if not isinstance(data, dict) or not isinstance(data.get("job_id"), str):
        raise InvalidRequestError("data", "not a saved job: expected a dict with job_id")
    job = structure(data, Job, "saved job")
    return attrs.evolve(job, backend=backend)
