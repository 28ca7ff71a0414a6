"""The one retry wrapper, and the only module that imports tenacity.

The rules ("retries never bill twice"):

| outcome of an attempt                      | safe (GET, DELETE) | keyed POST | paid POST                 |
|--------------------------------------------|--------------------|------------|---------------------------|
| ConnectError (not sent)                    | retry              | retry      | retry                     |
| 429, 503                                   | retry              | retry      | retry (refused unprocessed)|
| 500, 502                                   | retry              | retry      | raise (502: outcome unknown) |
| 504                                        | raise              | retry      | raise (refunded)          |
| connection lost, read timeout, cut body,   | retry              | retry      | raise OutcomeUnknownError |
| garbled status line or headers             |                    |            |                           |
| unreadable 2xx body                        | retry              | retry      | raise OutcomeUnknownError |
| every other status                         | raise              | raise      | raise                     |

A keyed POST (a job submit) whose attempts all lost their answer, or whose retries ended after
one of them may have created the job, raises ``OutcomeUnknownError`` too: the caller submits
again with the same key, which the server deduplicates.

``Retry-After`` (429/503) is honoured up to ``RetryPolicy.max_retry_after``; otherwise the wait
is capped, jittered exponential backoff. The call's deadline lives here too: a wait that the
time left cannot cover is not started (as stamina's ``stop_before_delay``); the last real error
is raised at once, saying that the deadline stopped the retries. Every attempt's request id is
kept on the final error (``Trail``), even when the deadline cuts a later attempt short.
``with set_testing():`` keeps the attempts but removes the waits, for fast test suites (the
adaptive limiter's pacing and pauses too: ``waits_removed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import attrs
import tenacity

from ._deadline import BACKOFF, Deadline, check_seconds
from ._protocol import RetryClass
from ._redact import shown
from .errors import (
    APIError,
    ConnectError,
    InvalidRequestError,
    OutcomeUnknownError,
    PhotaError,
    ResponseRefusedError,
    ResponseValidationError,
    TransportError,
)

T = TypeVar("T")
log = logging.getLogger("phota_async")

ALWAYS_RETRIED_STATUSES = frozenset({429, 503})
IDEMPOTENT_RETRIED_STATUSES = frozenset({500, 502})

_testing = False


class _Testing(contextlib.AbstractContextManager[None]):
    """The switch as it was before one ``set_testing`` call, restored on leaving a ``with``."""

    __slots__ = ("_previous",)

    def __init__(self, previous: bool) -> None:
        self._previous = previous

    def __exit__(self, *exc_info: object) -> None:
        global _testing
        _testing = self._previous


def set_testing(enabled: bool = True) -> contextlib.AbstractContextManager[None]:
    """Turn retry backoff waits off (``True``) or back on; attempts and their limits are
    unchanged.

    Use it as a context manager, which restores the previous setting on leaving (also on an
    error, and correctly when nested):

    ```python
    with phota_async.set_testing():
        ...  # retries happen at once
    ```

    A plain call ``set_testing(True)`` still switches at once and stays switched until
    ``set_testing(False)``.

    Args:
        enabled: ``True`` removes the waits, ``False`` puts them back.

    Returns:
        A context manager whose exit restores the setting seen before this call.
    """
    global _testing
    previous, _testing = _testing, bool(enabled)
    return _Testing(previous)


def waits_removed() -> bool:
    """Whether ``set_testing`` has removed the waits: the retry layer's backoffs, and the
    adaptive limiter's pacing and ``Retry-After`` pauses (``_limiter``), which still count."""
    return _testing


def _seconds(_: Any, attribute: attrs.Attribute[float], value: Any) -> None:
    check_seconds(value, f"RetryPolicy.{attribute.name}", allow_inf=False)


def _count(_: Any, attribute: attrs.Attribute[int], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequestError(
            f"RetryPolicy.{attribute.name}", f"must be a whole number >= 1, got {shown(value)}"
        )


@attrs.frozen
class RetryPolicy:
    """How hard to retry.

    Attributes:
        max_attempts: attempts per call, the first included.
        initial_backoff: the first wait, in seconds, before jitter.
        max_backoff: the cap of the exponential wait.
        max_retry_after: the longest ``Retry-After`` honoured; a longer hint waits this long.

    Raises:
        InvalidRequestError: a field is not a whole number >= 1 (``max_attempts``) or a finite
            number of seconds >= 0 (the others).
    """

    max_attempts: int = attrs.field(default=4, validator=_count)
    initial_backoff: float = attrs.field(default=0.5, validator=_seconds)
    max_backoff: float = attrs.field(default=8.0, validator=_seconds)
    max_retry_after: float = attrs.field(default=60.0, validator=_seconds)

    def wait_for(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if _testing:
            return 0.0
        hint = error.retry_after if isinstance(error, APIError) else None
        if hint is not None:
            return min(hint, self.max_retry_after)
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


def maybe_processed(error: BaseException) -> bool:
    """Whether the request that failed with ``error`` may have reached and been processed by
    the server: it was sent, and no definite answer came back (the connection broke, no answer
    in time, a garbled status line or headers, an unreadable body, or a proxy's 502)."""
    if isinstance(error, (ConnectError, ResponseRefusedError)):
        return False
    if isinstance(error, (TransportError, ResponseValidationError)):
        return True
    return isinstance(error, APIError) and error.status == 502


def retryable(error: BaseException, retry: RetryClass) -> bool:
    """Whether an attempt that failed with ``error`` may be sent again."""
    if isinstance(error, ConnectError):
        return True
    if isinstance(error, APIError):
        if error.status in ALWAYS_RETRIED_STATUSES:
            return True
        if error.status == 504:
            # A synchronous call that timed out was refunded; only a keyed submit, which the
            # server deduplicates, is worth sending again.
            return retry == "keyed"
        return error.status in IDEMPOTENT_RETRIED_STATUSES and retry != "paid"
    if maybe_processed(error):
        return retry != "paid"
    return False


class Trail:
    """What the attempts of one call left behind: every request id, how many attempts were
    made, the last error, and whether any attempt may have been processed. The client keeps
    it, so that a call cut short by its deadline still reports all of them."""

    __slots__ = ("attempts", "last", "maybe_processed", "request_ids")

    def __init__(self) -> None:
        self.attempts = 0
        self.last: PhotaError | None = None
        self.maybe_processed = False
        self.request_ids: list[str] = []

    def record(self, error: PhotaError) -> None:
        """Note a failed attempt."""
        self.last = error
        self.request_ids.extend(error.request_ids)
        if maybe_processed(error):
            self.maybe_processed = True

    def stamp(self, error: PhotaError) -> PhotaError:
        """Put every attempt's request id and the attempt count on ``error``; return it."""
        error.request_ids = tuple(dict.fromkeys([*self.request_ids, *error.request_ids]))
        error.attempts = max(self.attempts, 1)
        return error


def outcome_unknown(error: PhotaError, retry: RetryClass, trail: Trail) -> PhotaError:
    """The error to raise for a call that failed with ``error``: ``OutcomeUnknownError`` when
    the call may have been processed and charged (a paid POST whose answer was lost, or a
    keyed submit whose retries ended after an attempt that may have created the job)."""
    if retry == "paid" and maybe_processed(error):
        message = (
            f"{error}. The call may have been processed and charged, so it was not retried; "
            "run it as a job (phota.jobs.submit_*) to retry safely."
        )
    elif (
        retry == "keyed"
        and trail.maybe_processed
        and (maybe_processed(error) or retryable(error, retry))
    ):
        message = (
            f"{error}. An attempt may have created the job, and no later attempt got a "
            "definite answer."
        )
    else:
        return error
    unknown = OutcomeUnknownError(message)
    unknown.__cause__ = error
    return unknown


def _deadline_stop(
    deadline: Deadline | None, wait: float, ahead: Callable[[], float] | None = None
) -> str | None:
    """Why the call must stop instead of waiting ``wait`` seconds, if it must. ``ahead`` says
    how long the next attempt would then wait for its turn in the adaptive limiter (a
    ``Retry-After`` pause or its place in a paced queue): the wait is the longer of the two."""
    if deadline is None:
        return None
    if ahead is not None:
        wait = max(wait, ahead())
    left = deadline.remaining()
    if wait < left:
        return None
    return (
        f"retries stopped by the call's deadline: the next wait of {wait:.3g} s "
        f"does not fit in the {max(left, 0.0):.3g} s left"
    )


async def call(
    attempt: Callable[[], Awaitable[T]],
    *,
    retry: RetryClass,
    endpoint: str,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    first_failure: PhotaError | None = None,
    deadline: Deadline | None = None,
    trail: Trail | None = None,
    ahead: Callable[[], float] | None = None,
) -> T:
    """Run ``attempt`` until it succeeds or the rules above say stop.

    ``first_failure`` is the error of a first attempt the caller already made itself (the
    client does, so that a call that succeeds at once never builds any retry machinery).
    ``deadline`` is the call's: no wait is started that the time left cannot cover. ``trail``
    collects the attempts' request ids where the caller can still read them if the deadline
    cancels the call mid-attempt. ``ahead`` is the throttling hook: the seconds the next
    attempt would wait for its turn in the adaptive limiter, counted against the deadline.

    Raises:
        PhotaError: the last attempt's error, with ``request_ids`` of every attempt;
            ``OutcomeUnknownError`` when a paid POST's outcome cannot be known.
    """
    trail = Trail() if trail is None else trail

    async def again() -> T:
        trail.attempts += 1
        try:
            return await attempt()
        except PhotaError as error:
            trail.record(error)
            raise

    if first_failure is None:
        try:
            return await again()
        except PhotaError as error:
            first_failure = error
    else:
        trail.attempts += 1
        trail.record(first_failure)
    if not retryable(first_failure, retry) or policy.max_attempts <= 1:
        _finish(first_failure, retry, trail)
    wait = policy.wait_for(1, first_failure)
    stopped = _deadline_stop(deadline, wait, ahead)
    if stopped is not None:
        _finish(first_failure, retry, trail, stopped)
    log.debug("retrying %s after attempt 1: %s", endpoint, first_failure)
    if deadline is not None:
        deadline.phase = BACKOFF
    await sleep(wait)
    stopped_by: list[str] = []

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts - 1:
            return True
        why = _deadline_stop(deadline, state.upcoming_sleep, ahead)
        if why is not None:
            stopped_by.append(why)
            return True
        return False

    def note(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.debug("retrying %s after attempt %d: %s", endpoint, state.attempt_number + 1, error)
        if deadline is not None:
            deadline.phase = BACKOFF

    retrying = tenacity.AsyncRetrying(
        stop=stop,
        wait=lambda state: policy.wait_for(
            state.attempt_number + 1, state.outcome.exception() if state.outcome else None
        ),
        retry=tenacity.retry_if_exception(lambda exc: retryable(exc, retry)),
        before_sleep=note,
        sleep=sleep,
        reraise=True,
    )
    try:
        return await retrying(again)
    except PhotaError as error:
        _finish(error, retry, trail, stopped_by[0] if stopped_by else None)


def _finish(
    error: PhotaError, retry: RetryClass, trail: Trail, stopped: str | None = None
) -> NoReturn:
    """Raise the final error of a call, carrying every attempt's request id and their count."""
    final = trail.stamp(outcome_unknown(error, retry, trail))
    if stopped is not None:
        final.stopped_by = stopped
    raise final from final.__cause__
