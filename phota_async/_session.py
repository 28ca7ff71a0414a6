"""The narrow internal session: everything one request needs, and nothing of the façade.

``PhotaClient`` builds one ``Session`` and hands it to ``Profiles``, ``Jobs``, the batch engine
and the uploaders. They send through it and import no client, so the flow runs one way:
façade -> resources -> session -> retry wrapper -> transport. A session holds the ``Api``
(request builder with the key), the transport, the retry policy, the adaptive limiter with the
concurrency bound (``_limiter``: every attempt takes its turn there), the call deadlines, and
the poller with its policy. It also holds the job primitives (submit, refresh, wait), since a
studio call run ``via_job`` needs them, and it is what a ``Job`` snapshot refreshes and waits
through.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TypeVar

import attrs

from . import _protocol as proto
from . import _retry
from ._budget import Guard, Prices
from ._deadline import QUEUED, SENDING, Deadline, Deadlines, check_seconds
from ._files import off_loop, place, settled, temp_beside
from ._limiter import THROTTLED, Limiter
from ._poll import PollBudget, Poller, PollPolicy, call_back, check_callback, wait_deadline
from ._protocol import FileBody, Request, Response, StudioCall
from ._retry import RetryPolicy
from ._telemetry import OFF, Hooks
from ._transport import Transport
from .errors import (
    JobFailedError,
    OutcomeUnknownError,
    PhotaError,
    ReadTimeoutError,
    ResponseValidationError,
)
from .models import ImageResult, Job, JobStatus, ResultBody, image_result, sniff_extension

T = TypeVar("T")
log = logging.getLogger("phota_async")

DEFAULT_JOB_WAIT = 900.0
# Where a call waits while the server throttles its lane (``Deadline.phase``).
PACED = "held back by the server's rate limit (paced or paused)"
CLOSED_WHILE_WAITING = (
    "this PhotaClient was closed while the call waited for its turn (rate limit); not sent"
)


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


class Session:
    """What a request needs: the usable-check, ``send`` (retries and a deadline over the whole
    call), downloads, file PUTs, studio calls run synchronously or as jobs, and the poller.

    Args:
        api: builds the account's requests (holds the key).
        transport: the transport seam.
        timeout: the default deadline of a call, in seconds (already checked).
        retry: the retry policy.
        max_concurrency: the most requests in flight at once (already checked).
        poll: the poll policy for waits.
        guard: the spend guard (budget and prices); none by default.
        telemetry: the OpenTelemetry hooks (``_telemetry``); off by default.
    """

    def __init__(
        self,
        api: proto.Api,
        transport: Transport,
        *,
        timeout: float,
        retry: RetryPolicy,
        max_concurrency: int,
        poll: PollPolicy,
        guard: Guard | None = None,
        telemetry: Hooks = OFF,
    ) -> None:
        self.api = api
        self.guard = guard or Guard(None, Prices(), "refuse")
        self.transport = transport
        self.timeout = timeout
        self.retry = retry
        self.max_concurrency = max_concurrency
        self.limiter = Limiter(max_concurrency, retry.max_retry_after)
        self.bound = self.limiter.bound
        self.deadlines = Deadlines()
        # A transport that does not say it marks a request as sent once it has a connection
        # (a third-party one) counts a request as (possibly) sent as soon as it is handed over.
        self.assume_sent = not getattr(transport, "marks_sent", False)
        self.poll_policy = poll
        self.telemetry = telemetry
        self.poller = Poller(
            PollBudget(poll.max_polls_per_second), retry.max_retry_after, telemetry
        )
        self.closed = False
        self._loop: asyncio.AbstractEventLoop | None = None

    async def aclose(self) -> None:
        """Close the transport. Idempotent."""
        if self.closed:
            return
        self.closed = True
        # Calls held by a Retry-After pause or a pace would otherwise sleep on, then send
        # through a closed transport: they fail now, unsent.
        self.limiter.close(PhotaError(CLOSED_WHILE_WAITING))
        await self.transport.aclose()

    # -- the one path every request takes ------------------------------------------------

    def check_usable(self) -> None:
        """Refuse a closed session, or one used from another event loop than its first.

        Raises:
            PhotaError: the client is closed, or belongs to another event loop.
        """
        if self.closed:
            raise PhotaError("this PhotaClient is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise PhotaError(
                "this PhotaClient belongs to another event loop; create one client per loop"
            )

    async def attempt(
        self,
        request: Request,
        decode: Callable[[Response], T],
        number: int,
        into: Path | None,
        deadline: Deadline,
    ) -> T:
        """One attempt: send (or download ``into`` a file) under the concurrency bound, log it,
        decode the answer. ``deadline.phase`` and ``request.sent`` say how far it got."""
        debug = log.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        limiter = self.limiter  # the lane looked up inline: this is every request's path
        lane = limiter.by_endpoint.get(request.endpoint) or limiter.by_retry[request.retry]
        starting = False  # holds a slot of the lane's slow-start window
        if not lane.try_take():
            if self.closed:  # a retry after the client was closed
                raise PhotaError(CLOSED_WHILE_WAITING)
            if not lane.open:
                deadline.phase = PACED
                starting = await lane.turn()
            if not self.bound.try_take():
                deadline.phase = QUEUED
                try:
                    await self.bound.take()
                except BaseException:
                    if starting:
                        lane.landed(None)
                    raise
        epoch = lane.epoch
        span = self.telemetry.attempt(request, number)
        deadline.phase = SENDING
        request.sent = self.assume_sent
        status: int | None = None
        try:
            if into is None:
                response = await self.transport.send(request)
            else:
                response = await self.transport.download(request, into)
            status = response.status
        except BaseException as exc:
            span.failed(exc)
            if debug and isinstance(exc, PhotaError):
                log.debug(
                    "%s %s attempt %d failed: %s", request.method, request.endpoint, number, exc
                )
            raise
        finally:
            self.bound.give()
            if starting:
                lane.landed(status)
        if response.status in THROTTLED or lane.rate is not None:
            # The limiter learns from throttled answers, and from every answer while it paces.
            hint = proto.parse_retry_after(response.headers.get("retry-after"))
            lane.answered(response.status, hint, epoch)
        if debug:
            log.debug(
                "%s %s attempt %d -> %d %s in %.1f ms",
                request.method,
                request.endpoint,
                number,
                response.status,
                response.request_id,
                (time.perf_counter() - started) * 1000,
            )
        return span.decoded(response, decode)

    def budget(self, timeout: float | None) -> float:
        """A call's deadline in seconds: ``timeout``, checked, or the client's default.

        Raises:
            InvalidRequestError: ``timeout`` is not a number of seconds >= 0.
        """
        return self.timeout if timeout is None else check_seconds(timeout, "timeout")

    async def send(
        self,
        request: Request,
        decode: Callable[[Response], T],
        timeout: float | None = None,
        *,
        into: Path | None = None,
    ) -> T:
        """Send with retries and a deadline over the whole call; decode the answer.

        With ``into``, the body is streamed into that file and ``decode`` sees its first bytes.
        The deadline lives in the retry layer too: no backoff or ``Retry-After`` wait is
        started that the time left cannot cover.

        Raises:
            InvalidRequestError: ``timeout`` is not a number of seconds >= 0 (nothing sent).
            ReadTimeoutError: the deadline passed and the call cannot have been processed
                (it was queued, connecting, or waiting to retry), or it is a safe call.
            OutcomeUnknownError: the deadline passed after a paid or keyed request was sent.
            PhotaError: the last attempt's error, as ``_retry.call`` raises it.
        """
        self.check_usable()
        seconds = self.budget(timeout)
        with self.telemetry.call(request) as scope:
            decode = scope.wrap(decode)
            trail: _retry.Trail | None = None
            deadline: Deadline | None = None
            try:
                with self.deadlines.after(seconds) as deadline:
                    try:
                        return await self.attempt(request, decode, 1, into, deadline)
                    except PhotaError as first:
                        # Only a failed first attempt pays for the retry machinery.
                        numbers = itertools.count(2)
                        trail = _retry.Trail()
                        return await _retry.call(
                            lambda: self.attempt(request, decode, next(numbers), into, deadline),
                            retry=request.retry,
                            endpoint=request.endpoint,
                            policy=self.retry,
                            first_failure=first,
                            deadline=deadline,
                            trail=trail,
                            ahead=self.limiter.lane(request.endpoint, request.retry).ahead,
                        )
            except TimeoutError:
                assert deadline is not None
                error = self._cut_off(request, seconds, deadline, trail)
                raise error from error.__cause__
            except (PhotaError, asyncio.CancelledError):
                # Left saying whether the failed or cancelled call may have been processed (the
                # spend guard keeps or releases its price by it): the last attempt had been sent,
                # or an earlier one may have been processed. One that failed or was cancelled while
                # paced, queued or waiting to retry a 503 (or ended by the client's closing) was not.
                request.sent = (
                    deadline is not None and deadline.phase == SENDING and request.sent
                ) or (trail is not None and trail.maybe_processed)
                raise

    def _cut_off(
        self, request: Request, seconds: float, deadline: Deadline, trail: _retry.Trail | None
    ) -> PhotaError:
        """The error for a call whose deadline passed: where the time went, whether anything
        was sent, and every attempt's request id."""
        where = f"{request.method} {request.endpoint}"
        phase = deadline.phase
        sent = phase == SENDING and request.sent
        if sent:
            place = "waiting for the answer"
        elif phase == QUEUED:
            place = f"queued for a concurrency slot (max_concurrency={self.max_concurrency})"
        elif phase == SENDING:
            place = "connecting"
        else:
            place = phase
        last = trail.last if trail is not None else None
        earlier = trail is not None and trail.maybe_processed
        before = f"; the attempt before failed with: {last}" if last is not None else ""
        error: PhotaError
        if request.retry != "safe" and (sent or earlier):
            advice = (
                "The job may have been created."
                if request.retry == "keyed"
                else "The call may have been processed and charged; run long calls as jobs "
                "(phota.jobs.submit_*)."
            )
            error = OutcomeUnknownError(
                f"{where}: no answer within the {seconds:g} s deadline (it ran out while "
                f"{place}){before}. {advice}"
            )
        else:
            if sent or earlier:
                unsent = ""
            elif last is None:
                unsent = "; nothing was sent"
            else:
                unsent = "; no later attempt was sent"
            error = ReadTimeoutError(
                f"{where}: the {seconds:g} s deadline passed while {place}{unsent}{before}"
            )
        if trail is not None:
            trail.stamp(error)
        error.__cause__ = last
        return error

    # -- downloads and uploads -----------------------------------------------------------

    async def fetch(self, url: str) -> bytes:
        """The bytes behind a signed output URL."""
        return await self.send(proto.download(url), proto.decode_image)

    async def save(self, url: str, target: Path) -> str:
        """Stream a signed URL to ``target`` + ``.`` + the real extension, atomically; return
        the extension. ``target``'s name is kept whole (never ``with_suffix``: dots are names).

        A body that is not an image (a cut-short or garbled answer) fails its attempt like any
        other broken download, and is fetched again. Whatever happens, cancellation included,
        the temporary ``.part`` file is gone when this returns or raises: every file step is
        ``settled`` (a cancellation waits for the thread that works on the file).
        """
        tmp = await settled(temp_beside, target, undo=_unlink)
        try:
            head = await self.send(proto.download(url), proto.decode_image, into=tmp)
            ext = sniff_extension(head, "jpg")
            # As every other output: whole on disk, then named.
            await settled(place, tmp, target.with_name(f"{target.name}.{ext}"))
            return ext
        finally:
            await settled(_unlink, tmp, dropped=lambda: _unlink(tmp))

    async def put_file(
        self, put_url: str, data: bytes | Path, content_type: str, timeout: float | None = None
    ) -> None:
        """PUT raw bytes or a file (streamed from disk) to a presigned URL; retried as safe."""
        if isinstance(data, Path):
            size = (await off_loop(data.stat)).st_size
            body: bytes | FileBody = FileBody(data, size)
        else:
            body = data
        await self.send(proto.upload(put_url, body, content_type), proto.check, timeout)

    def image_result(
        self, body: ResultBody, output_format: str, request_id: str | None
    ) -> ImageResult:
        """An ``ImageResult`` whose URL outputs download through this session."""
        return image_result(
            body,
            output_format,
            request_id,
            proto.decode_base64_image,
            fetch=self.fetch,
            save=self.save,
        )

    # -- studio calls and jobs -----------------------------------------------------------

    async def run(self, call: StudioCall, *, via_job: bool, timeout: float | None) -> ImageResult:
        """Send a studio call synchronously, or as a job awaited here, within one deadline.

        One telemetry span covers it all (``phota.enhance``...); see ``_run``.
        """
        with self.telemetry.studio(call, submit=False) as scope:
            return scope.record(await self._run(call, via_job=via_job, timeout=timeout))

    async def _run(self, call: StudioCall, *, via_job: bool, timeout: float | None) -> ImageResult:
        """Run a studio call synchronously, or as a job awaited here, within one deadline.

        Under a budget the call's estimated price is reserved first, then settled to what the
        answer says was made, released on a refusal or a 504 (refunded), and kept when the
        outcome is unknown (see ``_budget``).

        Raises:
            InvalidRequestError: ``timeout`` is not a number of seconds >= 0, or the call's
                price is unknown under a budget (nothing sent).
            BudgetExceededError: the call would pass a budget (nothing sent).
        """
        deadline = self.budget(timeout)
        if via_job:
            loop = asyncio.get_running_loop()  # the clock the call's deadlines are kept on
            started = loop.time()
            job = await self.submit(call, timeout=deadline)
            return await self.wait_job(job, max(0.0, deadline - (loop.time() - started)))
        request = self.api.post(call.path, call.fields, "paid")
        self.check_usable()  # a closed client reserves nothing
        reservation = self.guard.reserve_call(call.path, call.fields)
        try:
            result = await self.send(
                request,
                lambda r: self.image_result(
                    proto.decode_result(r), call.output_format, r.request_id
                ),
                deadline,
            )
        except BaseException as exc:
            if reservation is not None:
                reservation.ended_by(exc, retry="paid", sent=request.sent)
            raise
        if reservation is not None:
            reservation.settle_result(result)
        return result

    async def submit(
        self,
        call: StudioCall,
        *,
        client_request_id: str | None = None,
        callback_url: str | None = None,
        timeout: float | None = None,
    ) -> Job:
        """Submit a validated studio call as a job (retried safely with its idempotency key).

        Its telemetry span is ``phota.jobs.submit_<endpoint>`` (none inside a call run
        ``via_job``, whose span covers the submit); see ``_submit``.
        """
        with self.telemetry.studio(call, submit=True) as scope:
            return scope.record(
                await self._submit(
                    call,
                    client_request_id=client_request_id,
                    callback_url=callback_url,
                    timeout=timeout,
                )
            )

    async def _submit(
        self,
        call: StudioCall,
        *,
        client_request_id: str | None,
        callback_url: str | None,
        timeout: float | None,
    ) -> Job:
        """Submit a validated studio call as a job (retried safely with its idempotency key).

        Raises:
            OutcomeUnknownError: every attempt lost its answer (or the deadline cut the last
                one short) after one may have created the job; ``client_request_id`` holds the
                key to submit again with, which returns that job and never charges twice.
        """
        fields = call.as_job(client_request_id, callback_url)
        key = fields["client_request_id"]
        request = self.api.post(call.path, fields, "keyed")
        self.check_usable()
        # Keyed: a resubmit with the same key reuses a reservation kept for it.
        reservation = self.guard.reserve_call(call.path, call.fields, key)

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
            job = await self.send(request, decode, timeout)
        except BaseException as exc:
            if reservation is not None:
                reservation.ended_by(exc, retry="keyed", sent=request.sent)
            if isinstance(exc, OutcomeUnknownError):
                raise _lost_submit(exc, key) from exc.__cause__
            raise
        if reservation is not None:
            self.guard.hold_for_job(job, reservation)
        return job

    async def refresh_job(self, job: Job, timeout: float | None = None) -> Job:
        """A new snapshot of ``job``, keeping what only the client knows (key, format)."""
        request = self.api.get(proto.job_path(job.id))

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

        fresh = await self.send(request, decode, timeout)
        self.guard.job_seen(fresh)  # settles (or refunds) a finished job's reservation
        return fresh

    async def wait_job(
        self, job: Job, timeout: float | None, on_update: Callable[[Job], None] | None = None
    ) -> ImageResult:
        """Wait for ``job`` to finish; every waiter on one job shares one poll loop.
        ``on_update`` sees each snapshot whose status (or error) changed."""
        check_callback(on_update, "on_update")
        report = None if on_update is None else _status_changes(on_update)
        final = await self.poller.wait(
            ("job", job.id),
            lambda: self.refresh_job(job),
            lambda j: j.is_finished,
            lambda _: self.poll_policy.job,
            wait_deadline(timeout, DEFAULT_JOB_WAIT),
            f"job {job.id}",
            report,
        )
        if final.status == JobStatus.FAILED:
            raise JobFailedError(final)
        if final.result is None:
            raise ResponseValidationError(f"job {job.id}: SUCCEEDED without a result")
        return self.image_result(final.result, final.output_format, final.request_id)

    def room_for_jobs(self, jobs: int) -> AbstractContextManager[None]:
        """Widen the poll budget by what ``jobs`` awaited at once poll at their first pace."""
        return self.poller.budget.widened(jobs / self.poll_policy.job.first)


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


def _status_changes(on_update: Callable[[Job], None]) -> Callable[[Job], None]:
    """``on_update`` called only when a job's status or error changed: a server that moves
    ``updated_at`` on every poll must not turn a progress display into a line per poll."""
    last: list[tuple[str, object]] = []

    def report(job: Job) -> None:
        key = (job.status, job.error)
        if last != [key]:
            last[:] = [key]
            call_back(on_update, job)

    return report
