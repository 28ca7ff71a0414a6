"""The cluster's shared limits: one governor per run id, a named Ray actor.

Theory of operation. Every ``phota_async.ray`` actor of a run finds the governor by name
(``governor_name(run_id)``). It holds two things the actors must not each own:

- **The pace.** One ``_limiter`` lane (``shared_lane``), the same adaptive algorithm a client
  runs for itself: slow start (8 permits unanswered, one more per reported success), open
  until the server throttles, then multiplicative decrease once per
  window and a CUBIC climb back. Actors take *permits* for their paid submits in small leases
  (``permits(n, ...)``: at most a quarter of a second's worth once paced), so the governor is
  on one call per lease, not per request. With each lease an actor reports what happened to
  the submits of its previous one (successes, 429/503 answers, the pause the server asked
  for), so one actor's throttled answer slows every actor.
- **The money.** ``lease(usd)`` grants dollars out of the run's budget; the sum of what is
  leased and not given back never passes the limit, so the cluster cannot spend past it
  whatever the actors do. An actor spends its lease through an ordinary local ``Budget`` (its
  client's) and gives back what it did not reserve when it ends. A lease of an actor that was
  killed is never given back: it stays counted, which can only make the run stop early, never
  spend more.

``Governor`` is plain Python (tested without Ray); ``governor()`` wraps it as an async actor
on first use.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from .._limiter import Lane, shared_lane

_MICRO = 1_000_000
# Seconds of the shared pace one lease may carry once paced (a larger lease is a burst).
_LEASE_SECONDS = 0.25
_MAX_PAUSE = 60.0


def governor_name(run_id: str) -> str:
    """The Ray actor name of a run's governor."""
    return f"phota-governor:{run_id}"


class Governor:
    """A run's shared pace and budget pool (the state of the named governor actor).

    Args:
        budget: the run's limit in dollars, or ``None`` for no cap.
        max_pause: the longest ``Retry-After`` pause honoured, in seconds.
    """

    def __init__(self, budget: float | None = None, max_pause: float = _MAX_PAUSE) -> None:
        if budget is not None and not (
            isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget >= 0
        ):
            raise ValueError(f"budget must be dollars >= 0, got {budget!r}")
        self._limit = None if budget is None or math.isinf(budget) else round(budget * _MICRO)
        self._out = 0  # micro-dollars leased and not given back
        self._leased = 0  # micro-dollars ever leased
        self._returned = 0
        self._max_pause = max_pause
        self._lane: Lane | None = None  # made on the actor's loop, at first use
        self._granted = 0
        self._ok = 0
        self._throttled = 0

    def _pace(self) -> Lane:
        if self._lane is None:
            self._lane = shared_lane("cluster", self._max_pause)
        return self._lane

    async def permits(
        self,
        want: int,
        ok: int = 0,
        throttled: int = 0,
        pause: float = 0.0,
        epoch: int = 0,
        unused: int = 0,
    ) -> tuple[int, int]:
        """Learn from an actor's last lease, then grant it up to ``want`` permits at the pace.

        Args:
            want: permits asked for (>= 1).
            ok: submits of the last lease that were admitted.
            throttled: 429/503 answers they got.
            pause: the longest ``Retry-After`` pause among those answers, in seconds.
            epoch: the epoch the last lease was granted under.
            unused: permits of earlier leases given back without a request.

        Returns:
            ``(granted, epoch)``: permits granted (>= 1) and the epoch to report back with.
        """
        await self.report(ok, throttled, pause, epoch, unused)
        lane = self._pace()
        rate = lane.current_rate(_now())
        if rate is not None:
            want = min(want, max(1, math.ceil(rate * _LEASE_SECONDS)))
        granted = 0
        epoch_now = lane.epoch
        for _ in range(max(1, want)):
            epoch_now = await lane.admit()
            granted += 1
        self._granted += granted
        return granted, epoch_now

    async def report(
        self, ok: int, throttled: int = 0, pause: float = 0.0, epoch: int = 0, unused: int = 0
    ) -> None:
        """Learn what happened to submits sent under permits (arguments as ``permits``;
        ``unused``: permits given back without a request, which free their slow-start slot)."""
        lane = self._pace()
        for _ in range(min(unused, 1000)):
            lane.landed(None)
        self._ok += ok
        self._throttled += throttled
        # Each report frees the slow-start slots of the permits it answers for (a success
        # widens the window by one), then teaches the pace.
        for _ in range(min(ok, 1000)):
            lane.landed(200)
            lane.answered(200, None, epoch)
        for i in range(throttled):
            lane.landed(429)
            lane.answered(429, pause if i == 0 and pause > 0 else None, epoch)

    async def lease(self, usd: float) -> float:
        """Grant up to ``usd`` dollars out of the budget (all of it when uncapped).

        Returns:
            The dollars granted: less than asked (or 0) near the limit.
        """
        want = max(0, round(usd * _MICRO))
        grant = want if self._limit is None else max(0, min(want, self._limit - self._out))
        self._out += grant
        self._leased += grant
        return grant / _MICRO

    async def give_back(self, usd: float) -> None:
        """Take back the unspent part of a lease."""
        amount = min(self._out, max(0, round(usd * _MICRO)))
        self._out -= amount
        self._returned += amount

    async def stats(self) -> dict[str, Any]:
        """The governor's figures: budget pool, permits, throttling, pace."""
        lane = self._lane
        rate = lane.current_rate(_now()) if lane is not None else None
        return {
            "limit": None if self._limit is None else self._limit / _MICRO,
            "outstanding": self._out / _MICRO,
            "leased": self._leased / _MICRO,
            "returned": self._returned / _MICRO,
            "permits": self._granted,
            "admitted": self._ok,
            "throttled": self._throttled,
            "decreases": lane.decreases if lane is not None else 0,
            "rate": rate,
        }


def _now() -> float:
    return asyncio.get_running_loop().time()
