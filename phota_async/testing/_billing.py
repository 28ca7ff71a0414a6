"""What the emulated account pays: price tables, the prepaid ledger and idempotency keys.

Emulator decisions (see ``phota-api.md`` for the documented prices):

- Edit and generate prices per output image depend on the base model (``MODEL_PRICES``);
  the resolution multiplies them (``RESOLUTION_FACTORS``).
- Calls are charged before their work starts; a failed job or a 504 is refunded.
- A ``client_request_id`` names its job for ``idempotency_ttl`` seconds (24 hours by default)
  after the submit: a resubmit within that time returns the original job and pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._failure import APIFailure

# Told of every ledger entry (``None`` when only the balance was set) and the balance after it.
LedgerSink = Callable[[dict[str, Any] | None, float], None]
# Told of every key remembered or settled: (key, job id, clock reading at submit, status).
KeySink = Callable[[str, str, float, str | None], None]

TRAINING_PRICES = {"standard": 2.90, "fast": 1.49}
PER_IMAGE_PRICES = {"enhance": (0.12, 0.15), "remix": (0.12, 0.15)}  # (plain, subject seen)
MODEL_PRICES = {
    "nb2": 0.08,
    "gpt-image-2": 0.19,
    "qwen-image-2": 0.05,
    "flux-2": 0.06,
    "reve": 0.04,
}
RESOLUTION_FACTORS = {"1K": 1.0, "2K": 1.5, "4K": 2.0}


def price(endpoint: str, body: dict[str, Any], subject_named: bool) -> float:
    """The dollar cost of one studio call, from its validated body."""
    n = body.get("num_output_images") or 1
    if endpoint in PER_IMAGE_PRICES:
        plain, with_subject = PER_IMAGE_PRICES[endpoint]
        return n * (with_subject if subject_named else plain)
    model = body.get("base_model") or "nb2"
    factor = RESOLUTION_FACTORS[body.get("resolution") or "1K"]
    return round(n * MODEL_PRICES[model] * factor, 6)


class Ledger:
    """The prepaid balance and every charge and refund made against it, in order.

    The ledger is kept complete for the emulator's lifetime (an entry is a small dict, about
    0.5 KB: 10,000 calls cost some 5 MB); ``sink``, when given, is told of every change (the
    state folder's write-through).
    """

    def __init__(self, balance: float, sink: LedgerSink | None = None) -> None:
        self._balance = balance
        self.entries: list[dict[str, Any]] = []
        self.sink = sink

    @property
    def balance(self) -> float:
        """Prepaid credit left, in dollars."""
        return self._balance

    @balance.setter
    def balance(self, value: float) -> None:
        self._balance = value
        if self.sink is not None:
            self.sink(None, value)

    def _record(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        if self.sink is not None:
            self.sink(entry, self._balance)

    def require(self, amount: float) -> None:
        """Refuse a call the balance cannot pay for, with 402."""
        if amount > self.balance + 1e-9:
            raise APIFailure(
                402, "INSUFFICIENT_CREDIT", f"prepaid credit exhausted: ${self.balance:.2f} left"
            )

    def charge(self, amount: float, **what: Any) -> None:
        """Take ``amount`` from the balance and record why."""
        self._balance = round(self._balance - amount, 6)
        self._record({"kind": "charge", "amount": round(amount, 6), **what})

    def refund(self, amount: float, **what: Any) -> None:
        """Give ``amount`` back and record why."""
        self._balance = round(self._balance + amount, 6)
        self._record({"kind": "refund", "amount": round(amount, 6), **what})

    def net_spent(self) -> float:
        """Charges minus refunds, in dollars."""
        total = 0.0
        for entry in self.entries:
            total += entry["amount"] if entry["kind"] == "charge" else -entry["amount"]
        return round(total, 6)


class IdempotencyKeys:
    """``client_request_id`` -> job id, each kept for ``ttl`` seconds after its first submit.

    Times are readings of the emulator's clock, passed in, so that retention follows it. A key
    outlives its job's record when that is evicted first; ``settle`` then keeps the job's final
    status with the key, so that a resubmit still answers the original job without a charge.
    """

    def __init__(self, ttl: float, sink: KeySink | None = None) -> None:
        self.ttl = ttl
        self.sink = sink
        # key -> (job id, clock reading at submit, final status once the job record is gone)
        self._keys: dict[str, tuple[str, float, str | None]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: str, now: float) -> str | None:
        """The job a key still names at ``now``, or ``None`` once it has expired."""
        self.prune(now)
        entry = self._keys.get(key)
        return entry[0] if entry is not None else None

    def settled(self, key: str) -> str | None:
        """The final status kept with a key whose job record has been evicted."""
        entry = self._keys.get(key)
        return entry[2] if entry is not None else None

    def remember(self, key: str, job_id: str, now: float, status: str | None = None) -> None:
        """Record that ``key`` names ``job_id`` from ``now`` on."""
        self._keys[key] = (job_id, now, status)
        if self.sink is not None:
            self.sink(key, job_id, now, status)

    def settle(self, key: str, status: str) -> tuple[str, float] | None:
        """Keep ``status`` with ``key`` (its job is being evicted); return (job id, reading)."""
        entry = self._keys.get(key)
        if entry is None:
            return None
        self._keys[key] = (entry[0], entry[1], status)
        if self.sink is not None:
            self.sink(key, entry[0], entry[1], status)
        return entry[0], entry[1]

    def prune(self, now: float) -> float | None:
        """Drop the keys expired at ``now``; return the submit reading they were older than
        if any was dropped."""
        # Insertion order is submit order, so the expired keys are a prefix.
        dropped = False
        while self._keys:
            key, (_, at, _) = next(iter(self._keys.items()))
            if now - at < self.ttl:
                break
            del self._keys[key]
            dropped = True
        return now - self.ttl if dropped else None
