"""``PhotaClient``: the front door. Builds requests with ``_protocol``, sends them through the
retry wrapper over the transport seam, and decodes the answers into models."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, Unpack

import aiohttp

from . import _protocol as proto
from . import _retry
from ._batch import BatchRun, Calls, Progress
from ._bound import Bound
from ._deadline import QUEUED, SENDING, Deadline, Deadlines, check_seconds
from ._files import off_loop, place, settled, temp_beside
from ._inputs import check_input_type
from ._jobs import Jobs
from ._manifest import Manifest
from ._options import EditOptions, EnhanceOptions, GenerateOptions, ImageInput, RemixOptions
from ._poll import PollBudget, Poller, PollPolicy
from ._profiles import Profiles
from ._protocol import FileBody, Request, Response, StudioCall
from ._retry import RetryPolicy
from ._transport import (
    MAX_IMAGE_BYTES,
    MAX_RESPONSE_BYTES,
    AiohttpTransport,
    MockTransport,
    Transport,
)
from ._validate import (
    BATCH_ARGUMENTS,
    CALL_ARGUMENTS,
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
    OutcomeUnknownError,
    PhotaError,
    ReadTimeoutError,
)
from .models import ImageResult, Job, ResultBody, image_result, sniff_extension

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - an input type
Im = TypeVar("Im", bound=ImageInput)  # an image input type
log = logging.getLogger("phota_async")

DEFAULT_BASE_URL = "https://api.photalabs.com/v1/phota"
DEFAULT_TIMEOUT = 900.0


def _find_key(api_key: str | None) -> str:
    key = api_key or os.environ.get("PHOTA_API_KEY") or os.environ.get("PHOTA_KEY")
    if not key:
        raise InvalidRequestError(
            "api_key", "no API key: pass api_key=... or set the PHOTA_API_KEY environment variable"
        )
    return key


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)


# Options left at their defaults name the same call as options given explicitly with those
# values, so a manifest written by the CLI (which spells every option out) resumes from a script.
_OPTION_DEFAULTS: dict[str, Any] = {
    "n": 1,
    "output_format": "jpg",
    "aspect_ratio": "auto",
    "resolution": "1K",
    "base_model": "nb2",
}


def _identity_options(options: Mapping[str, object]) -> dict[str, object]:
    """The options that tell one batch call from another: defaults and unset values left out
    (``response_mode`` too: a manifest run always asks for URLs)."""
    return {
        k: v
        for k, v in options.items()
        if k != "response_mode" and v is not None and _OPTION_DEFAULTS.get(k, ...) != v
    }


class PhotaClient:
    """An asyncio client for the Phota API.

    Use it as an async context manager, one per event loop, shared by every task::

        async with PhotaClient() as phota:
            result = await phota.enhance(Path("dark.jpg"))
            await result.save("out/")

    Args:
        api_key: the API key; by default ``PHOTA_API_KEY`` (or ``PHOTA_KEY``) from the environment.
        base_url: the API root; by default ``PHOTA_BASE_URL`` or the production URL.
        session: an ``aiohttp.ClientSession`` to borrow; it is never closed by the client.
        transport: a ``Transport`` to use instead (``MockTransport`` in unit tests).
        connect_timeout: seconds allowed to open a connection.
        read_timeout: seconds allowed between bytes of a response.
        timeout: seconds allowed for a whole call, retries and waits included (overridable per
            call with ``timeout=``).
        max_concurrency: the most requests in flight at once from this client (a whole
            number >= 1).
        retry: the ``RetryPolicy``.
        poll: the ``PollPolicy`` for waits (intervals and the client-wide poll budget).
        ssl: passed to aiohttp (``True``, ``False`` or an ``ssl.SSLContext``).
        trust_env: honour proxy environment variables.
        follow_download_redirects: let downloads of signed output URLs follow a redirect to
            another host (by default only redirects within the URL's own scheme, host and
            port are followed, and never one from https to http). Downloads send no API key,
            wherever they go. Ignored with ``transport=``.
        max_response_bytes: the largest response body held in memory, counted after
            decompression (default 64 MiB); for a bytes-mode studio result, its JSON besides
            the images. Past it: ``ResponseTooLargeError``.
        max_image_bytes: the largest output image (default 64 MiB): each one decoded from a
            bytes-mode result (large ones go to temporary files, not memory) and each
            download. Past it: ``ResponseTooLargeError``.

    Raises:
        InvalidRequestError: no API key was given or found, or an option is out of range
            (a timeout that is not a number of seconds >= 0, ``nan``, or ``inf`` where a limit
            is needed; ``max_concurrency`` not a whole number >= 1; a size cap not positive).
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 630.0,
        timeout: float = DEFAULT_TIMEOUT,
        max_concurrency: int = 32,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        ssl: bool | ssl_module.SSLContext = True,
        trust_env: bool = True,
        follow_download_redirects: bool = False,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_image_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        self._api_key = _find_key(api_key)
        self.base_url = (base_url or os.environ.get("PHOTA_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        if not self.base_url.startswith(("http://", "https://")):
            raise InvalidRequestError("base_url", "must start with http:// or https://")
        self._api = proto.Api(self.base_url, self._api_key)
        if (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise InvalidRequestError(
                "max_concurrency", f"must be a whole number >= 1, got {max_concurrency!r}"
            )
        connect_timeout = check_seconds(
            connect_timeout, "connect_timeout", allow_inf=False, allow_zero=False
        )
        read_timeout = check_seconds(
            read_timeout, "read_timeout", allow_inf=False, allow_zero=False
        )
        timeout = check_seconds(timeout, "timeout")
        self._transport: Transport = transport or AiohttpTransport(
            session,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            ssl=ssl,
            trust_env=trust_env,
            limit=max(100, max_concurrency),
            follow_download_redirects=follow_download_redirects,
            max_response_bytes=max_response_bytes,
            max_image_bytes=max_image_bytes,
        )
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._max_concurrency = max_concurrency
        self._bound = Bound(max_concurrency)
        self._deadlines = Deadlines()
        # Our transports mark a request as sent once it has a connection; with any other, a
        # request counts as (possibly) sent as soon as it is handed over.
        self._assume_sent = not isinstance(self._transport, (AiohttpTransport, MockTransport))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._secret: str | None = None
        self.poll_policy = poll or PollPolicy()
        self.poller = Poller(
            PollBudget(self.poll_policy.max_polls_per_second), self._retry.max_retry_after
        )
        self.profiles = Profiles(self)
        self.jobs = Jobs(self)

    def __repr__(self) -> str:
        return f"<PhotaClient base_url={self.base_url!r} api_key=***>"

    @property
    def timeout(self) -> float:
        """The default deadline of a call, in seconds (``math.inf``: none).

        Raises:
            InvalidRequestError: on assignment, a value that is not a number of seconds >= 0.
        """
        return self._timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._timeout = check_seconds(value, "timeout")

    async def __aenter__(self) -> PhotaClient:
        self._check_usable()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this client opened. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        await self._transport.aclose()

    # -- the one path every request takes ------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise PhotaError("this PhotaClient is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise PhotaError(
                "this PhotaClient belongs to another event loop; create one client per loop"
            )

    async def _attempt(
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
        if not self._bound.try_take():
            deadline.phase = QUEUED
            await self._bound.take()
        deadline.phase = SENDING
        request.sent = self._assume_sent
        try:
            if into is None:
                response = await self._transport.send(request)
            else:
                response = await self._transport.download(request, into)
        except PhotaError as exc:
            if debug:
                log.debug(
                    "%s %s attempt %d failed: %s", request.method, request.endpoint, number, exc
                )
            raise
        finally:
            self._bound.give()
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
        return decode(response)

    async def _send(
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
        self._check_usable()
        seconds = self._timeout if timeout is None else check_seconds(timeout, "timeout")
        trail: _retry.Trail | None = None
        deadline: Deadline | None = None
        try:
            with self._deadlines.after(seconds) as deadline:
                try:
                    return await self._attempt(request, decode, 1, into, deadline)
                except PhotaError as first:
                    # Only a failed first attempt pays for the retry machinery.
                    numbers = itertools.count(2)
                    trail = _retry.Trail()
                    return await _retry.call(
                        lambda: self._attempt(request, decode, next(numbers), into, deadline),
                        retry=request.retry,
                        endpoint=request.endpoint,
                        policy=self._retry,
                        first_failure=first,
                        deadline=deadline,
                        trail=trail,
                    )
        except TimeoutError:
            assert deadline is not None
            error = self._cut_off(request, seconds, deadline, trail)
            raise error from error.__cause__

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
            place = f"queued for a concurrency slot (max_concurrency={self._max_concurrency})"
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

    # -- downloads -----------------------------------------------------------------------

    async def _fetch(self, url: str) -> bytes:
        return await self._send(proto.download(url), proto.decode_image)

    async def _save(self, url: str, target: Path) -> str:
        """Stream a signed URL to ``target`` + ``.`` + the real extension, atomically; return
        the extension. ``target``'s name is kept whole (never ``with_suffix``: dots are names).

        A body that is not an image (a cut-short or garbled answer) fails its attempt like any
        other broken download, and is fetched again. Whatever happens, cancellation included,
        the temporary ``.part`` file is gone when this returns or raises: every file step is
        ``settled`` (a cancellation waits for the thread that works on the file).
        """
        tmp = await settled(temp_beside, target, undo=_unlink)
        try:
            head = await self._send(proto.download(url), proto.decode_image, into=tmp)
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
        await self._send(proto.upload(put_url, body, content_type), proto.check, timeout)

    def image_result(
        self, body: ResultBody, output_format: str, request_id: str | None
    ) -> ImageResult:
        """An ``ImageResult`` whose URL outputs download through this client."""
        return image_result(
            body,
            output_format,
            request_id,
            proto.decode_base64_image,
            fetch=self._fetch,
            save=self._save,
        )

    async def run(self, call: StudioCall, *, via_job: bool, timeout: float | None) -> ImageResult:
        """Send a studio call synchronously, or as a job awaited here, within one deadline.

        Raises:
            InvalidRequestError: ``timeout`` is not a number of seconds >= 0 (nothing sent).
        """
        deadline = self._timeout if timeout is None else check_seconds(timeout, "timeout")
        if via_job:
            started = time.monotonic()
            job = await self.jobs.submit(call, timeout=deadline)
            return await job.wait(timeout=max(0.0, deadline - (time.monotonic() - started)))
        request = self._api.post(call.path, call.fields, "paid")
        return await self._send(
            request,
            lambda r: self.image_result(proto.decode_result(r), call.output_format, r.request_id),
            deadline,
        )

    # -- studio calls --------------------------------------------------------------------

    def _budget(self, timeout: float | None) -> float:
        return self._timeout if timeout is None else timeout

    async def generate(
        self,
        prompt: str,
        *,
        via_job: bool = False,
        timeout: float | None = None,
        **options: Unpack[GenerateOptions],
    ) -> ImageResult:
        """Draw new images from a prompt; name trained subjects as ``[[profile_id]]`` in it.

        Args:
            prompt: what to draw. ``[[profile_id]]`` tokens bring in trained subjects.
            via_job: run the call as an asynchronous job and wait for it here: safe to retry,
                no 600 s limit.
            timeout: deadline for the whole call (submit and waiting included), in seconds.
            **options: see ``GenerateOptions``: ``n`` (1-4), ``aspect_ratio``, ``resolution``,
                ``base_model``, ``quality`` (``gpt-image-2`` only), ``output_format``
                (``jpg`` by default) and ``response_mode`` (``bytes`` or ``urls``).

        Returns:
            The ``ImageResult``.

        Raises:
            InvalidRequestError: an unknown option or an invalid value, named in the message
                (nothing was sent).
            APIError: the API refused the call.
            OutcomeUnknownError: the answer was lost and the call may have been charged.
            JobFailedError: with ``via_job``, the job failed.
        """
        call = generate_call(prompt, options, "generate", CALL_ARGUMENTS)
        return await self.run(call, via_job=via_job, timeout=timeout)

    async def edit(
        self,
        prompt: str,
        *,
        images: Sequence[ImageInput],
        via_job: bool = False,
        timeout: float | None = None,
        **options: Unpack[EditOptions],
    ) -> ImageResult:
        """Edit 1-10 images following a prompt, keeping named subjects recognisable.

        Args:
            prompt: the instruction; ``[[profile_id]]`` tokens name trained subjects.
            images: 1-10 inputs, each a ``Path``, an http(s) URL, ``bytes``, a binary file
                object or a PIL image (see ``ImageInput``).
            via_job, timeout: as for ``generate``.
            **options: see ``EditOptions``: those of ``generate`` plus ``profile_ids`` (trained
                subjects to apply, merged with the prompt's tokens).

        Returns:
            The ``ImageResult``.

        Raises:
            InvalidRequestError: an unknown option, an invalid value or an invalid image,
                named in the message (nothing was sent).
            APIError: the API refused the call.
            OutcomeUnknownError: the answer was lost and the call may have been charged.
            JobFailedError: with ``via_job``, the job failed.
        """
        fields = edit_fields(prompt, options, "edit", CALL_ARGUMENTS)
        budget, started = self._budget(timeout), time.monotonic()
        call = await edit_call(fields, images, budget)
        return await self.run(call, via_job=via_job, timeout=left(budget, started))

    async def enhance(
        self,
        image: ImageInput,
        *,
        via_job: bool = False,
        timeout: float | None = None,
        **options: Unpack[EnhanceOptions],
    ) -> ImageResult:
        """Improve a photo (light, colour, noise, sharpness), keeping named subjects true.

        Args:
            image: a ``Path``, an http(s) URL, ``bytes``, a binary file object or a PIL image.
            via_job, timeout: as for ``generate``.
            **options: see ``EnhanceOptions``: ``profile_ids`` (trained subjects in the photo),
                ``prompt`` (optional guidance), ``n``, ``output_format``, ``response_mode``.

        Returns:
            The ``ImageResult``.

        Raises:
            InvalidRequestError: an unknown option, an invalid value or an invalid image,
                named in the message (nothing was sent).
            APIError: the API refused the call.
            OutcomeUnknownError: the answer was lost and the call may have been charged.
            JobFailedError: with ``via_job``, the job failed.
        """
        fields = enhance_fields(options, "enhance", CALL_ARGUMENTS)
        budget, started = self._budget(timeout), time.monotonic()
        call = await enhance_call(image, fields, budget)
        return await self.run(call, via_job=via_job, timeout=left(budget, started))

    async def remix(
        self,
        image: ImageInput,
        *,
        reference: ImageInput,
        via_job: bool = False,
        timeout: float | None = None,
        **options: Unpack[RemixOptions],
    ) -> ImageResult:
        """Restyle ``image`` (the content) after ``reference`` (the style); 2K output.

        Args:
            image: the content photo, in any accepted input form (see ``ImageInput``).
            reference: the style photo, in any accepted input form.
            via_job, timeout: as for ``generate``.
            **options: see ``RemixOptions`` (the same as ``EnhanceOptions``).

        Returns:
            The ``ImageResult``.

        Raises:
            InvalidRequestError: an unknown option, an invalid value or an invalid image,
                named in the message (nothing was sent).
            APIError: the API refused the call.
            OutcomeUnknownError: the answer was lost and the call may have been charged.
            JobFailedError: with ``via_job``, the job failed.
        """
        fields = remix_fields(options, "remix", CALL_ARGUMENTS)
        budget, started = self._budget(timeout), time.monotonic()
        call = await remix_call(image, reference, fields, budget)
        return await self.run(call, via_job=via_job, timeout=left(budget, started))

    # -- many calls at once --------------------------------------------------------------

    def map(
        self,
        call: Callable[[I], Awaitable[ImageResult]],
        inputs: Iterable[I],
        *,
        kind: str = "custom",
        concurrency: int = 16,
        out_dir: str | Path | None = None,
        manifest: str | Path | Manifest | None = None,
        on_progress: Progress | None = None,
    ) -> BatchRun[I]:
        """Run ``call`` on every input, ``concurrency`` at a time; items arrive as they finish.

        Consume the run with ``async for item in phota.map(...)``; breaking out cancels the
        rest at once. One input's exception is that item's ``.error``; the run goes on.

        Args:
            call: an async function of one input returning an ``ImageResult``.
            inputs: the inputs.
            kind: ``enhance``/``remix``/... for the cost summary.
            concurrency: the most items started ahead of those you have taken.
            out_dir: save each result's images there (atomically) as they arrive.
            manifest: a manifest file (SQLite) recording finished inputs; a rerun skips them. Needs
                ``out_dir`` and ``Path`` or URL inputs. A custom call cannot be resumed by key:
                prefer ``enhance_many``/``edit_many``/``remix_many`` for paid exactly-once runs.
            on_progress: called as ``on_progress(summary, item)`` after each item.

        Returns:
            A ``BatchRun`` of ``BatchItem``.

        Raises:
            ValueError: ``concurrency`` is below 1, or a manifest is given without ``out_dir``.
            TypeError: a manifest is given with inputs that are not ``Path`` or URL strings.
        """
        return BatchRun(
            Calls(kind, call), inputs, concurrency=concurrency, out_dir=out_dir,
            manifest=manifest, on_progress=on_progress,
        )  # fmt: skip

    def _room_for_jobs(self, jobs: int) -> AbstractContextManager[None]:
        """Widen the poll budget by what ``jobs`` awaited at once poll at their first pace."""
        return self.poller.budget.widened(jobs / self.poll_policy.job.first)

    def _many(
        self,
        kind: str,
        inputs: Iterable[Im],
        call: Callable[[Im, float | None], Awaitable[ImageResult]],
        submit: Callable[[Im, str | None, float | None], Awaitable[Job]],
        identity: Mapping[str, object],
        *,
        concurrency: int,
        out_dir: str | Path | None,
        manifest: str | Path | Manifest | None,
        via_job: bool,
        on_progress: Progress | None,
        timeout: float | None,
    ) -> BatchRun[Im]:
        """The one batch of studio calls behind ``enhance_many``/``edit_many``/``remix_many``,
        whose options are already checked.

        Each item is ``call(input, timeout)`` (the public synchronous call) or, keyed,
        ``submit(input, client_request_id, timeout)`` (its ``jobs.submit_*`` twin); ``identity``
        tells this batch's calls from others on the same bytes.
        """
        if timeout is not None:
            timeout = check_seconds(timeout, "timeout")
        calls: Calls[Im] = Calls(
            kind,
            lambda value: call(value, timeout),
            submit=submit,
            resume=self.jobs.resume,
            options=_identity_options(identity),
            via_job=via_job,
            timeout=timeout,
            room_for_jobs=self._room_for_jobs,
        )
        return BatchRun(
            calls, inputs, concurrency=concurrency, out_dir=out_dir, manifest=manifest,
            on_progress=on_progress,
        )  # fmt: skip

    def enhance_many(
        self,
        inputs: Iterable[Im],
        *,
        concurrency: int = 16,
        out_dir: str | Path | None = None,
        manifest: str | Path | Manifest | None = None,
        via_job: bool = False,
        on_progress: Progress | None = None,
        timeout: float | None = None,
        **options: Unpack[EnhanceOptions],
    ) -> BatchRun[Im]:
        """Enhance many photos, ``concurrency`` at a time; items arrive as they finish.

        The one right way to consume the run::

            async for item in phota.enhance_many(paths, out_dir="out", manifest="run.manifest"):
                if not item.ok:
                    print(item.input, item.pending or item.error)

        Breaking out of the loop cancels the rest at once. At most ``concurrency`` items are
        started (and paid) ahead of those you have taken. The options are checked here, before
        anything starts; a bad photo is that item's ``error``.

        With a manifest, every photo runs as a keyed job whatever ``via_job`` says (same
        price): its idempotency key is derived from the manifest's run id and the photo's bytes
        and options, and written to the manifest before the submit is sent, so that no crash,
        signal or lost answer makes a photo pay twice. A rerun skips what is done, resumes what
        is pending by the same key or job id, and retries what was refused.

        Args:
            inputs: the photos (``Path`` or URL with a manifest; any ``ImageInput`` otherwise).
            concurrency: the most items started ahead of those you have taken.
            out_dir: write each photo's outputs there as ``{name}-{index}.{ext}``.
            manifest: a write-ahead log file (SQLite) making the run resumable; needs ``out_dir``.
            via_job: without a manifest, run each photo as a job rather than a synchronous call.
            on_progress: called as ``on_progress(summary, item)`` after each item.
            timeout: deadline for each photo's call (with jobs: for its submit and its wait).
            **options: see ``EnhanceOptions`` (``profile_ids``, ``prompt``, ``n``, ...).

        Returns:
            A ``BatchRun`` of ``BatchItem``, typed by the inputs; ``run.summary`` counts the
            outcomes.

        Raises:
            InvalidRequestError: an unknown option, an invalid value or ``timeout`` (nothing
                started).
            ValueError: ``concurrency`` is below 1, or a manifest is given without ``out_dir``.
            TypeError: a manifest is given with inputs that are not ``Path`` or URL strings.
        """
        enhance_fields(options, "enhance_many", BATCH_ARGUMENTS)
        return self._many(
            "enhance", inputs,
            lambda image, t: self.enhance(image, timeout=t, **options),
            lambda image, key, t: self.jobs.submit_enhance(
                image, client_request_id=key, timeout=t, **options
            ),
            options, concurrency=concurrency, out_dir=out_dir, manifest=manifest,
            via_job=via_job, on_progress=on_progress, timeout=timeout,
        )  # fmt: skip

    def edit_many(
        self,
        prompt: str,
        inputs: Iterable[Im],
        *,
        concurrency: int = 16,
        out_dir: str | Path | None = None,
        manifest: str | Path | Manifest | None = None,
        via_job: bool = False,
        on_progress: Progress | None = None,
        timeout: float | None = None,
        **options: Unpack[EditOptions],
    ) -> BatchRun[Im]:
        """Apply one edit prompt to each photo; consumed and resumed as ``enhance_many``.

        Args:
            prompt: the instruction (``[[profile_id]]`` names a subject).
            inputs, concurrency, out_dir, manifest, via_job, on_progress, timeout: as for
                ``enhance_many``.
            **options: see ``EditOptions`` (``profile_ids``, ``n``, ``base_model``, ...).

        Returns:
            A ``BatchRun`` of ``BatchItem``, typed by the inputs.

        Raises:
            InvalidRequestError: an unknown option, an invalid value, prompt or ``timeout``
                (nothing started).
            ValueError: ``concurrency`` is below 1, or a manifest is given without ``out_dir``.
            TypeError: a manifest is given with inputs that are not ``Path`` or URL strings.
        """
        edit_fields(prompt, options, "edit_many", BATCH_ARGUMENTS)
        return self._many(
            "edit", inputs,
            lambda image, t: self.edit(prompt, images=[image], timeout=t, **options),
            lambda image, key, t: self.jobs.submit_edit(
                prompt, images=[image], client_request_id=key, timeout=t, **options
            ),
            {**options, "prompt": prompt}, concurrency=concurrency, out_dir=out_dir,
            manifest=manifest, via_job=via_job, on_progress=on_progress, timeout=timeout,
        )  # fmt: skip

    def remix_many(
        self,
        inputs: Iterable[Im],
        *,
        reference: ImageInput,
        concurrency: int = 16,
        out_dir: str | Path | None = None,
        manifest: str | Path | Manifest | None = None,
        via_job: bool = False,
        on_progress: Progress | None = None,
        timeout: float | None = None,
        **options: Unpack[RemixOptions],
    ) -> BatchRun[Im]:
        """Restyle each photo after one reference; consumed and resumed as ``enhance_many``.

        Args:
            inputs: the content photos.
            reference: the style image (a ``Path`` is identified by its bytes).
            concurrency, out_dir, manifest, via_job, on_progress, timeout: as for
                ``enhance_many``.
            **options: see ``RemixOptions`` (``profile_ids``, ``prompt``, ``n``, ...).

        Returns:
            A ``BatchRun`` of ``BatchItem``, typed by the inputs.

        Raises:
            InvalidRequestError: an unknown option, an invalid value, a reference of a type
                that is not an image input, or an invalid ``timeout`` (nothing started).
            ValueError: ``concurrency`` is below 1, or a manifest is given without ``out_dir``.
            TypeError: a manifest is given with inputs that are not ``Path`` or URL strings.
        """
        remix_fields(options, "remix_many", BATCH_ARGUMENTS)
        check_input_type(reference, "reference")
        return self._many(
            "remix", inputs,
            lambda image, t: self.remix(image, reference=reference, timeout=t, **options),
            lambda image, key, t: self.jobs.submit_remix(
                image, reference=reference, client_request_id=key, timeout=t, **options
            ),
            {**options, "reference": reference}, concurrency=concurrency, out_dir=out_dir,
            manifest=manifest, via_job=via_job, on_progress=on_progress, timeout=timeout,
        )  # fmt: skip

    async def webhook_secret(self, *, refresh: bool = False) -> str:
        """The account's webhook signing secret (fetched once, then cached).

        Args:
            refresh: fetch it again, after a rotation.
        """
        if self._secret is None or refresh:
            request = self._api.get("/webhook-secret")
            self._secret = await self._send(request, proto.decode_secret)
        return self._secret
