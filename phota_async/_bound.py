"""The client's concurrency bound: at most ``n`` requests in flight, waiters served first come,
first served.

``asyncio.Semaphore`` would do, but every ``async with`` on it creates three coroutines and a
generator even when a slot is free: about 12,000 CPU instructions per GET (callgrind), a
seventh of everything the SDK added to a bare aiohttp request (``benchmarks/README.md``). Here
a free slot is taken with a plain method call (``try_take``), and only a caller that has to
wait awaits (``take``). A released slot is handed straight to the oldest waiter, so a newcomer
can never overtake it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class Bound:
    """At most ``limit`` holders at a time.

    Use as:

    ```python
    if not bound.try_take():
        await bound.take()
    try:
        ...
    finally:
        bound.give()
    ```
    """

    __slots__ = ("_free", "_waiters")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def free(self) -> int:
        """Slots free right now."""
        return self._free

    def try_take(self) -> bool:
        """Take a slot if one is free and nobody is waiting for it; never blocks."""
        if self._free and not self._waiters:
            self._free -= 1
            return True
        return False

    async def take(self) -> None:
        """Wait for a slot, in arrival order. Cancelling the wait takes no slot."""
        if self.try_take():
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                with contextlib.suppress(ValueError):  # give() may have dropped it already
                    self._waiters.remove(waiter)
            else:
                # The slot was handed over just as the wait was cancelled: pass it on.
                self.give()
            raise

    def give(self) -> None:
        """Return a slot: to the oldest live waiter if there is one, else to the pool."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
