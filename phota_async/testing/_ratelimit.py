"""The emulator's rate limit: token buckets per account (optionally per endpoint).

Emulator decisions (the API documents no rate limit; ``phota-api.md`` lets the emulator have
one):

- A bucket holds ``burst`` tokens and refills at ``rate`` tokens a second on the emulator's
  clock. Every authenticated API request takes one token; a request that finds none is
  refused before anything else happens: nothing is processed, nothing is charged, and the
  refusal is logged like every request (status 429, or 503 with ``status=503``).
- One bucket for the account by default; with ``per_endpoint`` one per first path segment
  (``/enhance``, ``/jobs``, ``/profiles``...), so polls do not spend the studio calls' tokens.
- A refusal carries ``Retry-After``: the whole seconds until the next token (at least 1), the
  form HTTP allows, unless ``retry_after=False`` (a server that gives no hint).
- ``status=503`` turns refusals into ``SERVICE_UNAVAILABLE`` answers: bursts of 503s whenever
  the bucket runs dry, as an overloaded service behind a load balancer answers.
- The limit can be changed while the emulator runs; a bucket keeps its tokens (capped by the
  new ``burst``), so halving the rate midway takes effect at once. A limit put back after a
  time without one starts from full buckets.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._clock import Clock


@dataclass(frozen=True)
class RateLimit:
    """A rate limit for the emulator: ``rate`` requests a second, ``burst`` at once.

    Args:
        rate: tokens added per second (> 0).
        burst: the bucket's size; ``rate`` (one second's worth, at least 1) by default.
        retry_after: send ``Retry-After`` with each refusal.
        status: 429 (too many requests) or 503 (service unavailable).
        per_endpoint: one bucket per endpoint instead of one for the account.

    Raises:
        ValueError: a rate or burst that is not a positive finite number, or another status.
    """

    rate: float
    burst: float | None = None
    retry_after: bool = True
    status: int = 429
    per_endpoint: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.rate, (int, float)) and 0 < self.rate < math.inf):
            raise ValueError(f"rate must be a positive number of requests/s, not {self.rate!r}")
        if self.burst is not None and not (
            isinstance(self.burst, (int, float)) and 1 <= self.burst < math.inf
        ):
            raise ValueError(f"burst must be a number >= 1, not {self.burst!r}")
        if self.status not in (429, 503):
            raise ValueError(f"status must be 429 or 503, not {self.status!r}")

    @property
    def size(self) -> float:
        """The bucket's size."""
        return self.burst if self.burst is not None else max(1.0, float(self.rate))

    @classmethod
    def of(cls, value: RateLimit | float | Mapping[str, Any] | None) -> RateLimit | None:
        """A ``RateLimit`` from itself, a rate, a mapping of its fields, or ``None`` (no limit).

        Raises:
            ValueError: the value does not describe a rate limit.
        """
        if value is None or isinstance(value, RateLimit):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"rate_limit must be a RateLimit, a number or None, not {value!r}")
        return cls(float(value))


class Buckets:
    """The account's token buckets under the current ``RateLimit`` (thread-safe: a test may
    change the limit from its own thread while a threaded emulator serves)."""

    def __init__(self, clock: Clock, limit: RateLimit | None = None) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._limit = limit
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, clock reading)
        self.refused = 0

    @property
    def limit(self) -> RateLimit | None:
        """The limit in force (``None``: none)."""
        return self._limit

    @limit.setter
    def limit(self, value: RateLimit | None) -> None:
        with self._lock:
            now = self._clock.now()
            if self._limit is None:
                # No bucket was refilled (or taken from) while there was no limit: a limit put
                # back starts full, as it would be had it never been lifted.
                self._buckets = {}
            elif value is not None:
                # Each bucket keeps what it had earned under the old limit, capped by the new one.
                self._buckets = {
                    key: (min(value.size, self._refill(tokens, at, now)), now)
                    for key, (tokens, at) in self._buckets.items()
                }
            self._limit = value

    def _refill(self, tokens: float, at: float, now: float) -> float:
        limit = self._limit
        if limit is None:
            return tokens
        return min(limit.size, tokens + max(0.0, now - at) * limit.rate)

    def take(self, path: str) -> tuple[RateLimit, float] | None:
        """Take a token for a request to ``path`` (relative to the API base).

        Returns:
            ``None`` when admitted (or when there is no limit); otherwise the limit that refused
            it and the seconds until the bucket has a token again.
        """
        limit = self._limit
        if limit is None:
            return None
        key = "/" + path.strip("/").split("/", 1)[0] if limit.per_endpoint else ""
        with self._lock:
            now = self._clock.now()
            tokens, at = self._buckets.get(key, (limit.size, now))
            tokens = self._refill(tokens, at, now)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return None
            self._buckets[key] = (tokens, now)
            self.refused += 1
            return limit, (1 - tokens) / limit.rate
