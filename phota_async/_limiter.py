"""The client's adaptive limiter: how fast to send when the server throttles.

Theory of operation
-------------------
Phota documents no rate limit, so the client discovers it. Every request of a client goes
through one ``Limiter``, shared by all its tasks, in one of three *lanes*: ``studio`` (paid and
keyed POSTs, and their retries), ``api`` (GETs and DELETEs: polls, profile calls) and
``download`` (signed output URLs and upload PUTs). A lane is throttled only by the answers to
its own requests, so a storm of 429s on ``/enhance`` never slows the polls of waiting jobs.
``max_concurrency`` stays the ceiling over all lanes (``_bound.Bound``).

The studio lane begins in *slow start* (as TCP does): at most ``SLOW_START`` requests in
flight, one more per success, so the window doubles each round trip and reaches
``max_concurrency`` within a few; a batch against a small bucket then overshoots it by one
window, not by the whole ceiling. The first throttle ends slow start (see below); so does
reaching the ceiling. It costs an unthrottled client about ``log2(max_concurrency /
SLOW_START)`` round trips of partial concurrency, once per client.

A lane past slow start is *open*: a request takes a concurrency slot with one method call
(``Lane.try_take``) and nothing else is counted but the requests it let through. On a 429 or a
503, the lane closes and paces its requests instead (a queue served by one loop timer, first
come first served, never two requests closer than ``1 / rate`` seconds):

- **Multiplicative decrease, once per window.** The new rate is ``BETA`` times the lower of the
  current rate and the rate the server admitted over the last second (the successes counted
  while paced; on the first throttle, the rate the lane was sending at). A request remembers
  the lane's *epoch* when it is sent, and only a refusal of a request sent since the last
  decrease decreases again (as TCP reacts once per round trip): the refusals of a burst that
  was already in flight count, but do not collapse the rate.
- **A pause for everyone.** A ``Retry-After`` (capped by ``RetryPolicy.max_retry_after``)
  holds every new attempt of the lane until it ends, not only the task that got it. A call's
  own deadline still applies while it waits (it is cut off, never held past it).
- **CUBIC increase.** While calls succeed, the rate follows TCP CUBIC's curve
  ``W(t) = C (t - K)^3 + W_max`` from ``BETA * W_max`` at the decrease: concave back up to
  ``W_max`` (the last admitted rate) within ``K = CUBIC_K`` seconds, a plateau there, then a
  convex probe above it. ``C`` is scaled by ``W_max`` so that the cycle takes as long at 20
  requests a second as at 2,000. Once the probe has doubled ``W_max`` and the server has taken
  about that many requests in the last second without a refusal, the limit is taken to be gone
  and the lane opens again: the ceiling alone bounds it. A pace the client does not use (few
  calls, or a busy CPU) proves nothing, so it does not reopen the lane (as TCP does not grow a
  window it does not fill) until the probe is ``OPEN_ANYWAY`` times past ``W_max``.

Throttled paid POSTs are retried by the retry layer as before: a 429 or a 503 means the request
was refused unprocessed (``phota-api.md``), so it cannot bill twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType

import attrs

from ._bound import Bound
from ._retry import waits_removed

THROTTLED = frozenset({429, 503})
BETA = 0.9  # the share of the admitted rate kept after a refusal
FIRST_BETA = 0.5  # the same, on the first refusal after the lane was open
CUBIC_K = 3.0  # seconds from a decrease back to the admitted rate
WINDOW = 1.0  # seconds over which the admitted rate is measured
MIN_RATE = 1.0  # requests per second: the lane never stops for good
OPEN_AFTER = 2.0  # a probe this many times the last admitted rate reopens the lane...
OPEN_ANYWAY = 100.0  # ...once the server took it; this many times reopens it regardless
SLOW_START = 8  # requests the studio lane lets fly at first; +1 per success up to the ceiling

STUDIO = "studio"
API = "api"
DOWNLOAD = "download"


@attrs.frozen
class LaneStats:
    """One lane of the limiter at one moment.

    Attributes:
        name: ``studio`` (paid and keyed POSTs), ``api`` (GETs, DELETEs) or ``download``.
        rate: the pace in requests per second, ``None`` while the lane is open (unthrottled).
        pause_left: seconds left of a ``Retry-After`` pause (0 when none).
        throttled: 429 and 503 answers received in this lane.
        decreases: how many times the rate was lowered.
        queued: attempts waiting for their turn.
    """

    name: str
    rate: float | None
    pause_left: float
    throttled: int
    decreases: int
    queued: int


@attrs.frozen
class ThrottleStats:
    """The adaptive limiter of a client at one moment (``PhotaClient.throttle``).

    Attributes:
        max_concurrency: the ceiling of requests in flight.
        in_flight: requests in flight now.
        throttled: 429 and 503 answers received so far, every lane together.
        rate: the studio lane's pace in requests per second; ``None`` while unthrottled.
        pause_left: seconds left of the studio lane's ``Retry-After`` pause.
        lanes: every lane, by name.
    """

    max_concurrency: int
    in_flight: int
    throttled: int
    rate: float | None
    pause_left: float
    lanes: Mapping[str, LaneStats] = attrs.field(repr=False)

    def line(self) -> str:
        """One human line, such as ``throttled 12 (429/503); pacing 19.6/s``; empty when the
        server never throttled."""
        if not self.throttled:
            return ""
        parts = [f"throttled {self.throttled} (429/503)"]
        if self.rate is not None:
            parts.append(f"pacing {self.rate:.1f}/s")
        if self.pause_left > 0:
            parts.append(f"paused {self.pause_left:.1f} s")
        return "; ".join(parts)


class Lane:
    """One class of requests with its own pace (see the module's theory of operation).

    Use as:

    ```python
    epoch = lane.epoch
    if not lane.try_take():
        if not lane.open:
            await lane.turn()
        if not bound.try_take():
            await bound.take()
    try:
        response = ...
    finally:
        bound.give()
    if response.status in THROTTLED or lane.rate is not None:
        lane.answered(response.status, retry_after, epoch)
    ```
    """

    __slots__ = (
        "_admitted",
        "_bound",
        "_cap",
        "_ceiling",
        "_flying",
        "_k",
        "_last",
        "_opened_at",
        "_paced_at",
        "_queue",
        "_since",
        "_starting",
        "_timer",
        "_w_max",
        "decreases",
        "epoch",
        "name",
        "open",
        "paused_until",
        "rate",
        "sent",
        "throttled",
        "window",
    )

    def __init__(
        self, name: str, bound: Bound, max_pause: float, ceiling: int, *, slow_start: bool = False
    ) -> None:
        self.name = name
        self._ceiling = ceiling
        self._bound = bound
        self._cap = max_pause
        # Slow start: at most ``window`` requests in flight, one more per success, until the
        # window reaches the ceiling (``None``: no slow start, or it is over).
        self.window: int | None = SLOW_START if slow_start and ceiling > SLOW_START else None
        self._flying = 0  # requests in flight that hold a slot of the window
        self._starting: deque[asyncio.Future[bool]] = deque()
        # not paced, not paused, not starting, nobody queued: the one-call fast path
        self.open = self.window is None
        self.rate: float | None = None
        self.epoch = 0
        self.sent = 0  # requests let through while open (the first throttle's estimate)
        self.throttled = 0
        self.decreases = 0
        self.paused_until = -math.inf
        self._queue: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._last = -math.inf  # when the last paced request was let through
        self._admitted: deque[float] = deque()  # success times within WINDOW, while paced
        self._w_max = 0.0
        self._k = CUBIC_K
        self._since = 0.0
        self._paced_at = 0.0  # when the lane last closed to pace its requests
        self._opened_at: float | None = None  # when it last opened again (None: never closed)

    # -- taking a turn -------------------------------------------------------------------

    def try_take(self) -> bool:
        """Take a concurrency slot at once if the lane is open; never blocks."""
        if self.open and self._bound.try_take():
            self.sent += 1
            return True
        return False

    async def turn(self) -> bool:
        """Wait for this lane's next turn: during slow start, a free slot of the window; once
        paced, after any pause, ``1 / rate`` after the last one, first come first served.
        Cancelling the wait gives the turn up. Under ``set_testing()`` there is no wait (the
        limiter still learns and counts).

        Returns:
            Whether the turn holds a slot of the slow-start window: then ``landed`` must be
            called once the attempt is over, whatever happened to it.
        """
        if waits_removed():
            return False
        loop = asyncio.get_running_loop()
        while self.window is not None:
            if self._flying < self.window and not self._starting:
                self._flying += 1
                self.sent += 1
                return True
            slot: asyncio.Future[bool] = loop.create_future()
            self._starting.append(slot)
            try:
                if await slot:
                    return True  # handed a slot by ``landed``
            except asyncio.CancelledError:
                if slot.cancelled():
                    with contextlib.suppress(ValueError):
                        self._starting.remove(slot)
                elif slot.result():
                    self.landed(None)  # handed a slot it will not use: pass it on
                raise
        waiter: asyncio.Future[None] = loop.create_future()
        self._queue.append(waiter)
        self.open = False
        self._schedule(loop)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.cancelled():
                with contextlib.suppress(ValueError):  # the timer may have dropped it already
                    self._queue.remove(waiter)
            if not self._queue and self._timer is not None:
                # Nobody is left to serve: leave no timer behind on the loop.
                self._timer.cancel()
                self._timer = None
            self._reopen()
            raise
        return False

    async def admit(self) -> int:
        """Wait for this lane's next turn and hold no concurrency slot: a permit handed to a
        request sent elsewhere (``phota_async.ray``'s governor paces a cluster's actors this
        way). During slow start the permit holds a slot of the window: report its answer with
        ``landed`` (then ``answered``).

        Returns:
            The lane's epoch when the permit was given (pass it back to ``answered``).
        """
        if self.try_take():
            self._bound.give()
        else:
            await self.turn()  # in slow start, the permit holds a slot until ``landed``
        return self.epoch

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """Arm the one timer for the next turn (or hand it out now)."""
        while self._queue and self._timer is None:
            now = loop.time()
            at = self.paused_until
            rate = self.current_rate(now)
            if rate is not None:
                at = max(at, self._last + 1.0 / rate)
            if at > now:
                self._timer = loop.call_at(at, self._fire, loop)
                return
            waiter = self._queue.popleft()
            if waiter.done():
                continue
            waiter.set_result(None)
            self._last = now
        self._reopen()

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._schedule(loop)

    def _reschedule(self) -> None:
        """The pace or the pause changed: the armed timer may be too early or too late."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queue:
            self._schedule(asyncio.get_running_loop())

    def landed(self, status: int | None) -> None:
        """An attempt that held a slow-start slot is over (``status``: its answer's, ``None``
        when it got none). A success widens the window by one (it doubles each round trip);
        the slot goes to the next waiter."""
        self._flying -= 1
        window = self.window
        if window is None:
            return
        if status is not None and status < 400:
            window += 1
            if window >= self._ceiling:
                self._end_slow_start()
                return
            self.window = window
        starting = self._starting
        while starting and self._flying < window:
            slot = starting.popleft()
            if not slot.done():
                self._flying += 1
                self.sent += 1
                slot.set_result(True)

    def _end_slow_start(self) -> None:
        """Leave slow start: the waiters go on to the fast path or the paced queue."""
        self.window = None
        while self._starting:
            slot = self._starting.popleft()
            if not slot.done():
                slot.set_result(False)
        self._reopen()

    def _reopen(self) -> None:
        self.open = (
            self.window is None
            and self.rate is None
            and not self._queue
            and self._timer is None
            and (
                self.paused_until == -math.inf
                or self.paused_until <= asyncio.get_running_loop().time()
            )
        )

    # -- feedback --------------------------------------------------------------------------

    def _curve(self, now: float) -> float:
        """The CUBIC pace at loop time ``now`` (the lane is paced)."""
        t = now - self._since
        return max(MIN_RATE, self._w_max * (1 + (1 - BETA) * ((t - self._k) / self._k) ** 3))

    def current_rate(self, now: float) -> float | None:
        """The pace at loop time ``now`` on the CUBIC curve; ``None`` once the lane is open
        (and the lane opens here once the probe has doubled the last admitted rate)."""
        if self.rate is None:
            return None
        rate = self._curve(now)
        if rate >= OPEN_AFTER * self._w_max and (
            len(self._admitted) >= OPEN_AFTER * self._w_max * WINDOW * 0.75
            or rate >= OPEN_ANYWAY * self._w_max
        ):
            # The probe doubled the last admitted rate and the server took about that much
            # without a refusal (a pace that the client itself cannot keep up with proves
            # nothing), or no refusal came for so long that the limit is surely gone.
            self.rate = None
            self._admitted.clear()
            self.sent = 0
            self._opened_at = now
            return None
        self.rate = rate
        return rate

    def answered(self, status: int, retry_after: float | None, epoch: int) -> None:
        """Learn from one answer of this lane; ``epoch`` is ``self.epoch`` when it was sent.

        Args:
            status: the HTTP status.
            retry_after: the answer's ``Retry-After`` in seconds, if any.
            epoch: the lane's epoch when the request was sent.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        admitted = self._admitted
        if status not in THROTTLED:
            if self.rate is not None:
                admitted.append(now)
                while admitted and admitted[0] <= now - WINDOW:
                    admitted.popleft()
                if self.current_rate(now) is None:
                    self._reschedule()
                    self._reopen()
            return
        self.throttled += 1
        changed = False
        if retry_after is not None and retry_after > 0:
            until = now + min(retry_after, self._cap)
            if until > self.paused_until:
                self.paused_until = until
                changed = True
        if epoch == self.epoch:
            # The first refusal of a request sent since the last decrease: decrease once.
            while admitted and admitted[0] <= now - WINDOW:
                admitted.popleft()
            current = self.current_rate(now)
            if current is None:
                # The first refusal since the lane was open: what it was sending, per second.
                opened = self._opened_at
                span = WINDOW if opened is None else max(WINDOW, now - opened)
                w_max = self.sent / span
                self.sent = 0
                if self.window is not None:
                    self._end_slow_start()
                self._paced_at = now
                admitted.clear()
            elif now - self._paced_at >= WINDOW:
                # Paced for a whole window: the server admitted this many a second.
                w_max = min(current, len(admitted) / WINDOW)
            else:
                w_max = current  # too early to measure what the server admits
            w_max = max(MIN_RATE, w_max)
            self._w_max = w_max
            self._since = now
            # Leaving the open state, the lane halves (as TCP leaves slow start): what it sent
            # while open is an upper bound of what the server takes, not an estimate of it.
            self.rate = max(MIN_RATE, (FIRST_BETA if current is None else BETA) * w_max)
            self.epoch += 1
            self.decreases += 1
            changed = True
        if changed:
            self.open = False
            self._reschedule()

    def close(self, error: BaseException) -> None:
        """The client is closing: every attempt waiting for its turn fails with ``error`` at
        once (none is sent), and no timer is left on the loop."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for waiters in (self._queue, self._starting):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(error)

    def ahead(self) -> float:
        """Seconds an attempt queued now would wait for its turn: the pause left, or its place
        in the paced queue (the retry layer counts it against the call's deadline)."""
        if waits_removed() or self.open:
            return 0.0
        now = asyncio.get_running_loop().time()
        wait = self.paused_until - now
        rate = self.current_rate(now)
        if rate is not None:
            wait = max(wait, self._last + (len(self._queue) + 1) / rate - now)
        return max(0.0, wait)

    def stats(self, now: float) -> LaneStats:
        """This lane at loop time ``now`` (reading it changes nothing)."""
        rate: float | None = None
        if self.rate is not None:
            rate = self._curve(now)
            if rate >= OPEN_ANYWAY * self._w_max:
                rate = None
        return LaneStats(
            name=self.name,
            rate=rate,
            pause_left=max(0.0, self.paused_until - now),
            throttled=self.throttled,
            decreases=self.decreases,
            queued=sum(1 for w in self._queue if not w.done()),
        )


def shared_lane(name: str, max_pause: float, ceiling: int = 1024) -> Lane:
    """A lane that hands out permits (``Lane.admit``) for requests sent by other processes,
    each bounded by its own client: slow start up to ``ceiling`` permits unanswered, then open
    or paced, with no concurrency bound of its own."""
    return Lane(name, Bound(1 << 30), max_pause, ceiling, slow_start=True)


class Limiter:
    """Every lane of one client over one concurrency ceiling.

    Args:
        max_concurrency: the most requests in flight at once, every lane together.
        max_pause: the longest ``Retry-After`` pause honoured (``RetryPolicy.max_retry_after``).
    """

    def __init__(self, max_concurrency: int, max_pause: float) -> None:
        self.max_concurrency = max_concurrency
        self.bound = Bound(max_concurrency)
        self.studio = Lane(STUDIO, self.bound, max_pause, max_concurrency, slow_start=True)
        self.api = Lane(API, self.bound, max_pause, max_concurrency)
        self.download = Lane(DOWNLOAD, self.bound, max_pause, max_concurrency)
        # A request's lane: by endpoint for downloads and uploads, else by retry class.
        self.by_endpoint = {"download": self.download, "upload": self.download}
        self.by_retry = {"paid": self.studio, "keyed": self.studio, "safe": self.api}

    def close(self, error: BaseException) -> None:
        """Fail every attempt waiting for its turn in any lane with ``error``."""
        for lane in (self.studio, self.api, self.download):
            lane.close(error)

    def lane(self, endpoint: str, retry: str) -> Lane:
        """The lane of a request: by endpoint for downloads and uploads, else by retry class."""
        return self.by_endpoint.get(endpoint) or self.by_retry[retry]

    def stats(self) -> ThrottleStats:
        """A snapshot of every lane (``PhotaClient.throttle``)."""
        try:
            now = asyncio.get_running_loop().time()
        except RuntimeError:  # read from outside the loop: its clock is the monotonic one
            now = time.monotonic()
        lanes = {lane.name: lane.stats(now) for lane in (self.studio, self.api, self.download)}
        studio = lanes[STUDIO]
        return ThrottleStats(
            max_concurrency=self.max_concurrency,
            in_flight=self.max_concurrency - self.bound.free,
            throttled=sum(lane.throttled for lane in lanes.values()),
            rate=studio.rate,
            pause_left=studio.pause_left,
            lanes=MappingProxyType(lanes),
        )
