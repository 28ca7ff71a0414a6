"""Whole-call deadlines for many concurrent calls, served by one loop timer per client.

``asyncio.timeout()`` arms and cancels a loop timer for every call; at thousands of calls a
second that bookkeeping was the largest single cost of a request in the SDK (measured with
callgrind, see ``benchmarks/README.md``). A call's deadline is the same thing done once per
client: each call pushes ``(deadline, entry)`` onto one heap, and a single timer armed for the
earliest live deadline cancels the calls that are past theirs. The semantics are those of
``asyncio.timeout()``: on expiry the task is cancelled, and leaving the block turns that
cancellation (and only that one) into ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from types import TracebackType


class Deadline:
    """One call's deadline: ``with deadlines.after(seconds): ...`` inside a task.

    A plain (not async) context manager: entering and leaving need no await, which keeps the
    per-call cost to a heap push and a flag.
    """

    __slots__ = ("_cancelling", "_owner", "_task", "done", "expired", "when")

    def __init__(self, owner: Deadlines, when: float) -> None:
        self._owner = owner
        self.when = when
        self.done = False
        self.expired = False
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0

    def __enter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline needs a running task")
        self._task = task
        self._cancelling = task.cancelling()
        self._owner._add(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.done = True
        self._owner._live -= 1
        if self.expired and exc_type is asyncio.CancelledError:
            assert self._task is not None
            if self._task.uncancel() <= self._cancelling:
                raise TimeoutError from exc

    def _expire(self) -> None:
        self.expired = True
        assert self._task is not None
        self._task.cancel()


class Deadlines:
    """Every pending call deadline of one client, with one loop timer for all of them."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._armed_for = float("inf")
        self._live = 0

    def after(self, seconds: float) -> Deadline:
        """A deadline ``seconds`` from now (use it as a context manager inside a task)."""
        return Deadline(self, asyncio.get_running_loop().time() + seconds)

    def _add(self, deadline: Deadline) -> None:
        self._live += 1
        heapq.heappush(self._heap, (deadline.when, next(self._order), deadline))
        if len(self._heap) > 64 and len(self._heap) > 4 * self._live:
            # Finished calls stay in the heap until their deadline; sweep them out now and then.
            self._heap = [item for item in self._heap if not item[2].done]
            heapq.heapify(self._heap)
        if deadline.when < self._armed_for:
            self._arm(deadline.when)

    def _arm(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_for = when
        self._timer = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._armed_for = float("inf")
        now = asyncio.get_running_loop().time()
        heap = self._heap
        while heap and (heap[0][2].done or heap[0][0] <= now):
            _, _, deadline = heapq.heappop(heap)
            if not deadline.done:
                deadline._expire()
        if heap:
            self._arm(heap[0][0])
