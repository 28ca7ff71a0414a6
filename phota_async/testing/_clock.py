"""The emulator's sense of time: a ``Clock`` it reads and sleeps on, real or manual.

Everything the simulated service does over time (validation, training phases, job queue and run
times, processing time, answer latency, callback back-off, download URL expiry, timestamps) goes
through one ``Clock``. The default, ``MonotonicClock``, is real time. ``ManualClock`` stands
still until a test moves it with ``advance()``, so a 20-minute training or a 24-hour URL expiry
is a single call instead of a wait.

Thread-safety: a threaded ``PhotaEmulator`` sleeps on its own thread's event loop while the test
calls ``advance()`` from another thread. Each sleeper remembers the loop it sleeps on, and
``advance()`` wakes it there with ``call_soon_threadsafe``; the clock's state sits behind a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@runtime_checkable
class Clock(Protocol):
    """What the emulator needs of a clock: a reading in seconds and a way to wait."""

    def now(self) -> float:
        """Seconds on a clock that never goes backwards (its origin is arbitrary)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` have passed on this clock."""
        ...


class MonotonicClock:
    """Real time: ``time.monotonic()`` and ``asyncio.sleep``. The emulator's default."""

    def __repr__(self) -> str:
        return "MonotonicClock()"

    def now(self) -> float:
        """Seconds of ``time.monotonic()``.

        Returns:
            The current monotonic reading.
        """
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep for real.

        Args:
            seconds: how long; zero or less yields to the loop once.
        """
        await asyncio.sleep(max(0.0, seconds))


class ManualClock:
    """A clock that moves only when told to, for exact, instant tests of timed behaviour.

    ``sleep()`` parks the caller until ``advance()`` has moved the clock past its moment; the
    sleeper then wakes on its own event loop (any thread's). Typical use:

    ```python
    clock = ManualClock()
    with PhotaEmulator(clock=clock) as emu:
        profile_id = emu.add_profile(training_seconds=20 * 60)  # QUEUING
        clock.advance(20 * 60)                                 # READY, at once
    ```

    Statuses that are a matter of time (training phases, a job's QUEUED and RUNNING, URL
    expiry) change the moment ``advance()`` returns. Work the clock does not pace still takes
    real time: downloading and checking training photos, making images, delivering callbacks.
    Poll for its outcome after advancing, and use ``sleepers`` to know that the emulator has
    started waiting before you move the clock past the wait.

    Args:
        start: the first reading of ``now()``.
    """

    def __init__(self, start: float = 0.0) -> None:
        if not math.isfinite(start):
            raise ValueError(f"start must be a finite number of seconds, not {start!r}")
        self._now = float(start)
        self._lock = threading.Lock()
        self._order = itertools.count()
        # sequence number -> (moment to wake, loop slept on, future to resolve)
        self._sleepers: dict[
            int, tuple[float, asyncio.AbstractEventLoop, asyncio.Future[None]]
        ] = {}

    def __repr__(self) -> str:
        return f"<ManualClock now={self.now():g} sleepers={self.sleepers}>"

    def now(self) -> float:
        """The clock's reading: ``start`` plus everything advanced so far.

        Returns:
            Seconds.
        """
        with self._lock:
            return self._now

    @property
    def sleepers(self) -> int:
        """How many ``sleep()`` calls are waiting for the clock to move."""
        with self._lock:
            return len(self._sleepers)

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has been advanced by ``seconds`` from now.

        Args:
            seconds: how long, on this clock; zero or less only yields to the loop once.
        """
        await self._sleep(lambda now: now + seconds)

    async def sleep_until(self, moment: float) -> None:
        """Wait until the clock reads ``moment`` or later.

        Unlike ``sleep(moment - now())``, no ``advance()`` from another thread can slip in
        between reading the clock and starting to wait.

        Args:
            moment: a reading of this clock.
        """
        await self._sleep(lambda _: moment)

    async def _sleep(self, moment_from: Callable[[float], float]) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            moment = moment_from(self._now)
            due = not moment > self._now  # NaN counts as due: nothing to wait for
            if not due:
                key = next(self._order)
                self._sleepers[key] = (moment, loop, future)
        if due:
            await asyncio.sleep(0)
            return
        try:
            await future
        finally:
            with self._lock:
                self._sleepers.pop(key, None)

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every sleeper whose moment has come.

        Safe to call from any thread, including one that is not running the sleepers' loop.
        The woken sleepers resume on their loops soon after this returns, in the order of the
        moments they waited for.

        Args:
            seconds: how far; must be a finite number >= 0.

        Raises:
            TypeError: ``seconds`` is not a number.
            ValueError: ``seconds`` is negative, infinite or NaN, or so large that the clock
                would read infinity.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"advance() takes a number of seconds, not {seconds!r}")
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"a clock only moves forward: advance({seconds!r})")
        with self._lock:
            if not math.isfinite(self._now + seconds):
                # An infinite reading would break every timestamp the emulator derives from it.
                raise ValueError(f"advance({seconds!r}) would move the clock past any finite time")
            self._now += seconds
            due = sorted(
                (moment, key)
                for key, (moment, _, _) in self._sleepers.items()
                if moment <= self._now
            )
            woken = [self._sleepers.pop(key) for _, key in due]
        for _, loop, future in woken:
            # A sleeper whose loop has closed meanwhile has nobody left to wake.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_wake, future)


async def sleep_until(clock: Clock, moment: float) -> None:
    """Wait until ``clock`` reads ``moment`` or later (at once if it already does).

    Args:
        clock: the clock to wait on; a ``ManualClock`` does this without a race against
            ``advance()`` from another thread.
        moment: a reading of ``clock``.
    """
    if isinstance(clock, ManualClock):
        await clock.sleep_until(moment)
    else:
        await clock.sleep(moment - clock.now())


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def within(clock: Clock, work: Awaitable[T], seconds: float) -> T:
    """Await ``work``, giving up after ``seconds`` on ``clock``.

    Args:
        clock: the clock that measures the limit.
        work: what to wait for; cancelled when the limit passes first.
        seconds: the limit.

    Returns:
        What ``work`` returned.

    Raises:
        TimeoutError: the limit passed first.
    """
    task = asyncio.ensure_future(work)
    timer = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        # Reached on the limit, and when the caller itself is cancelled: stop both.
        for pending in (timer, task):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(timer, task, return_exceptions=True)
    if task.cancelled():
        raise TimeoutError(f"not done within {seconds:g} s")
    return task.result()
