"""The one retry wrapper, and the only module that imports tenacity.

The rules ("retries never bill twice"):

| outcome of an attempt                    | safe (GET, DELETE) | keyed POST | paid POST                 |
|------------------------------------------|--------------------|------------|---------------------------|
| ConnectError (not sent)                  | retry              | retry      | retry                     |
| 429, 503                                 | retry              | retry      | retry (refused unprocessed)|
| 500, 502                                 | retry              | retry      | raise (502: outcome unknown) |
| 504                                      | raise              | retry      | raise (refunded)          |
| connection lost, read timeout, cut body  | retry              | retry      | raise OutcomeUnknownError |
| unreadable 2xx body                      | retry              | retry      | raise OutcomeUnknownError |
| every other status                       | raise              | raise      | raise                     |

``Retry-After`` (429/503) is honoured up to ``RetryPolicy.max_retry_after``; otherwise the wait
is capped, jittered exponential backoff. Every attempt's request id is kept on the final error.
``set_testing(True)`` keeps the attempts but removes the waits, for fast test suites.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import attrs
import tenacity

from ._protocol import RetryClass
from .errors import (
    APIError,
    ConnectError,
    ConnectionLostError,
    OutcomeUnknownError,
    PhotaError,
    ReadTimeoutError,
    ResponseValidationError,
)

T = TypeVar("T")
log = logging.getLogger("phota_async")

ALWAYS_RETRIED_STATUSES = frozenset({429, 503})
IDEMPOTENT_RETRIED_STATUSES = frozenset({500, 502})
MAYBE_PROCESSED = (ConnectionLostError, ReadTimeoutError, ResponseValidationError)

_testing = False


def set_testing(enabled: bool) -> None:
    """Turn backoff waits off (``True``) or back on. Attempts and their limits are unchanged."""
    global _testing
    _testing = enabled


@attrs.frozen
class RetryPolicy:
    """How hard to retry.

    Args:
        max_attempts: attempts per call, the first included.
        initial_backoff: the first wait, in seconds, before jitter.
        max_backoff: the cap of the exponential wait.
        max_retry_after: the longest ``Retry-After`` honoured; a longer hint waits this long.
    """

    max_attempts: int = 4
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def wait_for(self, attempt: int, error: BaseException | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if _testing:
            return 0.0
        hint = error.retry_after if isinstance(error, APIError) else None
        if hint is not None:
            return min(hint, self.max_retry_after)
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


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
    if isinstance(error, MAYBE_PROCESSED):
        return retry != "paid"
    return False


def _outcome_unknown(error: PhotaError) -> PhotaError:
    """For a paid POST, turn 'the answer was lost' into the error that says so."""
    if isinstance(error, MAYBE_PROCESSED) or (isinstance(error, APIError) and error.status == 502):
        unknown = OutcomeUnknownError(
            f"{error}. The call may have been processed and charged, so it was not retried; "
            "run it as a job (phota.jobs.submit_*) to retry safely."
        )
        unknown.__cause__ = error
        return unknown
    return error


async def call(
    attempt: Callable[[], Awaitable[T]],
    *,
    retry: RetryClass,
    endpoint: str,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    first_failure: PhotaError | None = None,
) -> T:
    """Run ``attempt`` until it succeeds or the rules above say stop.

    ``first_failure`` is the error of a first attempt the caller already made itself (the
    client does, so that a call that succeeds at once never builds any retry machinery).

    Raises:
        PhotaError: the last attempt's error, with ``request_ids`` of every attempt;
            ``OutcomeUnknownError`` when a paid POST's outcome cannot be known.
    """
    request_ids: list[str] = []
    attempts = 1
    if first_failure is None:
        try:
            return await attempt()
        except PhotaError as error:
            first_failure = error
    if not retryable(first_failure, retry) or policy.max_attempts <= 1:
        _finish(first_failure, retry, request_ids, attempts)
    request_ids.extend(first_failure.request_ids)
    log.debug("retrying %s after attempt 1: %s", endpoint, first_failure)
    await sleep(policy.wait_for(1, first_failure))

    def note(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, PhotaError) and error.request_ids:
            request_ids.extend(error.request_ids)
        log.debug("retrying %s after attempt %d: %s", endpoint, state.attempt_number + 1, error)

    async def again() -> T:
        nonlocal attempts
        attempts += 1
        return await attempt()

    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(policy.max_attempts - 1),
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
        _finish(error, retry, request_ids, attempts)


def _finish(
    error: PhotaError, retry: RetryClass, request_ids: list[str], attempts: int
) -> NoReturn:
    """Raise the final error of a call, carrying every attempt's request id and their count."""
    request_ids.extend(error.request_ids)
    final = _outcome_unknown(error) if retry == "paid" else error
    final.request_ids = tuple(dict.fromkeys(request_ids))
    final.attempts = attempts
    raise final from final.__cause__
