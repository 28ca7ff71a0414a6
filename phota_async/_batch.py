"""Many studio calls at once: bounded, results as they complete, paid exactly once per input.

Theory of operation. One supervisor task plans the run (loads the manifest off the loop, names
every output, finds what is already done), then starts one worker per input under a semaphore
of ``concurrency`` slots. A slot is taken when an item starts and given back only when the
consumer *takes* the finished item, so at most ``concurrency`` items are ever paid ahead of
what the consumer has taken (no prefetch beyond that). Finished items reach the consumer
through a memory stream, in completion order.

With a manifest, every item is a keyed job whatever ``via_job`` says (the price is the same):
its ``client_request_id`` is derived from the manifest's run id and the item's identity (a
digest of the input's bytes, the call kind and the options), and the intent is fsynced to the
manifest before the submit is sent (job ids and outcomes follow with the next commit). An
item whose outcome is unknown stays *pending* and is resumed on a rerun by the same key (the
server answers with the original job) or by its recorded job id; only a refusal (a 4xx
before charging, a FAILED job, which is refunded) is *failed* and tried again. This relies
on the server honouring a key for as long as a batch may be resumed: the emulator keeps keys
for its lifetime; Phota documents no expiry, and we assume at least the 24 hours its download
URLs live.

One input's exception, whatever its type, is that item's ``error``; the batch goes on, except
for ``BudgetExceededError``: a call refused by the spend guard was never sent, so its item is
*not started* (not failed), no further item starts, and every input not started is delivered as
such; a rerun with a larger budget resumes through the manifest, paying nothing twice. A run's
``budget`` is a ``Budget`` of its own, set in a context variable by the supervisor so that every
call its items make (custom ``map`` calls included) reserves against it as well as against the
client's. An exception from the engine itself (the manifest cannot be written, a bug) ends the
run and is raised to the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, NoReturn, TypeVar

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._budget import RUN_BUDGET, Budget, Estimate, Prices, Spend
from ._files import off_loop
from ._inputs import open_regular
from ._limiter import ThrottleStats
from ._manifest import RESUMABLE, Manifest, Record
from ._naming import output_bases
from ._poll import check_callback
from ._redact import shown
from .errors import (
    APIError,
    BudgetExceededError,
    InvalidRequestError,
    JobFailedError,
    NotFoundError,
    OutcomeUnknownError,
    WaitTimeoutError,
)
from .models import ImageResult, Job

I = TypeVar("I")  # noqa: E741 - the conventional name for an input type

# Phota's published prices, read through the spend guard's one price table: edit and
# generate depend on the base model, which the documentation does not list, so their cost is
# reported as unknown.
_PUBLISHED = Prices()

# 4xx answers that do not mean "refused before charging".
_NOT_REFUSALS = frozenset({408, 409, 429})
_HASH_CHUNK = 1 << 20
# Job ids and outcomes queued beyond this are committed by the item that finds them.
_BACKLOG = 64


_SYNC_WITH = (
    "a BatchRun is consumed asynchronously: use `async with run:` or `async for item in run:`"
)


def estimate_cost(kind: str, result: ImageResult) -> float | None:
    """The documented price of one call's outputs, or ``None`` where it is not documented."""
    each = _PUBLISHED.per_image(kind, {}, bool(result.known_subjects))
    return None if each is None else round(len(result) * each, 4)


@attrs.frozen
class BatchItem(Generic[I]):
    """One input's outcome.

    Attributes:
        input: the input as given.
        index: its position in the inputs.
        result: the ``ImageResult`` when it succeeded (``None`` when skipped from a manifest).
        error: what went wrong with this input, whatever its type (``None`` when it succeeded).
        paths: output files written (batch runs with ``out_dir``), absolute with a manifest.
        skipped: already done in an earlier run, per the manifest.
        request_id: the request id of the answer (or of the error), when known.
        pending: why the outcome is unknown (the call may have been paid); a rerun with the
            manifest resumes it by the same key, never paying again. ``None`` otherwise.
        not_started: the budget stopped the run before this input's call was sent (``error``
            is the ``BudgetExceededError`` when its own call was the one refused).
    """

    input: I
    index: int
    result: ImageResult | None = None
    error: Exception | None = None
    paths: tuple[Path, ...] = ()
    skipped: bool = False
    request_id: str | None = None
    pending: str | None = None
    not_started: bool = False

    @property
    def ok(self) -> bool:
        """Done (now or in an earlier run)."""
        return self.error is None and self.pending is None and not self.not_started

    @property
    def status(self) -> str:
        """``"done"``, ``"skipped"``, ``"pending"``, ``"failed"`` or ``"not started"``."""
        if self.skipped:
            return "skipped"
        if self.not_started:
            return "not started"
        if self.pending is not None:
            return "pending"
        return "done" if self.error is None else "failed"


class _Tally:
    """The sums both ``BatchSummary`` (live) and ``BatchProgress`` (frozen) derive from their
    counts."""

    __slots__ = ()
    done: int
    failed: int
    pending: int
    skipped: int
    not_started: int

    @property
    def finished(self) -> int:
        """Items with an outcome, skipped and not started ones included."""
        return self.done + self.failed + self.pending + self.skipped + self.not_started

    @property
    def worked(self) -> int:
        """Items processed in this run (skipped ones excluded)."""
        return self.done + self.failed + self.pending


@attrs.define
class BatchSummary(_Tally):
    """Counts and cost of a run so far.

    Attributes:
        total: inputs in the run.
        done, failed, pending, skipped: items by outcome (``pending``: outcome unknown, resumed
            by key on a rerun with the manifest).
        pending_reasons: ``{reason: count}`` of the pending items.
        images: output images written.
        cost: estimated cost in dollars of what was done in this run.
        cost_unknown: done items whose price is not documented.
        not_started: items the run's budget stopped before their call was sent.
        budget: the run's ``Budget`` when it has one (its own ``budget=``, or a client with a
            budget); ``spend`` reads its ledger.
        throttled: 429 and 503 answers the client got while this run went on (every lane).
        pace: the client's studio pace, in requests per second, after the latest item
            (``None`` while the server has not throttled it).
    """

    total: int = 0
    done: int = 0
    failed: int = 0
    pending: int = 0
    skipped: int = 0
    images: int = 0
    cost: float = 0.0
    cost_unknown: int = 0
    throttled: int = 0
    pace: float | None = None
    pending_reasons: Counter[str] = attrs.Factory(Counter)
    started: float = attrs.Factory(time.monotonic)
    not_started: int = 0
    budget: Budget | None = attrs.field(default=None, repr=False)

    @property
    def spend(self) -> Spend | None:
        """The run's ledger (spent, refunded, pending, per endpoint), or ``None``."""
        return self.budget.spend if self.budget is not None else None

    @property
    def rate(self) -> float:
        """Items processed per second in this run (skipped items do not count)."""
        elapsed = time.monotonic() - self.started
        return self.worked / elapsed if elapsed > 0 else 0.0

    def add_pending(self, reason: str) -> None:
        """Count one more pending item."""
        self.pending += 1
        self.pending_reasons[reason] += 1

    def snapshot(self, throttle: ThrottleStats | None = None) -> BatchProgress:
        """The run's progress now, frozen: these counts, the client's limiter and the ledger.

        Args:
            throttle: the client's ``ThrottleStats`` now, when the run has a client.

        Returns:
            A ``BatchProgress``.
        """
        return BatchProgress(
            total=self.total,
            done=self.done,
            failed=self.failed,
            pending=self.pending,
            skipped=self.skipped,
            not_started=self.not_started,
            images=self.images,
            cost=self.cost,
            cost_unknown=self.cost_unknown,
            pending_reasons=dict(self.pending_reasons),
            throttled=self.throttled,
            pace=self.pace,
            throttle=throttle,
            spend=self.spend,
            elapsed=time.monotonic() - self.started,
        )

    def line(self) -> str:
        """One human line: counts by outcome (pending ones with their reasons), images, cost."""
        return self.snapshot().line()

    def throttle_line(self) -> str:
        """The server's throttling of this run, such as ``throttled 12 (429/503), pacing
        19.6/s``; empty when it never throttled."""
        return self.snapshot().throttle_line()


@attrs.frozen
class BatchProgress(_Tally):
    """A run's progress at one moment: what ``on_progress(progress, item)`` is given.

    A frozen snapshot (keeping it keeps what it said), with the counts of ``BatchSummary``
    plus the two things a long run is watched for: how the server throttles the client, and
    what the run has spent.

    Attributes:
        total: inputs in the run.
        done, failed, pending, skipped, not_started: items by outcome so far.
        images: output images made.
        cost: estimated cost in dollars of what was done (published prices).
        cost_unknown: done items whose price is not published.
        pending_reasons: ``{reason: count}`` of the pending items.
        throttled: 429 and 503 answers the client got while this run went on (every lane).
        pace: the client's studio pace in requests per second (``None``: not throttled).
        throttle: the client's adaptive limiter now (``PhotaClient.throttle``: requests in
            flight, the ceiling, pause left, every lane's figures); ``None`` when unknown.
        spend: the run's budget ledger (spent, pending, refunded, limit), when the run has a
            budget (its own ``budget=``, or a client with one); otherwise ``None``.
        elapsed: seconds since the run was made.
    """

    total: int
    done: int = 0
    failed: int = 0
    pending: int = 0
    skipped: int = 0
    not_started: int = 0
    images: int = 0
    cost: float = 0.0
    cost_unknown: int = 0
    pending_reasons: Mapping[str, int] = attrs.field(factory=dict)
    throttled: int = 0
    pace: float | None = None
    throttle: ThrottleStats | None = attrs.field(default=None, repr=False)
    spend: Spend | None = None
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        """Items processed per second in this run (skipped items do not count)."""
        return self.worked / self.elapsed if self.elapsed > 0 else 0.0

    def spend_line(self) -> str:
        """The run's spending, short, such as ``$1.20 spent of $5.00, $0.15 pending``; empty
        without a budget."""
        spend = self.spend
        if spend is None:
            return ""
        of = f" of ${spend.limit:.2f}" if math.isfinite(spend.limit) else ""
        pending = f", ${spend.pending:.2f} pending" if spend.pending else ""
        return f"${spend.spent:.2f} spent{of}{pending}"

    def line(self) -> str:
        """One human line: counts by outcome (pending ones with their reasons), images, cost."""
        cost = f"${self.cost:.2f}" + (" + model-priced calls" if self.cost_unknown else "")
        pending = ""
        if self.pending:
            by_count = sorted(self.pending_reasons.items(), key=lambda rn: -rn[1])  # stable
            reasons = ", ".join(f"{n} {r}" for r, n in by_count)
            pending = f" {self.pending} pending ({reasons}; a rerun resumes them by key),"
            # Their calls may have been charged already; the rerun that resumes them does not
            # pay again, so their price belongs to this run's estimate as an upper bound.
            cost += f" + up to the price of {self.pending} pending"
        not_started = ""
        if self.not_started:
            not_started = f" {self.not_started} not started (budget reached),"
        ledger = f"; {spend.line()}" if (spend := self.spend) is not None else ""
        return (
            f"{self.done} done, {self.failed} failed,{pending}{not_started} {self.skipped} "
            f"skipped of {self.total}; {self.images} images; estimated cost {cost}{ledger}"
            f"{'; ' if self.throttled else ''}{self.throttle_line()}"
        )

    def throttle_line(self) -> str:
        """The server's throttling of this run, such as ``throttled 12 (429/503), pacing
        19.6/s``; empty when it never throttled."""
        if not self.throttled:
            return ""
        pace = f", pacing {self.pace:.1f}/s" if self.pace is not None else ""
        return f"throttled {self.throttled} (429/503){pace}"


Call = Callable[[I], Awaitable[ImageResult]]
Submit = Callable[[I, "str | None", "float | None"], Awaitable[Job]]
# ``on_progress(progress, item)``: a frozen ``BatchProgress`` and the item just delivered.
Progress = Callable[[BatchProgress, BatchItem[Any]], None]


@attrs.frozen
class Calls(Generic[I]):
    """What a batch does to one input: the narrow session a ``BatchRun`` is given.

    Attributes:
        kind: ``enhance``, ``edit``, ``remix`` or ``custom`` (for costs and item identity).
        call: the synchronous call.
        submit: a keyed job submit ``(input, client_request_id, timeout) -> Job``, or ``None``
            for custom calls (which cannot be resumed by key).
        resume: rebuilds a recorded job (``Job.to_json()`` form), bound to the client.
        options: the options that make two calls on the same bytes different (hashed into the
            item's identity); ``Path`` values are hashed by content.
        via_job: without a manifest, run each item as a job.
        timeout: deadline for one item's call, or for each of its submit and its wait.
        room_for_jobs: makes room in the client's poll budget for this many jobs awaited at
            once, while the block runs (keyed runs use it, so that polling does not hold a
            batch below its concurrency).
        budget: the run's own budget (and ledger), or ``None``.
        price: one item's estimated price in dollars (for ``BatchRun.estimate``), ``None``
            when unknown.
        throttle: reads the client's adaptive limiter, for the summary's throttle figures.
    """

    kind: str
    call: Call[I]
    submit: Submit[I] | None = None
    resume: Callable[[dict[str, Any]], Job] | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)
    via_job: bool = False
    timeout: float | None = None
    room_for_jobs: Callable[[int], AbstractContextManager[None]] | None = None
    budget: Budget | None = None
    price: float | None = None
    throttle: Callable[[], ThrottleStats] | None = None


class _Outcome(Exception):
    """An item's end, carried out of its stages (never escapes the engine)."""

    def __init__(self, error: Exception, pending: str | None, new_key: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.pending = pending
        self.new_key = new_key
        # Refused by the spend guard before anything was sent.
        self.not_started = isinstance(error, BudgetExceededError)


def _refused(exc: BaseException) -> bool:
    return isinstance(exc, InvalidRequestError) or (
        isinstance(exc, APIError) and 400 <= exc.status < 500 and exc.status not in _NOT_REFUSALS
    )


def _file_digest(path: Path) -> str:
    # Opened as every input is (``open_regular``): a FIFO or a path swapped for one is refused
    # at once instead of holding an I/O thread until a writer comes.
    fd, _ = open_regular(path, "input")
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


async def _digest(value: object) -> str:
    """A digest of an input's content: a file's bytes, a URL's text, raw bytes."""
    if isinstance(value, Path):
        return await off_loop(_file_digest, value)
    if isinstance(value, str):
        return hashlib.sha256(b"url\0" + value.encode()).hexdigest()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return hashlib.sha256(bytes(value)).hexdigest()
    raise TypeError(f"cannot key a {type(value).__name__} input: use a Path or a URL")


# ``.{base}-{index}.{ext}.{hex}.part`` for bytes outputs; a download does not know its
# extension before the bytes arrive: ``.{base}-{index}.{hex}.part``.
_PART = re.compile(r"^\.(.+)-\d+(?:\.\w+)?\.[0-9a-f]{12}\.part$", re.DOTALL)


def _remove_stale_parts(folder: Path, bases: list[str | None]) -> None:
    """Delete temporary files of this run's outputs left by a killed process (SIGKILL cannot
    clean up after itself); other files are never touched."""
    try:
        stale = [(e.path, m.group(1)) for e in os.scandir(folder) if (m := _PART.match(e.name))]
    except FileNotFoundError:
        return
    if not stale:
        return
    mine = {os.path.basename(b) for b in bases if b}
    for path, base in stale:
        if base in mine:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


def derive_key(run_id: str, identity: str, attempt: int) -> str:
    """The ``client_request_id`` of one attempt at one item of one run (deterministic)."""
    text = f"{run_id}\0{identity}\0{attempt}".encode()
    return "cr_" + hashlib.sha256(text).hexdigest()[:32]


async def options_digest(kind: str, options: Mapping[str, Any]) -> str:
    """A digest of a batch's call kind and options (``Path`` values hashed by content): the
    half of an item's identity that its input does not give."""
    canonical: dict[str, Any] = {"kind": kind}
    for name, value in sorted(options.items()):
        canonical[name] = await _digest(value) if isinstance(value, Path) else value
    text = json.dumps(canonical, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def item_identity(options: str, input_digest: str) -> str:
    """An item's identity from ``options_digest`` and its input's content digest (what
    ``derive_key`` keys, with the run id and the attempt)."""
    return hashlib.sha256(f"{options}\0{input_digest}".encode()).hexdigest()


def _absolute(value: object) -> str:
    # ``abspath`` (no system call) rather than ``resolve`` (one per path component): a
    # million-input resume must plan in seconds. Symlinked inputs keep their own names.
    if isinstance(value, Path):
        text = str(value)  # pathlib has already dropped "." parts and doubled slashes
        return text if value.is_absolute() and "/.." not in text else os.path.abspath(text)
    if isinstance(value, str):
        return value
    raise TypeError("resumable batches need Path or URL inputs")


async def _iterate(run: BatchRun[I]) -> AsyncIterator[BatchItem[I]]:
    # What ``async for item in run`` drives. When the consumer breaks out and drops it,
    # asyncio's async-generator finaliser runs ``aclose()`` on it: the ``finally`` closes the
    # run, cancelling what is still in flight. The run holds no reference back to this
    # generator, so no cycle keeps it (and the run's tasks) alive.
    try:
        while (item := await run._take()) is not None:
            yield item
    finally:
        await run.aclose()


def _check_arguments(
    concurrency: object, out_dir: object, manifest: object, on_progress: object
) -> None:
    """Refuse a batch's wrong arguments before anything starts, each named.

    Raises:
        InvalidRequestError: ``concurrency`` is not a whole number >= 1, ``out_dir`` or
            ``manifest`` is not a path (or a ``Manifest``), a manifest comes without
            ``out_dir``, or ``on_progress`` is not callable.
    """
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidRequestError(
            "concurrency", f"must be a whole number >= 1, got {shown(concurrency)}"
        )
    if out_dir is not None and not isinstance(out_dir, (str, os.PathLike)):
        raise InvalidRequestError("out_dir", f"must be a path, got {type(out_dir).__name__}")
    if manifest is not None:
        if not isinstance(manifest, (str, os.PathLike, Manifest)):
            raise InvalidRequestError(
                "manifest", f"must be a path or a Manifest, got {type(manifest).__name__}"
            )
        if out_dir is None:
            raise InvalidRequestError("manifest", "needs out_dir: done means written to disk")
    if on_progress is not None and not callable(on_progress):
        raise InvalidRequestError(
            "on_progress", f"must be callable, got {type(on_progress).__name__}"
        )
    check_callback(on_progress, "on_progress")


class BatchRun(Generic[I]):
    """A running batch: iterate it for items as they complete.

    The one right way to consume it is ``async for``, optionally inside ``async with``:

    ```python
    run = phota.enhance_many(paths, out_dir="out", manifest="run.manifest")
    async for item in run:
        ...
    ```

    Breaking out of the loop (or leaving ``async with``, or ``aclose()``) cancels whatever is
    still running at once and waits for it; nothing outlives the run. At most ``concurrency``
    items are started ahead of what you have taken; no other prefetch.
    """

    def __init__(
        self,
        calls: Calls[I],
        inputs: Iterable[I],
        *,
        concurrency: int,
        out_dir: str | Path | None,
        manifest: str | Path | Manifest | None,
        on_progress: Progress | None,
    ) -> None:
        _check_arguments(concurrency, out_dir, manifest, on_progress)
        self._calls = calls
        self._inputs = list(inputs)
        self._concurrency = concurrency
        self._out_dir = Path(out_dir).absolute() if out_dir is not None else None
        self._manifest_arg = manifest
        self._manifest: Manifest | None = None
        if manifest is not None:
            for i, value in enumerate(self._inputs):
                if not isinstance(value, (Path, str)):
                    raise TypeError(
                        f"inputs[{i}]: resumable batches need Path or URL inputs, "
                        f"got {type(value).__name__}"
                    )
        self._on_progress = on_progress
        self.summary = BatchSummary(total=len(self._inputs), budget=calls.budget)
        self._budget_reached = False
        self._throttled_before = calls.throttle().throttled if calls.throttle else 0
        self._send: MemoryObjectSendStream[BatchItem[I]]
        self._receive: MemoryObjectReceiveStream[BatchItem[I]]
        self._send, self._receive = anyio.create_memory_object_stream[BatchItem[I]](math.inf)
        self._slots = anyio.Semaphore(concurrency)
        self._supervisor: asyncio.Task[None] | None = None
        self._starting: anyio.CancelScope | None = None
        self._stopping = False
        self._closed = False
        self._consumed = False
        self._in_flight: set[int] = set()
        self._bases: list[str | None] = []  # absolute; Path objects are slow to make by 1M
        self._keys: list[str] = []
        self._options_digest = ""
        self._done_before = 0
        self._skip: list[bool] = []

    # -- consuming -----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[BatchItem[I]]:
        if self._consumed:
            # A second consumer would silently get only some items (or none at all).
            raise RuntimeError("a batch run is consumed once: start a new run to run again")
        self._consumed = True
        return _iterate(self)

    async def _take(self) -> BatchItem[I] | None:
        if self._closed:
            return None
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(self._run())
        try:
            item = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None
        self._slots.release()
        return item

    async def __aenter__(self) -> BatchRun[I]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> NoReturn:
        if self._supervisor is None:  # nothing started: the mistaken run leaves nothing open
            self._closed = True
            self._send.close()
            self._receive.close()
        raise TypeError(_SYNC_WITH)

    def __exit__(self, *exc: object) -> NoReturn:
        raise TypeError(_SYNC_WITH)

    @property
    def remaining(self) -> int:
        """Items this run has to work on: all but those already done per the manifest (known
        once the run has started)."""
        return self.summary.total - self._done_before

    @property
    def in_flight(self) -> int:
        """Items started and not finished yet."""
        return len(self._in_flight)

    def stop(self) -> None:
        """Start no new items; those in flight finish, are recorded and delivered, then the
        iteration ends. Safe to call from a signal handler on the loop."""
        self._stopping = True
        if self._starting is not None:
            self._starting.cancel()

    def abandon(self) -> None:
        """Cancel every item in flight now (they stay pending in the manifest, resumed by key);
        the iteration ends. Safe to call from a signal handler on the loop."""
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()

    async def aclose(self) -> None:
        """Cancel every call still running and wait until they have stopped. Idempotent.

        Raises:
            Exception: a failure of the run itself (never one input's error).
        """
        self._closed = True
        self._stopping = True
        task = self._supervisor
        if task is not None and not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})
        self._send.close()  # a run cancelled before its supervisor ever ran never closed it
        self._receive.close()
        await self._finish_manifest()
        if task is not None and not task.cancelled() and task.exception() is not None:
            error = task.exception()
            # The task group wraps the failure; the first one is the story (the others, if
            # any, are the same bug hit by other items at the same time).
            while isinstance(error, BaseExceptionGroup):
                error = error.exceptions[0]
            raise error  # type: ignore[misc]

    async def estimate(self) -> Estimate:
        """What this run would cost, before paying: nothing is started or sent.

        Items the manifest records as done (with their outputs on disk) are not counted;
        every other item is, pending ones too (a rerun resumes them by key, which the server
        does not charge twice, so the total is an upper bound). Prices come from the client's
        table (``PhotaClient(prices=...)``) and are the expected ones: an enhance or remix that
        names no profile is counted at the plain price, though a budget reserves the
        recognised-subject price for it until the charge is known. Estimate first, then consume
        the run, or close it (``async with run:`` around both, or ``await run.aclose()``) if
        you do not go on:

        ```python
        async with phota.enhance_many(paths, out_dir="out", manifest="run.db") as run:
            print((await run.estimate()).line())
        ```

        Returns:
            An ``Estimate`` (``total`` is ``None`` when the call's price is unknown).

        Raises:
            InvalidRequestError: the manifest is not a readable batch manifest, or was written
                for other options (as the run itself would say).
        """
        done = 0
        arg = self._manifest_arg
        if arg is not None and (isinstance(arg, Manifest) or await off_loop(Path(arg).exists)):
            manifest = arg if isinstance(arg, Manifest) else Manifest(arg)
            try:
                await manifest.load()
                if await off_loop(manifest.other_options, await self._digest_options()):
                    raise InvalidRequestError(
                        "manifest",
                        f"{manifest.path} was written for another command or other options; "
                        "the run would refuse it",
                    )
                keys = await off_loop(lambda: [_absolute(v) for v in self._inputs])
                done = sum(await off_loop(manifest.done, keys))
            finally:
                if manifest is not arg:
                    await manifest.aclose()
        to_run = len(self._inputs) - done
        price = self._calls.price
        total = None if price is None else round(to_run * price, 6)
        return Estimate(len(self._inputs), done, to_run, price, total)

    async def collect(self) -> list[BatchItem[I]]:
        """Run to the end; every item, in input order."""
        iterator = aiter(self)  # a second consumer is refused before it can close the run
        async with self:
            items = [item async for item in iterator]
        return sorted(items, key=lambda item: item.index)

    # -- running -------------------------------------------------------------------------

    async def _run(self) -> None:
        room = self._calls.room_for_jobs
        keyed = self._calls.submit is not None and (
            self._manifest_arg is not None or self._calls.via_job
        )
        if self._calls.budget is not None:
            RUN_BUDGET.set(self._calls.budget)  # this task's context, copied by every item
        with room(self._concurrency) if room and keyed else contextlib.nullcontext():
            await self._run_items()

    async def _run_items(self) -> None:
        async with self._send:
            await self._prepare()
            async with anyio.create_task_group() as group:
                started = 0
                with anyio.CancelScope() as self._starting:
                    for index in range(len(self._inputs)):
                        if self._stopping:
                            break
                        await self._slots.acquire()
                        if self._stopping:  # stopped while waiting for the slot
                            self._slots.release()
                            break
                        self._in_flight.add(index)
                        started = index + 1
                        group.start_soon(self._one, index)
            if self._budget_reached:
                self._report_not_started(started)
            # Before the consumer sees the end: a finished run is on disk when it says so.
            await self._finish_manifest()

    def _report_not_started(self, first: int) -> None:
        """Deliver every input from ``first`` on as not started: the budget stopped the run
        before their calls (a rerun with a larger budget runs them). Done ones stay skipped."""
        for index in range(first, len(self._inputs)):
            value = self._inputs[index]
            if self._manifest is not None and self._skip[index]:
                outputs, request_id = self._manifest.done_item(self._keys[index])
                paths = tuple(Path(p) for p in outputs)
                item = BatchItem(value, index, paths=paths, skipped=True, request_id=request_id)
                self.summary.skipped += 1
            else:
                item = BatchItem(value, index, not_started=True)
                self.summary.not_started += 1
            if self._on_progress is not None:
                self._on_progress(self._progress(), item)
            self._send.send_nowait(item)

    async def _finish_manifest(self) -> None:
        """Commit what is queued and close the database; idempotent (``aclose`` calls it again
        after a cancelled run, from the consumer's task)."""
        if self._manifest is not None:
            with anyio.CancelScope(shield=True):
                await self._manifest.flush()
                await self._manifest.aclose()

    async def _prepare(self) -> None:
        """Load the manifest, name every output, and hash the options (off the loop)."""
        values = self._inputs
        arg = self._manifest_arg
        if arg is not None:
            self._manifest = arg if isinstance(arg, Manifest) else Manifest(arg)
            await self._manifest.load()
            manifest = self._manifest
            self._keys = await off_loop(lambda: [_absolute(v) for v in values])
            self._skip = await off_loop(manifest.done, self._keys)
            self._done_before = sum(self._skip)
            self._options_digest = await self._digest_options()
            if await off_loop(manifest.other_options, self._options_digest):
                # Resuming would return the old options' jobs, skipping would keep their
                # outputs: either way the caller would silently not get what they asked for.
                raise InvalidRequestError(
                    "manifest",
                    f"{manifest.path} was written for another command or other options "
                    "(kind, format, prompt...); rerun with those, or use a new manifest",
                )
        if self._out_dir is None:
            self._bases = [None] * len(values)
            return
        if self._manifest is not None:
            planned = await off_loop(self._manifest.planned, self._keys)
        else:
            planned = [None] * len(values)
        new = [i for i, base in enumerate(planned) if base is None]
        taken: set[str] = set()
        if new and self._manifest is not None:
            taken = await off_loop(self._manifest.bases)
        names = output_bases([values[i] for i in new], taken)
        out = self._out_dir
        self._bases = planned
        for i, name in zip(new, names, strict=True):
            self._bases[i] = str(out / name)
        if self._manifest is not None:
            await off_loop(_remove_stale_parts, out, self._bases)

    async def _digest_options(self) -> str:
        return await options_digest(self._calls.kind, self._calls.options)

    async def _one(self, index: int) -> None:
        try:
            item = await self._item(index)
        except anyio.get_cancelled_exc_class():
            self.summary.add_pending("abandoned in flight")
            raise
        finally:
            self._in_flight.discard(index)
        manifest = self._manifest
        if manifest is not None and manifest.backlog >= _BACKLOG:
            await manifest.flush()  # outcomes need no commit of their own, but not forever
        summary = self.summary
        if item.skipped:
            summary.skipped += 1
        elif item.not_started:
            summary.not_started += 1
        elif item.pending is not None:
            summary.add_pending(item.pending)
        elif item.error is not None:
            summary.failed += 1
        else:
            summary.done += 1
            assert item.result is not None
            summary.images += len(item.result)
            cost = estimate_cost(self._calls.kind, item.result)
            if cost is None:
                summary.cost_unknown += 1
            else:
                summary.cost += cost
        throttle = self._throttle()
        if self._on_progress is not None:
            self._on_progress(summary.snapshot(throttle), item)
        self._send.send_nowait(item)

    def _throttle(self) -> ThrottleStats | None:
        """Read the client's limiter into the summary's throttle figures; return it."""
        if self._calls.throttle is None:
            return None
        throttle = self._calls.throttle()
        self.summary.throttled = throttle.throttled - self._throttled_before
        self.summary.pace = throttle.rate
        return throttle

    def _progress(self) -> BatchProgress:
        return self.summary.snapshot(self._throttle())

    async def _item(self, index: int) -> BatchItem[I]:
        value = self._inputs[index]
        manifest = self._manifest
        if manifest is not None and self._skip[index]:
            outputs, request_id = manifest.done_item(self._keys[index])
            paths = tuple(Path(p) for p in outputs)
            return BatchItem(value, index, paths=paths, skipped=True, request_id=request_id)
        record = await manifest.record(self._keys[index]) if manifest is not None else None
        try:
            if self._manifest is not None and self._calls.submit is not None:
                result, paths = await self._keyed(index, value, record)
            else:
                result, paths = await self._plain(index, value)
        except _Outcome as outcome:
            error = outcome.error
            if outcome.not_started:
                self._budget_reached = True
                self.stop()  # start nothing more; those in flight finish
                return BatchItem(value, index, error=error, not_started=True)
            request_id = getattr(error, "request_id", None)
            return BatchItem(
                value, index, error=error, request_id=request_id, pending=outcome.pending
            )
        return BatchItem(value, index, result=result, paths=paths, request_id=result.request_id)

    async def _save(self, index: int, result: ImageResult) -> tuple[Path, ...]:
        base = self._bases[index]
        if base is None:
            return ()
        folder, stem = os.path.split(base)
        return tuple(await result.save(folder, stem=stem))

    async def _plain(self, index: int, value: I) -> tuple[ImageResult, tuple[Path, ...]]:
        """Without a manifest (or for custom calls): the call as asked; errors classified."""
        calls, manifest = self._calls, self._manifest
        try:
            if calls.via_job and calls.submit is not None:
                job = await calls.submit(value, None, calls.timeout)
                result = await job.wait(timeout=calls.timeout)
            else:
                result = await calls.call(value)
            paths = await self._save(index, result)
        except Exception as exc:
            pending = "outcome unknown" if isinstance(exc, OutcomeUnknownError) else None
            if manifest is not None and not isinstance(exc, BudgetExceededError):
                op = {"op": "pending", "reason": pending} if pending else {"op": "failed"}
                manifest.note([{**op, "input": self._keys[index], "error": str(exc)}])
            raise _Outcome(exc, pending) from exc
        if manifest is not None:
            self._record_done(index, result, paths)
        return result, paths

    def _record_done(self, index: int, result: ImageResult, paths: tuple[Path, ...]) -> None:
        assert self._manifest is not None
        entry = {
            "op": "done",
            "input": self._keys[index],
            "outputs": [str(p) for p in paths],
            "request_id": result.request_id,
        }
        self._manifest.note([entry])

    async def _keyed(
        self, index: int, value: I, record: Record | None
    ) -> tuple[ImageResult, tuple[Path, ...]]:
        """A manifest item: intent on disk, then a keyed submit (or the recorded job)."""
        calls, manifest, name = self._calls, self._manifest, self._keys[index]
        assert manifest is not None
        assert manifest.run_id is not None
        assert calls.submit is not None
        assert calls.resume is not None
        saved_job: dict[str, Any] | None = None
        resumable = (
            record is not None and record.state in RESUMABLE and bool(record.key or record.job)
        )
        if resumable and record is not None and record.identity is not None:
            # Bytes changed since the key was made (same path, new photo): the old key would
            # return the old photo's job; the new bytes get their own key.
            with contextlib.suppress(Exception):  # unreadable now: the recorded job still is
                resumable = await self._identity(value) == record.identity
        if resumable and record is not None:
            key = record.key or ""  # paid or maybe paid: resume, never a new key
            saved_job = record.job
        else:
            attempt = record.attempt if record is not None else 0
            if record is None or record.key is None or record.new_key or record.state == "done":
                attempt += 1
            try:
                identity = await self._identity(value)
            except Exception as exc:  # unreadable input: nothing was sent
                manifest.note([{"op": "failed", "input": name, "error": str(exc)}])
                raise _Outcome(exc, None) from exc
            key = derive_key(manifest.run_id, identity, attempt)
            base = self._bases[index]
            intent = {
                "op": "intent",
                "input": name,
                "key": key,
                "attempt": attempt,
                "identity": identity,
                "options": self._options_digest,
                "base": base,
            }
            await manifest.write([intent])  # durable before the submit is sent
        if saved_job is not None:
            try:
                job = calls.resume(saved_job)
            except Exception as exc:
                self._pending(name, exc, "recorded job unreadable")
        else:
            try:
                job = await calls.submit(value, key, calls.timeout)
            except BudgetExceededError as exc:
                # Never sent: the intent stays, and a rerun submits under the same key.
                raise _Outcome(exc, None) from exc
            except Exception as exc:
                if _refused(exc):
                    entry = {"op": "failed", "input": name, "error": str(exc), "new_key": False}
                    manifest.note([entry])
                    raise _Outcome(exc, None) from exc
                self._pending(name, exc, "submit answer lost")
            manifest.note([{"op": "job", "input": name, "job": job.to_json()}])
        try:
            result = await job.wait(timeout=calls.timeout)
        except JobFailedError as exc:  # refunded: a rerun tries again under a new key
            entry = {"op": "failed", "input": name, "error": str(exc), "new_key": True}
            manifest.note([entry])
            raise _Outcome(exc, None) from exc
        except WaitTimeoutError as exc:
            self._pending(name, exc, "job outlived the wait")
        except NotFoundError as exc:
            self._pending(name, exc, "job not found when polled")
        except Exception as exc:
            self._pending(name, exc, "lost while waiting")
        try:
            paths = await self._save(index, result)
        except Exception as exc:
            self._pending(name, exc, "outputs not saved")
        self._record_done(index, result, paths)
        return result, paths

    async def _identity(self, value: I) -> str:
        """An item's identity: a digest of the run's call and options and the input's bytes."""
        return item_identity(self._options_digest, await _digest(value))

    def _pending(self, name: str, exc: Exception, reason: str) -> NoReturn:
        assert self._manifest is not None
        self._manifest.note([{"op": "pending", "input": name, "reason": reason, "error": str(exc)}])
        raise _Outcome(exc, reason) from exc
