"""Whole-call deadlines for many concurrent calls, served by one loop timer per client.

``asyncio.timeout()`` arms and cancels a loop timer for every call; at thousands of calls a
second that bookkeeping was the largest single cost of a request in the SDK (measured with
callgrind, see ``benchmarks/README.md``). A call's deadline is the same thing done once per
client: each call pushes ``(deadline, entry)`` onto one heap, and a single timer armed for the
earliest live deadline cancels the calls that are past theirs. The semantics are those of
``asyncio.timeout()``: on expiry the task is cancelled, and leaving the block turns that
cancellation (and only that one) into ``TimeoutError``.

Only finite deadlines enter the heap: a ``nan`` in it would make every comparison false and
break the heap order for every other call of the client, so ``after()`` refuses it, and an
infinite deadline simply never arms the timer. A ``Deadline`` also records where its call is
(``phase``), so that a call cut off by its deadline can say where the time went and whether
anything was sent.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
from types import TracebackType
from typing import Any

from ._redact import shown
from .errors import InvalidRequestError

# Where a call is when its deadline passes (``Deadline.phase``).
STARTING = "starting"
QUEUED = "queued for a concurrency slot"
SENDING = "sending"
BACKOFF = "waiting to retry"


def check_seconds(
    value: Any, field: str, *, allow_inf: bool = True, allow_zero: bool = True
) -> float:
    """Accept a number of seconds: a real number, not ``nan``, not negative.

    Args:
        value: what the caller passed.
        field: the parameter's name, for the error.
        allow_inf: whether ``math.inf`` ("no limit") is accepted.
        allow_zero: whether ``0`` is accepted.

    Returns:
        The value as a ``float``.

    Raises:
        InvalidRequestError: ``value`` is not an acceptable number of seconds.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRequestError(field, f"must be a number of seconds, got {type(value).__name__}")
    seconds = float(value)
    if math.isnan(seconds):
        raise InvalidRequestError(field, "must be a number of seconds, got nan")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidRequestError(field, f"must be {bound} seconds, got {shown(value)}")
    if math.isinf(seconds) and not allow_inf:
        raise InvalidRequestError(field, "must be a finite number of seconds, got inf")
    return seconds


class Deadline:
    """One call's deadline: ``with deadlines.after(seconds): ...`` inside a task.

    A plain (not async) context manager whose entering costs nothing: ``Deadlines.after``
    already registered it, so the per-call cost is one small object and a heap push.
    """

    __slots__ = ("_cancelling", "_task", "done", "expired", "phase", "when")

    _task: asyncio.Task[object]
    _cancelling: int
    done: bool
    expired: bool
    phase: str
    when: float
    """The loop time at which the call is cut off (``math.inf``: never)."""

    def remaining(self) -> float:
        """Seconds left before the deadline (negative once it has passed)."""
        return self.when - self._task.get_loop().time()

    def __enter__(self) -> Deadline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.done = True
        if (
            self.expired
            and exc_type is asyncio.CancelledError
            and self._task.uncancel() <= self._cancelling
        ):
            raise TimeoutError from exc

    def _expire(self) -> None:
        self.expired = True
        self._task.cancel()


class Deadlines:
    """Every pending call deadline of one client, with one loop timer for all of them."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = math.inf
        self._sweep_at = 64

    def after(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now for the current task; use it as a context manager
        right away (it counts from this call).

        Raises:
            InvalidRequestError: ``seconds`` is ``nan`` (nothing is registered).
        """
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        if seconds != seconds:
            raise InvalidRequestError("timeout", "must be a number of seconds, got nan")
        if seconds < 0:
            seconds = 0.0  # already past: cut off at the next turn of the loop
        deadline = Deadline.__new__(Deadline)
        deadline._task = task
        deadline._cancelling = task.cancelling()
        deadline.done = deadline.expired = False
        deadline.phase = STARTING
        when = deadline.when = task.get_loop().time() + seconds
        if when == math.inf:
            return deadline  # no limit: nothing to arm
        heap = self._heap
        heapq.heappush(heap, (when, next(self._order), deadline))
        if len(heap) > self._sweep_at:
            # Finished calls stay in the heap until their deadline; sweep them out now and then
            # (when the heap has doubled since the last sweep, so the cost per call is constant).
            heap = self._heap = [item for item in heap if not item[2].done]
            heapq.heapify(heap)
            self._sweep_at = max(64, 2 * len(heap))
        if when < self._armed_for:
            self._arm(when)
        return deadline

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = when
        self._timer = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed_for = math.inf
        now = asyncio.get_running_loop().time()
        heap = self._heap
        while heap and (heap[0][2].done or heap[0][0] <= now):
            _, _, deadline = heapq.heappop(heap)
            if not deadline.done:
                deadline._expire()
        if heap:
            self._arm(heap[0][0])
