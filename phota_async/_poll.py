"""The one poller: waiting on profiles and jobs, and the only place that sleeps between polls.

Theory of operation
-------------------
A *watch* is one poll loop for one thing (``("profile", id)`` or ``("job", id)``). Every waiter
on that thing joins the same watch, so a thousand tasks awaiting one profile cost one GET per
interval, not a thousand. The watch's loop task fetches a snapshot, publishes it to its waiters,
and sleeps so that the next answer is due ``next_delay()`` after that poll left (a slow answer
does not stretch the interval, and a change is seen at most one interval after it happened):
fast at first, backing off with jitter to a cap, following the kind's
documented cadence (a training profile is polled every 10-30 s), never shorter than a server's
``Retry-After``. A nudge (a verified webhook) cuts the sleep short so the next GET happens now.

Every poll request first takes a slot from the client-wide ``PollBudget``, a token bucket that
bounds poll requests per second across all watches, so that 1,000 waiting profiles spread out
instead of flooding the API.

Each waiter has its own deadline. When it passes, the waiter leaves with ``WaitTimeoutError``
carrying the last snapshot. A transient failure while polling (connection trouble, 429, 5xx,
an unreadable answer, after the transport's own retries) does not end anyone's wait: the loop
backs off and polls again. A definite answer (401, 403, 404) ends it for every waiter.

When the last waiter leaves (done, timed out, or cancelled), the loop task is cancelled and
awaited, so nothing is left running: cancelling a waiting task stops its polling at once.

Every wait here (the budget gate, the pause between polls, each waiter's deadline) reads the
running event loop's clock and nothing else, so the loop is the injectable clock: a test loop
with virtual time (``tests/helpers.py``) runs a 20-minute wait at once and exactly, while the
production path is plain ``loop.time()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import random
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

import anyio
import attrs

from ._deadline import check_seconds
from ._redact import shown
from ._telemetry import OFF, Hooks, WaitScope
from .errors import (
    APIError,
    InvalidRequestError,
    PhotaError,
    ResponseValidationError,
    TransportError,
    WaitTimeoutError,
)

S = TypeVar("S")

# Errors after which polling goes on: the thing may still finish.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _seconds(_: Any, attribute: attrs.Attribute[float], value: Any) -> None:
    # A nan interval would reach the event loop's timer heap (call_later) and break it.
    check_seconds(value, f"Cadence.{attribute.name}", allow_inf=False)


def _fraction(_: Any, attribute: attrs.Attribute[float], value: Any) -> None:
    check_seconds(value, f"Cadence.{attribute.name}", allow_inf=False)
    if value > 1:
        raise InvalidRequestError(f"Cadence.{attribute.name}", f"must be 0-1, got {shown(value)}")


@attrs.frozen
class Cadence:
    """Poll intervals for one kind of wait, in seconds.

    ``first`` is the first interval; each later one is ``factor`` times longer, up to ``cap``,
    and never below ``floor``. ``jitter`` shortens intervals by up to that fraction.

    Raises:
        InvalidRequestError: a field is not a finite number >= 0 (``jitter``: 0-1).
    """

    first: float = attrs.field(validator=_seconds)
    cap: float = attrs.field(validator=_seconds)
    factor: float = attrs.field(default=1.5, validator=_seconds)
    floor: float = attrs.field(default=0.0, validator=_seconds)
    jitter: float = attrs.field(default=0.1, validator=_fraction)

    def scaled(self, by: float) -> Cadence:
        """This cadence with its first, cap and floor intervals multiplied by ``by``."""
        return attrs.evolve(self, first=self.first * by, cap=self.cap * by, floor=self.floor * by)


def next_delay(
    cadence: Cadence,
    polls: int,
    *,
    hint: float | None = None,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to sleep after the ``polls``-th poll (counting from 1).

    Pure: the same inputs (and ``rand`` values) give the same delay.
    """
    base = min(cadence.cap, cadence.first * cadence.factor ** max(0, polls - 1))
    base = max(base, cadence.floor)
    # Jitter only shortens an interval: waiters spread out, yet none learns of a change later
    # than one nominal interval after it happened.
    delay = max(cadence.floor, base * (1 - cadence.jitter * rand()))
    if hint is not None:
        delay = max(delay, hint)
    return delay


@attrs.frozen
class PollPolicy:
    """How the SDK polls; the defaults follow Phota's documentation.

    Attributes:
        profile_setup: cadence while a profile is ``VALIDATING`` or ``QUEUING``.
        profile_training: cadence once it is ``IN_PROGRESS`` (documented: every 10-30 s).
        job: cadence for asynchronous jobs.
        max_polls_per_second: client-wide budget of poll requests.
    """

    profile_setup: Cadence = Cadence(first=5.0, cap=10.0, floor=5.0)
    profile_training: Cadence = Cadence(first=10.0, cap=30.0, floor=10.0)
    job: Cadence = Cadence(first=1.0, cap=10.0)
    max_polls_per_second: float = 10.0

    def scaled(self, by: float) -> PollPolicy:
        """The same policy with every interval multiplied by ``by`` (and the budget divided)."""
        return PollPolicy(
            self.profile_setup.scaled(by),
            self.profile_training.scaled(by),
            self.job.scaled(by),
            self.max_polls_per_second / by,
        )


class PollBudget:
    """A gate shared by every poll loop of a client: at most ``rate`` polls a second.

    Polls pass one at a time, in arrival order, each at least ``1 / rate`` seconds after the
    previous one *actually* passed, so a late wake-up never lets a burst through: any window of
    one second sees at most ``rate + 1`` polls leave.

    Time is the running event loop's clock (``loop.time()``, as for every other wait of the
    poller), so a test loop with virtual time runs a long wait at once; ``clock`` replaces it
    for the synchronous parts (``delay``, ``passed``) in tests.
    """

    def __init__(self, rate: float, clock: Callable[[], float] | None = None) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise InvalidRequestError(
                "max_polls_per_second", f"must be a positive number, got {shown(rate)}"
            )
        self.rate = float(rate)
        self.interval = 1.0 / rate
        self._extra = 0.0
        self._clock = clock
        self._last = -math.inf
        self._gate: asyncio.Lock | None = None

    @contextlib.contextmanager
    def widened(self, rate: float) -> Iterator[None]:
        """Allow ``rate`` more polls a second while the block runs (a batch of jobs makes room
        for its own polls, so that polling never holds it below its concurrency)."""
        self._extra += rate
        self.interval = 1.0 / (self.rate + self._extra)
        try:
            yield
        finally:
            self._extra -= rate
            self.interval = 1.0 / (self.rate + self._extra)

    def delay(self) -> float:
        """How long the next poll must still wait."""
        return max(0.0, self._last + self.interval - self._now())

    def passed(self) -> None:
        """Record that a poll leaves now."""
        self._last = self._now()

    def _now(self) -> float:
        return asyncio.get_running_loop().time() if self._clock is None else self._clock()

    async def acquire(self) -> None:
        if self._gate is None:
            self._gate = asyncio.Lock()
        async with self._gate:
            wait = self.delay()
            if wait > 0:
                await asyncio.sleep(wait)
            self.passed()


Fetch = Callable[[], Awaitable[S]]


@attrs.define
class _Watch(Generic[S]):
    fetch: Fetch[S]
    done: Callable[[S], bool]
    cadence: Callable[[S | None], Cadence]
    # Which errors let polling go on; ``None``: the module's ``transient``.
    keep_on: Callable[[PhotaError], bool] | None = None
    waiters: int = 0
    listeners: int = 0  # waiters with an on_update callback, who want every snapshot
    snapshot: S | None = None
    final: S | None = None
    failure: PhotaError | None = None
    task: asyncio.Task[None] | None = None
    changed: asyncio.Event = attrs.Factory(asyncio.Event)
    nudged: asyncio.Event = attrs.Factory(asyncio.Event)
    # The waiters' telemetry spans, told of every snapshot (status-change events).
    observers: set[WaitScope] = attrs.Factory(set)

    def publish(self) -> None:
        """Wake every waiter; later waits use a fresh event."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()


class Poller:
    """Shared poll loops, keyed by what they watch. One per client."""

    def __init__(
        self, budget: PollBudget, max_retry_after: float = 60.0, telemetry: Hooks = OFF
    ) -> None:
        self.budget = budget  # the client widens it for batches of jobs
        self.telemetry = telemetry
        # A server's Retry-After is honoured up to this many seconds (the retry policy's cap):
        # an uncapped hint (``1e308``, a far-off date) would stop the loop for good.
        self._max_retry_after = max_retry_after
        self._watches: dict[Hashable, _Watch[object]] = {}
        self.polls = 0  # poll requests made, for introspection and benchmarks

    def nudge(self, key: Hashable) -> bool:
        """Poll ``key`` now instead of after the current sleep; ``False`` if nobody waits on it."""
        watch = self._watches.get(key)
        if watch is None:
            return False
        watch.nudged.set()
        return True

    async def wait(
        self,
        key: Hashable,
        fetch: Fetch[S],
        done: Callable[[S], bool],
        cadence: Callable[[S | None], Cadence],
        timeout: float,
        what: str,
        on_update: Callable[[S], None] | None = None,
        keep_on: Callable[[PhotaError], bool] | None = None,
    ) -> S:
        """Wait until ``done(snapshot)``; return that snapshot.

        ``on_update`` is called with each snapshot this waiter sees that differs from the one
        before (for progress: once per observed status change, not once per poll).
        ``keep_on`` decides which poll errors let polling go on, when a new watch starts
        (by default ``transient``).

        Raises:
            WaitTimeoutError: ``timeout`` seconds passed first (carries the last snapshot).
            PhotaError: polling got a definite error (such as 404).
        """
        check_callback(on_update, "on_update")
        # Opened first: a poll loop started below runs inside the first waiter's span.
        span = self.telemetry.wait(key)
        watch: _Watch[S]
        existing = self._watches.get(key)
        if existing is None:
            watch = _Watch(fetch, done, cadence, keep_on)
            self._watches[key] = watch  # type: ignore[assignment]
            watch.task = asyncio.get_running_loop().create_task(self._run(watch))
        else:
            watch = existing  # type: ignore[assignment]
        watch.waiters += 1
        if on_update is not None:
            watch.listeners += 1
        watch.observers.add(span)
        span.saw(watch.snapshot)
        try:
            with anyio.move_on_after(timeout):
                seen: S | None = None
                while True:
                    # Each poll makes a new snapshot; only a changed one is news (a status
                    # change, in practice), so a callback is not called again per poll.
                    if (
                        on_update is not None
                        and watch.snapshot is not None
                        and watch.snapshot != seen
                    ):
                        seen = watch.snapshot
                        call_back(on_update, seen)
                    if watch.final is not None:
                        return watch.final
                    if watch.failure is not None:
                        raise watch.failure
                    await watch.changed.wait()
            raise WaitTimeoutError(
                f"{what} did not finish within {timeout:g} s",
                last=watch.snapshot,  # type: ignore[arg-type]
            )
        except BaseException as exc:
            span.failed(exc)
            raise
        finally:
            watch.observers.discard(span)
            span.close()
            watch.waiters -= 1
            if on_update is not None:
                watch.listeners -= 1
            if watch.waiters == 0:
                await self._stop(key, watch)

    async def _stop(self, key: Hashable, watch: _Watch[S]) -> None:
        if self._watches.get(key) is watch:
            del self._watches[key]
        task = watch.task
        if task is not None and not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})

    async def _run(self, watch: _Watch[S]) -> None:
        polls = 0
        loop = asyncio.get_running_loop()
        while True:
            queued = loop.time()
            await self.budget.acquire()
            watch.nudged.clear()
            polls += 1
            self.polls += 1
            started = loop.time()
            hint: float | None = None
            try:
                snapshot = await watch.fetch()
            except PhotaError as exc:
                if not (watch.keep_on or transient)(exc):
                    watch.failure = exc
                    watch.publish()
                    return
                if isinstance(exc, APIError) and exc.retry_after is not None:
                    hint = min(exc.retry_after, self._max_retry_after)
            else:
                watch.snapshot = snapshot
                for observer in watch.observers:
                    observer.saw(snapshot)
                if watch.done(snapshot):
                    watch.final = snapshot
                    watch.publish()
                    return
                if watch.listeners:  # the others only need waking for the final answer
                    watch.publish()
            delay = next_delay(watch.cadence(watch.snapshot), polls, hint=hint)
            # A waiter should learn of a change at most one interval after it happened, so the
            # next answer is due ``delay`` after this poll left. The next poll therefore joins
            # the budget gate that long after this one left, less what this one took from
            # joining the gate to its answer (the estimate for the next one). The pause is never
            # negative, so a watch never has two polls in flight, and the client-wide budget
            # still bounds the rate. A server's Retry-After counts from its answer.
            answered = loop.time()
            pause = max(0.0, delay - (answered - started) - (answered - queued))
            if hint is not None:
                pause = max(pause, hint)
            # Sleep until the pause ends or a nudge comes, whichever is first: one timer that
            # sets the nudge event (cheaper than a cancel scope, which thousands of watches feel).
            waker = loop.call_later(pause, watch.nudged.set)
            try:
                await watch.nudged.wait()
            finally:
                waker.cancel()


ASYNC_CALLBACK = (
    "must be a plain function: it is called on the event loop and nothing awaits what it "
    "returns (schedule async work from it with asyncio.create_task)"
)


def check_callback(callback: object, name: str) -> None:
    """Refuse an async function as a progress callback, before anything is sent.

    Raises:
        InvalidRequestError: ``callback`` is an ``async def`` function.
    """
    if callback is not None and inspect.iscoroutinefunction(callback):
        raise InvalidRequestError(name, ASYNC_CALLBACK)


def call_back(on_update: Callable[[S], object], snapshot: S) -> None:
    """Call ``on_update(snapshot)``, refusing an awaitable answer (a lambda around an async
    function) rather than dropping it.

    Raises:
        InvalidRequestError: ``on_update`` returned an awaitable.
    """
    returned = on_update(snapshot)
    if inspect.isawaitable(returned):
        if inspect.iscoroutine(returned):
            returned.close()  # no "never awaited" warning on top
        raise InvalidRequestError("on_update", ASYNC_CALLBACK)


def wait_deadline(timeout: float | None, default: float) -> float:
    """A wait's deadline in seconds: ``None`` is the default, never an accidental forever."""
    if timeout is None:
        return default
    return check_seconds(timeout, "timeout")


def transient(exc: PhotaError) -> bool:
    """Whether polling should go on after ``exc``: the thing may still finish."""
    if isinstance(exc, APIError):
        return exc.status in TRANSIENT_STATUSES
    return isinstance(exc, (TransportError, ResponseValidationError))
