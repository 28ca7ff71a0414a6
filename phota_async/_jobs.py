"""``phota.jobs``: asynchronous studio calls that survive retries and restarts.

A submit sends ``async: true`` with ``response_mode: "urls"`` and a ``client_request_id`` made
once per logical submit and reused on every retry, so a retried submit returns the original job
instead of paying for a second one. ``Job.to_json()`` keeps what a restarted worker needs to
resume waiting on the same job.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Unpack

import attrs

from . import _protocol as proto
from ._converter import structure
from ._options import EditOptions, EnhanceOptions, GenerateOptions, ImageInput, RemixOptions
from ._poll import wait_deadline
from ._protocol import Response, StudioCall
from ._validate import (
    SUBMIT_ARGUMENTS,
    edit_call,
    edit_fields,
    enhance_call,
    enhance_fields,
    generate_call,
    left,
    remix_call,
    remix_fields,
)
from .errors import (
    InvalidRequestError,
    JobFailedError,
    OutcomeUnknownError,
    ResponseValidationError,
)
from .models import ImageResult, Job, JobStatus

if TYPE_CHECKING:
    from ._client import PhotaClient

DEFAULT_JOB_WAIT = 900.0


class Jobs:
    """Asynchronous jobs: ``phota.jobs``."""

    def __init__(self, client: PhotaClient) -> None:
        self._client = client

    # -- submitting ----------------------------------------------------------------------

    async def submit(
        self,
        call: StudioCall,
        *,
        client_request_id: str | None = None,
        callback_url: str | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Submit a validated studio call as a job (retried safely with its idempotency key).

        Raises:
            OutcomeUnknownError: every attempt lost its answer (or the deadline cut the last
                one short) after one may have created the job; ``client_request_id`` holds the
                key to submit again with, which returns that job and never charges twice.
        """
        client = self._client
        fields = call.as_job(client_request_id, callback_url)
        key = fields["client_request_id"]
        request = client._api.post(call.path, fields, "keyed")

        def decode(response: Response) -> Job:
            handle = proto.decode_job_handle(response)
            return Job(
                id=handle.id,
                status=handle.status,
                client_request_id=key,
                output_format=call.output_format,
                request_id=response.request_id,
                backend=self,
            )

        try:
            return await client._send(request, decode, timeout)
        except OutcomeUnknownError as exc:
            raise _lost_submit(exc, key) from exc.__cause__

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
            client_request_id: your idempotency key (one is made when omitted); the same key
                sent again returns the original job.
            callback_url: an https URL to receive the signed job when it finishes.
            timeout: deadline for the submit, in seconds.
            **options: see ``GenerateOptions`` (as for ``PhotaClient.generate``).

        Returns:
            The ``Job``; ``await job.wait()`` for its ``ImageResult``.

        Raises:
            InvalidRequestError: an unknown option or an invalid value (nothing was sent).
            OutcomeUnknownError: the submit's answer was lost; submit again with its
                ``client_request_id``.
        """
        call = generate_call(prompt, options, "submit_generate", SUBMIT_ARGUMENTS)
        return await self.submit(
            call, client_request_id=client_request_id, callback_url=callback_url, timeout=timeout
        )

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
            prompt, images: as for ``PhotaClient.edit``.
            client_request_id, callback_url, timeout: as for ``submit_generate``.
            **options: see ``EditOptions``.

        Returns:
            The ``Job``.

        Raises:
            InvalidRequestError: an unknown option, an invalid value or image (nothing sent).
            OutcomeUnknownError: as for ``submit_generate``.
        """
        fields = edit_fields(prompt, options, "submit_edit", SUBMIT_ARGUMENTS)
        budget, started = self._client.timeout if timeout is None else timeout, time.monotonic()
        call = await edit_call(fields, images, budget)
        return await self.submit(
            call,
            client_request_id=client_request_id,
            callback_url=callback_url,
            timeout=left(budget, started),
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
            client_request_id, callback_url, timeout: as for ``submit_generate``.
            **options: see ``EnhanceOptions``.

        Returns:
            The ``Job``.

        Raises:
            InvalidRequestError: an unknown option, an invalid value or image (nothing sent).
            OutcomeUnknownError: as for ``submit_generate``.
        """
        fields = enhance_fields(options, "submit_enhance", SUBMIT_ARGUMENTS)
        budget, started = self._client.timeout if timeout is None else timeout, time.monotonic()
        call = await enhance_call(image, fields, budget)
        return await self.submit(
            call,
            client_request_id=client_request_id,
            callback_url=callback_url,
            timeout=left(budget, started),
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
            image, reference: as for ``PhotaClient.remix``.
            client_request_id, callback_url, timeout: as for ``submit_generate``.
            **options: see ``RemixOptions``.

        Returns:
            The ``Job``.

        Raises:
            InvalidRequestError: an unknown option, an invalid value or image (nothing sent).
            OutcomeUnknownError: as for ``submit_generate``.
        """
        fields = remix_fields(options, "submit_remix", SUBMIT_ARGUMENTS)
        budget, started = self._client.timeout if timeout is None else timeout, time.monotonic()
        call = await remix_call(image, reference, fields, budget)
        return await self.submit(
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
        return await self.refresh_job(Job(id=proto.check_id(job_id, "job_id")), timeout)

    async def refresh_job(self, job: Job, timeout: float | None = None) -> Job:
        """A new snapshot of ``job``, keeping what only the client knows (key, format)."""
        client = self._client
        request = client._api.get(proto.job_path(job.id))

        def decode(response: Response) -> Job:
            fresh = proto.decode_job(response)
            if fresh.id != job.id:  # another job's answer must not pass for this one's result
                raise ResponseValidationError(f"job {job.id}: the answer is about job {fresh.id}")
            return attrs.evolve(
                fresh,
                client_request_id=job.client_request_id,
                output_format=job.output_format,
                request_id=response.request_id,
                backend=self,
            )

        return await client._send(request, decode, timeout)

    async def wait_job(self, job: Job, timeout: float | None) -> ImageResult:
        """Wait for ``job`` to finish; every waiter on one job shares one poll loop."""
        client = self._client
        final = await client.poller.wait(
            ("job", job.id),
            lambda: self.refresh_job(job),
            lambda j: j.is_finished,
            lambda _: client.poll_policy.job,
            wait_deadline(timeout, DEFAULT_JOB_WAIT),
            f"job {job.id}",
        )
        if final.status == JobStatus.FAILED:
            raise JobFailedError(final)
        if final.result is None:
            raise ResponseValidationError(f"job {job.id}: SUCCEEDED without a result")
        return client.image_result(final.result, final.output_format, final.request_id)

    async def wait(
        self, job: Job | str, *, timeout: float | None = DEFAULT_JOB_WAIT
    ) -> ImageResult:
        """Wait for a job (or job id) to finish and return its result.

        Raises:
            JobFailedError: the job ended FAILED (``.job`` holds it).
            WaitTimeoutError: the deadline passed (``.last`` is the last snapshot).
        """
        target = job if isinstance(job, Job) else Job(id=proto.check_id(job, "job_id"))
        return await self.wait_job(target, timeout)

    def resume(self, data: dict[str, Any]) -> Job:
        """A ``Job`` from ``Job.to_json()`` output, bound to this client, ready to ``wait()``."""
        return job_from_json(data, self)

    def notify(self, job_id: str) -> bool:
        """Poll ``job_id`` now (a verified webhook said it changed); ``False`` if nobody waits."""
        return self._client.poller.nudge(("job", job_id))


def _lost_submit(exc: OutcomeUnknownError, key: str) -> OutcomeUnknownError:
    """``exc`` with the submit's idempotency key, and what to do with it."""
    error = OutcomeUnknownError(
        f"{exc} Submit again with client_request_id={key!r}: the server returns the original "
        "job for the same key, so it is never charged twice."
    )
    error.client_request_id = key
    error.request_ids = exc.request_ids
    error.attempts = exc.attempts
    return error


def job_from_json(data: Any, backend: Jobs) -> Job:
    """Rebuild a job snapshot saved with ``Job.to_json()``."""
    if not isinstance(data, dict) or not isinstance(data.get("job_id"), str):
        raise InvalidRequestError("data", "not a saved job: expected a dict with job_id")
    job = structure(data, Job, "saved job")
    return attrs.evolve(job, backend=backend)
