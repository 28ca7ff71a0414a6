"""``PhotaClient``: the front door, a façade only. It checks its options, builds the one
``Session`` (``_session``: the send path, downloads, file PUTs, the poller) and hands it to
``profiles`` and ``jobs``; studio calls validate their inputs (``_validate``) and run through it."""

from __future__ import annotations

import math
import os
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn, TypeVar, Unpack

import aiohttp

from . import _protocol as proto
from ._batch import BatchRun, Calls, Progress
from ._budget import Budget, Guard, Prices, Spend, UnknownPrice, as_budget
from ._deadline import check_seconds
from ._inputs import check_input_type
from ._jobs import Jobs
from ._limiter import ThrottleStats
from ._manifest import Manifest
from ._options import EditOptions, EnhanceOptions, GenerateOptions, ImageInput, RemixOptions
from ._poll import PollPolicy
from ._profiles import Profiles
from ._redact import shown
from ._retry import RetryPolicy
from ._session import Session
from ._telemetry import Telemetry, hooks_for
from ._transport import (
    MAX_IMAGE_BYTES,
    MAX_RESPONSE_BYTES,
    AiohttpTransport,
    Transport,
)
from ._validate import (
    BATCH_ARGUMENTS,
    CALL_ARGUMENTS,
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
from .models import ImageResult, Job

I = TypeVar("I")  # noqa: E741 - an input type
Im = TypeVar("Im", bound=ImageInput)  # an image input type

DEFAULT_BASE_URL = "https://api.photalabs.com/v1/phota"
DEFAULT_TIMEOUT = 900.0


def _find_key(api_key: str | None) -> str:
    if api_key is not None and not isinstance(api_key, str):
        raise InvalidRequestError("api_key", f"must be a string, got {type(api_key).__name__}")
    key = api_key or os.environ.get("PHOTA_API_KEY") or os.environ.get("PHOTA_KEY")
    if not key:
        raise InvalidRequestError(
            "api_key", "no API key: pass api_key=... or set the PHOTA_API_KEY environment variable"
        )
    return key


def _check_types(*arguments: tuple[str, object, type | tuple[type, ...]]) -> None:
    """Refuse a client option of the wrong type by name, rather than failing later on it."""
    for name, value, expected in arguments:
        if value is not None and not isinstance(value, expected):
            kinds = expected if isinstance(expected, tuple) else (expected,)
            raise InvalidRequestError(
                name,
                f"must be {' or '.join(k.__name__ for k in kinds)}, got {type(value).__name__}",
            )


_SYNC_WITH = (
    "PhotaClient is an async context manager: use `async with PhotaClient() as phota:` "
    "inside a coroutine (or asyncio.run(main()))"
)


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

    Use it as an async context manager, one per event loop, shared by every task:

    ```python
    async with PhotaClient() as phota:
        result = await phota.enhance(Path("dark.jpg"))
        await result.save("out/")
    ```

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
        budget: a spending cap in dollars, or a ``Budget`` (which several clients may share):
            before each paid call its worst-case price is reserved (an enhance or remix at the
            recognised-subject price, $0.15 an image, named or not) and later settled to the
            charge, and a call that would pass the cap raises ``BudgetExceededError`` without
            being sent. A call whose outcome is
            unknown (``OutcomeUnknownError``) keeps its reservation, since it may have been
            charged. ``None`` (the default): no checks. See ``spend``.
        prices: the price table (a ``Prices``, or ``{key: dollars}`` added to Phota's published
            prices), such as ``{"edit/nb2": 0.08}``: edit and generate prices are not published.
            A model's key prices its 1K images; 2K and 4K need ``edit/<model>/2K`` (or ``4K``),
            or such calls count as unknown.
        unknown_price: under a budget, ``"refuse"`` (the default) a call whose price is not in
            the table with ``InvalidRequestError`` before sending, or ``"allow"`` it (reserving
            nothing: such calls are counted as ``unpriced``, not capped).
        telemetry: OpenTelemetry spans and metrics (the ``[otel]`` extra). ``None`` (the
            default): recorded when OpenTelemetry is imported and a global tracer or meter
            provider is set by the time the client is created, otherwise nothing is recorded
            and OpenTelemetry is not imported. ``False``: never. ``True`` or a
            ``phota_async.otel.Telemetry``: always (choose providers, opt into prompts).

    Raises:
        InvalidRequestError: no API key was given or found, or an option is out of range
            (a timeout that is not a number of seconds >= 0, ``nan``, or ``inf`` where a limit
            is needed; ``max_concurrency`` not a whole number >= 1; a size cap not positive;
            ``session``, ``transport``, ``retry``, ``poll`` or ``ssl`` of the wrong type; a
            budget or a price that is not dollars >= 0; ``telemetry`` of the wrong type,
            or asked for without OpenTelemetry installed).
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
        budget: float | Budget | None = None,
        prices: Prices | Mapping[str, float] | None = None,
        unknown_price: UnknownPrice = "refuse",
        telemetry: Telemetry | bool | None = None,
    ) -> None:
        api_key = _find_key(api_key)
        if prices is not None and not isinstance(prices, Prices):
            prices = Prices().extended(prices)
        guard = Guard(as_budget(budget, "client"), prices or Prices(), unknown_price)
        hooks = hooks_for(telemetry, guard.prices)
        self.base_url = (base_url or os.environ.get("PHOTA_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        if not self.base_url.startswith(("http://", "https://")):
            raise InvalidRequestError("base_url", "must start with http:// or https://")
        if (
            isinstance(max_concurrency, bool)
            or not isinstance(max_concurrency, int)
            or max_concurrency < 1
        ):
            raise InvalidRequestError(
                "max_concurrency", f"must be a whole number >= 1, got {shown(max_concurrency)}"
            )
        connect_timeout = check_seconds(
            connect_timeout, "connect_timeout", allow_inf=False, allow_zero=False
        )
        read_timeout = check_seconds(
            read_timeout, "read_timeout", allow_inf=False, allow_zero=False
        )
        timeout = check_seconds(timeout, "timeout")
        _check_types(
            ("session", session, aiohttp.ClientSession),
            ("retry", retry, RetryPolicy),
            ("poll", poll, PollPolicy),
            ("ssl", ssl, (bool, ssl_module.SSLContext)),
        )
        if transport is not None and not (
            callable(getattr(transport, "send", None))
            and callable(getattr(transport, "aclose", None))
        ):
            raise InvalidRequestError(
                "transport",
                f"must be a Transport (send and aclose), got {type(transport).__name__}",
            )
        transport = transport or AiohttpTransport(
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
        self._session = Session(
            proto.Api(self.base_url, api_key),
            transport,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            max_concurrency=max_concurrency,
            poll=poll or PollPolicy(),
            guard=guard,
            telemetry=hooks,
        )
        self._secret: str | None = None
        self.profiles = Profiles(self._session)
        """Trained subjects: create, list, wait for training (see ``Profiles``)."""
        self.jobs = Jobs(self._session)
        """Asynchronous jobs: submit now, wait later, resume after a restart (see ``Jobs``)."""

    def __repr__(self) -> str:
        return f"<PhotaClient base_url={self.base_url!r} api_key=***>"

    @property
    def spend(self) -> Spend | None:
        """A snapshot of the client's budget ledger, or ``None`` without a budget.

        It holds what was spent, refunded and pending (reserved for calls in flight or of
        unknown outcome), overall and per endpoint. ``budget=math.inf`` tracks spending
        without a cap."""
        budget = self._session.guard.budget
        return budget.spend if budget is not None else None

    @property
    def throttle(self) -> ThrottleStats:
        """The adaptive limiter now: how the server's throttling has slowed this client.

        Every task of the client shares one limiter. After a 429 or a 503 it paces that class
        of requests (studio POSTs, API GETs, downloads: each its own lane) and honours
        ``Retry-After`` as a pause for all of them, then speeds up again while calls succeed,
        up to ``max_concurrency``.

        Returns:
            A frozen ``ThrottleStats`` snapshot: ``max_concurrency``, ``in_flight``,
            ``throttled`` (429/503 answers so far), the studio lane's ``rate`` (requests per
            second, ``None`` while unthrottled) and ``pause_left``, and every lane's figures.
        """
        return self._session.limiter.stats()

    @property
    def timeout(self) -> float:
        """The default deadline of a call, in seconds (``math.inf``: none).

        Raises:
            InvalidRequestError: on assignment, a value that is not a number of seconds >= 0.
        """
        return self._session.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._session.timeout = check_seconds(value, "timeout")

    async def __aenter__(self) -> PhotaClient:
        self._session.check_usable()
        return self

    def __enter__(self) -> NoReturn:
        """Refuse a plain ``with``: the client is an async context manager.

        Raises:
            TypeError: always; use ``async with PhotaClient() as phota:``.
        """
        raise TypeError(_SYNC_WITH)

    def __exit__(self, *exc: object) -> NoReturn:
        """Never reached: ``__enter__`` refuses a plain ``with``."""
        raise TypeError(_SYNC_WITH)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this client opened. Safe to call more than once."""
        await self._session.aclose()

    # -- studio calls --------------------------------------------------------------------

    async def _run(
        self,
        prepare: Callable[[float], Awaitable[proto.StudioCall]],
        via_job: bool,
        timeout: float | None,
    ) -> ImageResult:
        """Run the call ``prepare`` makes once its images are described: describing them
        counts against the deadline, and what is left of it is the call's."""
        budget, started = self._session.budget(timeout), clock()
        call = await prepare(budget)
        return await self._session.run(call, via_job=via_job, timeout=left(budget, started))

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
        return await self._session.run(call, via_job=via_job, timeout=timeout)

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
            via_job: as for ``generate``.
            timeout: as for ``generate``.
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
        return await self._run(lambda t: edit_call(fields, images, t), via_job, timeout)

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
            via_job: as for ``generate``.
            timeout: as for ``generate``.
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
        return await self._run(lambda t: enhance_call(image, fields, t), via_job, timeout)

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
            via_job: as for ``generate``.
            timeout: as for ``generate``.
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
        return await self._run(lambda t: remix_call(image, reference, fields, t), via_job, timeout)

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
        budget: float | Budget | None = None,
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
            on_progress: called as ``on_progress(progress, item)`` after each item, with a
                frozen ``BatchProgress`` (counts, throttling, spend).
            budget: cap the paid calls ``call`` makes for this run, in dollars or a ``Budget``
                (within the client's budget, if any); see ``enhance_many``.

        Returns:
            A ``BatchRun`` of ``BatchItem``.

        Raises:
            InvalidRequestError: ``call`` is not callable, ``concurrency`` is not a whole
                number >= 1, a path is not one, or a manifest comes without ``out_dir``.
            TypeError: a manifest is given with inputs that are not ``Path`` or URL strings.
        """
        if not callable(call):
            raise InvalidRequestError(
                "call", f"must be an async function, got {type(call).__name__}"
            )
        return BatchRun(
            Calls(
                kind, call, budget=self._run_budget(budget), throttle=self._session.limiter.stats
            ),
            inputs, concurrency=concurrency, out_dir=out_dir, manifest=manifest,
            on_progress=on_progress,
        )  # fmt: skip

    def _run_budget(self, budget: float | Budget | None) -> Budget | None:
        """A run's budget: its own cap, or (under a client budget) an uncapped ledger."""
        run = as_budget(budget, "run")
        if run is None and self._session.guard.budget is not None:
            run = Budget(math.inf, name="run")
        return run

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
        budget: float | Budget | None,
        price: float | None,
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
            room_for_jobs=self._session.room_for_jobs,
            budget=self._run_budget(budget),
            price=price,
            throttle=self._session.limiter.stats,
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
        budget: float | Budget | None = None,
        **options: Unpack[EnhanceOptions],
    ) -> BatchRun[Im]:
        """Enhance many photos, ``concurrency`` at a time; items arrive as they finish.

        The one right way to consume the run:

        ```python
        run = phota.enhance_many(paths, out_dir="out", manifest="run.manifest")
        async for item in run:
            if not item.ok:
                print(item.input, item.pending or item.error)
        ```

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
            on_progress: called as ``on_progress(progress, item)`` after each item, with a
                frozen ``BatchProgress`` (counts, throttling, spend).
            timeout: deadline for each photo's call (with jobs: for its submit and its wait).
            budget: cap this run's spending, in dollars or a ``Budget`` (within the client's
                budget, if any). When a call's reserved price (its worst case, as for
                ``PhotaClient(budget=...)``) would pass it, that photo and every one not yet
                started are delivered as ``not_started`` (not failed), those in flight finish,
                and the run ends; a rerun with a larger budget and the same manifest resumes,
                paying nothing twice. ``run.summary.spend`` is the run's ledger;
                ``await run.estimate()`` prices the run before paying (at expected prices,
                which may be below what the budget reserves).
            **options: see ``EnhanceOptions`` (``profile_ids``, ``prompt``, ``n``, ...).

        Returns:
            A ``BatchRun`` of ``BatchItem``, typed by the inputs; ``run.summary`` counts the
            outcomes.

        Raises:
            InvalidRequestError: an unknown option, an invalid value or ``timeout`` (nothing
                started).
            InvalidRequestError: also ``concurrency`` not a whole number >= 1, a path that is
                not one, or a manifest without ``out_dir``.
            TypeError: a manifest is given with inputs that are not ``Path`` or URL strings.
        """
        fields = enhance_fields(options, "enhance_many", BATCH_ARGUMENTS)
        return self._many(
            "enhance", inputs,
            lambda image, t: self.enhance(image, timeout=t, **options),
            lambda image, key, t: self.jobs.submit_enhance(
                image, client_request_id=key, timeout=t, **options
            ),
            options, concurrency=concurrency, out_dir=out_dir, manifest=manifest,
            via_job=via_job, on_progress=on_progress, timeout=timeout, budget=budget,
            price=self._session.guard.prices.call("enhance", fields),
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
        budget: float | Budget | None = None,
        **options: Unpack[EditOptions],
    ) -> BatchRun[Im]:
        """Apply one edit prompt to each photo; consumed and resumed as ``enhance_many``.

        Args:
            prompt: the instruction (``[[profile_id]]`` names a subject).
            inputs: as for ``enhance_many``.
            concurrency: as for ``enhance_many``.
            out_dir: as for ``enhance_many``.
            manifest: as for ``enhance_many``.
            via_job: as for ``enhance_many``.
            on_progress: as for ``enhance_many``.
            timeout: as for ``enhance_many``.
            budget: as for ``enhance_many``.
            **options: see ``EditOptions`` (``profile_ids``, ``n``, ``base_model``, ...).

        Returns:
            A ``BatchRun`` of ``BatchItem``, typed by the inputs.

        Raises:
            InvalidRequestError: an unknown option, an invalid value, prompt or ``timeout``
                (nothing started).
            InvalidRequestError: also ``concurrency`` not a whole number >= 1, a path that is
                not one, or a manifest without ``out_dir``.
            TypeError: a manifest is given with inputs that are not ``Path`` or URL strings.
        """
        fields = edit_fields(prompt, options, "edit_many", BATCH_ARGUMENTS)
        return self._many(
            "edit", inputs,
            lambda image, t: self.edit(prompt, images=[image], timeout=t, **options),
            lambda image, key, t: self.jobs.submit_edit(
                prompt, images=[image], client_request_id=key, timeout=t, **options
            ),
            {**options, "prompt": prompt}, concurrency=concurrency, out_dir=out_dir,
            manifest=manifest, via_job=via_job, on_progress=on_progress, timeout=timeout,
            budget=budget, price=self._session.guard.prices.call("edit", fields),
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
        budget: float | Budget | None = None,
        **options: Unpack[RemixOptions],
    ) -> BatchRun[Im]:
        """Restyle each photo after one reference; consumed and resumed as ``enhance_many``.

        Args:
            inputs: the content photos.
            reference: the style image (a ``Path`` is identified by its bytes).
            concurrency: as for ``enhance_many``.
            out_dir: as for ``enhance_many``.
            manifest: as for ``enhance_many``.
            via_job: as for ``enhance_many``.
            on_progress: as for ``enhance_many``.
            timeout: as for ``enhance_many``.
            budget: as for ``enhance_many``.
            **options: see ``RemixOptions`` (``profile_ids``, ``prompt``, ``n``, ...).

        Returns:
            A ``BatchRun`` of ``BatchItem``, typed by the inputs.

        Raises:
            InvalidRequestError: an unknown option, an invalid value, a reference of a type
                that is not an image input, or an invalid ``timeout`` (nothing started).
            InvalidRequestError: also ``concurrency`` not a whole number >= 1, a path that is
                not one, or a manifest without ``out_dir``.
            TypeError: a manifest is given with inputs that are not ``Path`` or URL strings.
        """
        fields = remix_fields(options, "remix_many", BATCH_ARGUMENTS)
        check_input_type(reference, "reference")
        return self._many(
            "remix", inputs,
            lambda image, t: self.remix(image, reference=reference, timeout=t, **options),
            lambda image, key, t: self.jobs.submit_remix(
                image, reference=reference, client_request_id=key, timeout=t, **options
            ),
            {**options, "reference": reference}, concurrency=concurrency, out_dir=out_dir,
            manifest=manifest, via_job=via_job, on_progress=on_progress, timeout=timeout,
            budget=budget, price=self._session.guard.prices.call("remix", fields),
        )  # fmt: skip

    async def webhook_secret(self, *, refresh: bool = False) -> str:
        """The account's webhook signing secret (fetched once, then cached).

        Args:
            refresh: fetch it again, after a rotation.
        """
        if self._secret is None or refresh:
            request = self._session.api.get("/webhook-secret")
            self._secret = await self._session.send(request, proto.decode_secret)
        return self._secret
