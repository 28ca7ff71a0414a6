"""What the emulated account pays: price tables, the prepaid ledger and idempotency keys.

Emulator decisions (see ``phota-api.md`` for the documented prices):

- Edit and generate prices per output image depend on the base model (``MODEL_PRICES``);
  the resolution multiplies them (``RESOLUTION_FACTORS``).
- Calls are charged before their work starts; a failed job or a 504 is refunded.
- A ``client_request_id`` names its job for ``idempotency_ttl`` seconds (24 hours by default)
  after the submit: a resubmit within that time returns the original job and pays nothing.
"""

from __future__ import annotations

from typing import Any

from ._failure import APIFailure

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
    """The prepaid balance and every charge and refund made against it, in order."""

    def __init__(self, balance: float) -> None:
        self.balance = balance
        self.entries: list[dict[str, Any]] = []

    def require(self, amount: float) -> None:
        """Refuse a call the balance cannot pay for, with 402."""
        if amount > self.balance + 1e-9:
            raise APIFailure(
                402, "INSUFFICIENT_CREDIT", f"prepaid credit exhausted: ${self.balance:.2f} left"
            )

    def charge(self, amount: float, **what: Any) -> None:
        """Take ``amount`` from the balance and record why."""
        self.balance = round(self.balance - amount, 6)
        self.entries.append({"kind": "charge", "amount": round(amount, 6), **what})

    def refund(self, amount: float, **what: Any) -> None:
        """Give ``amount`` back and record why."""
        self.balance = round(self.balance + amount, 6)
        self.entries.append({"kind": "refund", "amount": round(amount, 6), **what})

    def net_spent(self) -> float:
        """Charges minus refunds, in dollars."""
        total = 0.0
        for entry in self.entries:
            total += entry["amount"] if entry["kind"] == "charge" else -entry["amount"]
        return round(total, 6)


class IdempotencyKeys:
    """``client_request_id`` -> job id, each kept for ``ttl`` seconds after its first submit.

    Times are readings of the emulator's clock, passed in, so that retention follows it.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._keys: dict[str, tuple[str, float]] = {}  # key -> (job id, clock reading at submit)

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, key: str, now: float) -> str | None:
        """The job a key still names at ``now``, or ``None`` once it has expired."""
        self._prune(now)
        entry = self._keys.get(key)
        return entry[0] if entry is not None else None

    def remember(self, key: str, job_id: str, now: float) -> None:
        """Record that ``key`` names ``job_id`` from ``now`` on."""
        self._keys[key] = (job_id, now)

    def _prune(self, now: float) -> None:
        # Insertion order is submit order, so the expired keys are a prefix.
        while self._keys:
            key, (_, at) = next(iter(self._keys.items()))
            if now - at < self.ttl:
                return
            del self._keys[key]
