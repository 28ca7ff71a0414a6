"""The spend guard: a price table, budgets, reservations and the ledger of a client or a run.

Theory of operation. Before a paid request is sent, its estimated price is *reserved* against
every budget that applies (the client's, and the batch run's when one runs): a reservation that
would take ``spent + pending`` past a limit is refused with ``BudgetExceededError`` and nothing
is sent. Reserving checks and adds under one lock, so no number of concurrent calls can pass a
limit between them. A reservation then ends one of three ways:

The reserved price is the call's worst case: an enhance or remix reserves the ``+identity``
price even when it names no subject, because Phota charges that price whenever it recognises a
trained subject in the output; estimates (``Prices.call``) keep the expected price.

- *settled* to the actual charge once the answer comes (the output count and whether a trained
  subject was recognised, ``known_subjects``); a job's reservation settles when a poll sees it
  SUCCEEDED.
- *released* when nothing was charged (a refusal: a 4xx other than 408/409, a 429 or 503 after
  the retries, a call that was never sent), or *refunded* (a 504, a FAILED job).
- *kept* when the outcome is unknown (a lost answer, a 500/502, a call cancelled after it was
  sent): the call may have been charged, so its price stays pending for the life of the
  budget. A kept keyed submit is found again by its ``client_request_id``: a resubmit with the
  same key (the retry of a lost submit, a batch rerun) reuses it and never reserves twice.

Retries happen below the reservation (one logical call, one reservation). Amounts are kept in
whole micro-dollars, so that sums never drift. Without a budget nothing here runs: the send
path pays one ``None`` check.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs

from .errors import (
    APIError,
    BudgetExceededError,
    ConnectError,
    InvalidRequestError,
    OutcomeUnknownError,
    ReadTimeoutError,
)
from .models import ImageResult, Job, JobStatus, ResultBody

UnknownPrice = Literal["refuse", "allow"]

# Phota's published prices (phota-api.md): training per profile, enhance and remix per output
# image (``+identity`` when a trained subject is recognised in the output, named or not).
# Edit and generate depend on the base model and are not published: users add
# ``edit/<model>`` and ``generate/<model>`` prices per output image at 1K, and
# ``edit/<model>/<resolution>`` for 2K and 4K. A model's price never stands for a larger
# resolution: a 4K image may cost more than a 1K one, and a reservation that is too small
# would let a budget be passed.
DEFAULT_PRICES: Mapping[str, float] = {
    "training/standard": 2.90,
    "training/fast": 1.49,
    "enhance": 0.12,
    "enhance+identity": 0.15,
    "remix": 0.12,
    "remix+identity": 0.15,
}

_MICRO = 1_000_000
_TOKEN = re.compile(r"\[\[[A-Za-z0-9_-]{1,64}\]\]")
# 4xx answers that do not prove the call was refused before it was charged.
_MAYBE_CHARGED_4XX = frozenset({408, 409})
_SETTLED_JOBS_KEPT = 10_000

# The budget of the batch run an item belongs to; set in the run's supervisor task, so that
# every call its items make (custom ``map`` calls included) reserves against it too.
RUN_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "phota_run_budget", default=None
)
# Every budget's counters move under this one lock: a reservation across a run's budget and
# its client's is atomic, budgets may be shared by clients on other threads' loops, and the
# critical sections are a few integer additions.
_LOCK = threading.Lock()


def _micros(usd: float) -> int:
    return round(usd * _MICRO)


def _usd(micros: int) -> float:
    return round(micros / _MICRO, 6)


def _check_table(table: Mapping[str, float]) -> dict[str, float]:
    checked: dict[str, float] = {}
    for key, value in table.items():
        if not isinstance(key, str) or not key:
            raise InvalidRequestError("prices", f"price keys are non-empty strings, got {key!r}")
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise InvalidRequestError("prices", f"{key}: a price is dollars >= 0, got {value!r}")
        checked[key] = float(value)
    return checked


def _named(fields: Mapping[str, Any]) -> bool:
    """Whether a call names a trained subject (``profile_ids`` or a ``[[id]]`` token)."""
    prompt = fields.get("prompt")
    return bool(fields.get("profile_ids")) or (
        isinstance(prompt, str) and _TOKEN.search(prompt) is not None
    )


@attrs.frozen
class Prices:
    """The price table a budget reserves by, in dollars; extend it with ``extended``.

    Keys: ``training/standard`` and ``training/fast`` (per profile); ``enhance``, ``remix``
    and their ``+identity`` twins (per output image, ``+identity`` when a trained subject is
    recognised, named or not: a budget reserves it for every enhance and remix);
    ``edit/<model>`` and ``generate/<model>`` per output image at 1K (the default
    resolution), and ``edit/<model>/<resolution>`` for any resolution (the more specific key
    wins). A 2K or 4K call needs its resolution's key: the model's key is not taken for it.
    Phota does not publish edit and generate prices, so none are built in.

    Attributes:
        table: the prices; by default Phota's published ones (``DEFAULT_PRICES``).

    Raises:
        InvalidRequestError: a key that is not a string, or a price that is not dollars >= 0.
    """

    table: Mapping[str, float] = attrs.field(
        factory=lambda: dict(DEFAULT_PRICES), converter=_check_table
    )

    def extended(self, more: Mapping[str, float]) -> Prices:
        """This table with ``more`` added (or overriding).

        Args:
            more: ``{key: dollars}``, keys as in the class docstring.

        Returns:
            A new ``Prices``.

        Raises:
            InvalidRequestError: as for ``Prices``.
        """
        return Prices({**self.table, **more})

    def training(self, tier: str) -> float | None:
        """The price of training one profile on ``tier``, or ``None`` when unknown."""
        return self.table.get(f"training/{tier}")

    def per_image(self, endpoint: str, fields: Mapping[str, Any], identity: bool) -> float | None:
        """The price of one output image of a studio call, or ``None`` when unknown.

        Args:
            endpoint: ``enhance``, ``remix``, ``edit`` or ``generate``.
            fields: the call's fields (``base_model``, ``resolution``).
            identity: a trained subject is named (or was recognised).
        """
        if endpoint in ("enhance", "remix"):
            if identity and f"{endpoint}+identity" in self.table:
                return self.table[f"{endpoint}+identity"]
            return self.table.get(endpoint)
        model = fields.get("base_model") or "nb2"
        resolution = fields.get("resolution") or "1K"
        specific = self.table.get(f"{endpoint}/{model}/{resolution}")
        if specific is not None or resolution != "1K":
            return specific
        return self.table.get(f"{endpoint}/{model}")

    def call(self, endpoint: str, fields: Mapping[str, Any]) -> float | None:
        """The expected price of one studio call from its fields, or ``None`` when unknown.

        This is an estimate (``BatchRun.estimate``, ``--estimate``, telemetry): an enhance or
        remix that names no subject is priced plain. A budget reserves more: see
        ``reserved_price``.
        """
        each = self.per_image(endpoint, fields, _named(fields))
        return None if each is None else each * (fields.get("num_output_images") or 1)


def reserved_price(prices: Prices, endpoint: str, fields: Mapping[str, Any]) -> float | None:
    """The price a budget reserves for one studio call, or ``None`` when unknown: its worst
    case. Phota charges an enhance or remix the ``+identity`` price whenever it *recognises* a
    trained subject in the output, named or not, so those reserve that price and settle to
    the charge; a reservation at the plain price would let concurrent calls pass a budget."""
    identity = _named(fields) or endpoint in ("enhance", "remix")
    each = prices.per_image(endpoint, fields, identity)
    return None if each is None else each * (fields.get("num_output_images") or 1)


@attrs.frozen
class EndpointSpend:
    """One endpoint's share of a ledger, in dollars.

    Attributes:
        spent: settled charges (and kept reservations' prices are *not* here: see pending).
        refunded: charges the API gave back (504s, failed jobs).
        pending: reserved for calls in flight, or of unknown outcome (perhaps charged).
        calls: paid calls reserved.
        unpriced: calls sent without a known price (``unknown_price="allow"``).
    """

    spent: float = 0.0
    refunded: float = 0.0
    pending: float = 0.0
    calls: int = 0
    unpriced: int = 0


@attrs.frozen
class Spend:
    """A snapshot of a budget's ledger (``phota.spend``, ``BatchSummary.spend``).

    Attributes:
        limit: the budget in dollars (``inf``: tracked, not capped).
        spent: settled charges.
        refunded: charges the API gave back.
        pending: reserved and not settled: calls in flight, and calls whose outcome is unknown
            (they may have been charged; their price stays reserved).
        endpoints: the same per endpoint (``enhance``, ``edit``, ``training``, ...).
    """

    limit: float
    spent: float = 0.0
    refunded: float = 0.0
    pending: float = 0.0
    endpoints: Mapping[str, EndpointSpend] = attrs.field(factory=dict)

    @property
    def left(self) -> float:
        """Dollars that may still be reserved."""
        return max(0.0, round(self.limit - self.spent - self.pending, 6))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``limit`` is ``None`` when uncapped)."""
        return {
            "limit": self.limit if math.isfinite(self.limit) else None,
            "spent": self.spent,
            "refunded": self.refunded,
            "pending": self.pending,
            "endpoints": {name: attrs.asdict(e) for name, e in sorted(self.endpoints.items())},
        }

    def line(self) -> str:
        """One human line: ``spent $1.20, pending $0.15, refunded $0.12 of a $5.00 budget``."""
        of = f" of a ${self.limit:.2f} budget" if math.isfinite(self.limit) else ""
        unpriced = sum(e.unpriced for e in self.endpoints.values())
        extra = f" + {unpriced} unpriced calls" if unpriced else ""
        return (
            f"spent ${self.spent:.2f}{extra}, pending ${self.pending:.2f}, "
            f"refunded ${self.refunded:.2f}{of}"
        )


class Budget:
    """A spending limit in dollars, and its ledger; may be shared by several clients.

    Pass it (or a plain number of dollars) as ``PhotaClient(budget=...)`` or to a batch
    (``enhance_many(..., budget=...)``). ``Budget(math.inf)`` tracks spending without a cap.

    Args:
        usd: the limit in dollars (a number >= 0, or ``math.inf``).
        name: what error messages call it (``"client"``, ``"run"``...).

    Raises:
        InvalidRequestError: ``usd`` is not a number >= 0.
    """

    def __init__(self, usd: float, *, name: str = "budget") -> None:
        if isinstance(usd, bool) or not isinstance(usd, (int, float)) or math.isnan(usd) or usd < 0:
            raise InvalidRequestError("budget", f"must be dollars >= 0, got {usd!r}")
        self.usd = float(usd)
        self.name = name
        self._limit = _micros(usd) if math.isfinite(usd) else None
        self._spent = 0
        self._refunded = 0
        self._pending = 0
        self._endpoints: dict[str, list[int]] = {}  # spent, refunded, pending, calls, unpriced
        self._keyed: dict[str, Reservation] = {}

    def __repr__(self) -> str:
        return f"<Budget {self.name} ${self.usd:.2f}: {self.spend.line()}>"

    @property
    def spend(self) -> Spend:
        """A snapshot of the ledger."""
        with _LOCK:
            endpoints = {
                name: EndpointSpend(_usd(s), _usd(r), _usd(p), c, u)
                for name, (s, r, p, c, u) in self._endpoints.items()
            }
            return Spend(
                self.usd, _usd(self._spent), _usd(self._refunded), _usd(self._pending), endpoints
            )

    def extend(self, usd: float) -> None:
        """Raise the limit by ``usd``: a lease of dollars granted from a pool shared with other
        processes (``phota_async.ray``), which this budget then spends as its own.

        Raises:
            InvalidRequestError: ``usd`` is not dollars >= 0, or the budget is uncapped.
        """
        if isinstance(usd, bool) or not isinstance(usd, (int, float)) or not usd >= 0:
            raise InvalidRequestError("budget", f"a lease is dollars >= 0, got {usd!r}")
        with _LOCK:
            if self._limit is None:
                raise InvalidRequestError("budget", "an uncapped budget takes no lease")
            self._limit += _micros(usd)
            self.usd = _usd(self._limit)

    def give_back(self) -> float:
        """Lower the limit to what is spent and pending (kept reservations included: they may
        have been charged), and return the dollars that frees: the unspent part of a lease.

        Returns:
            The dollars given back (0 for an uncapped budget).
        """
        with _LOCK:
            if self._limit is None:
                return 0.0
            unused = max(0, self._limit - self._spent - self._pending)
            self._limit -= unused
            self.usd = _usd(self._limit)
            return _usd(unused)

    def _row(self, endpoint: str) -> list[int]:
        row = self._endpoints.get(endpoint)
        if row is None:
            row = self._endpoints[endpoint] = [0, 0, 0, 0, 0]
        return row


def as_budget(value: float | Budget | None, name: str) -> Budget | None:
    """``budget=`` as given (a number of dollars or a ``Budget``) as a ``Budget``.

    Raises:
        InvalidRequestError: not a number of dollars >= 0 nor a ``Budget``.
    """
    if value is None or isinstance(value, Budget):
        return value
    return Budget(value, name=name)


class Reservation:
    """One paid call's reserved price, across the budgets it counts against."""

    __slots__ = ("amount", "budgets", "each", "endpoint", "key", "open")

    def __init__(
        self,
        budgets: list[Budget],
        endpoint: str,
        amount: int,
        key: str | None,
    ) -> None:
        self.budgets = budgets
        self.endpoint = endpoint
        self.amount = amount
        self.key = key
        self.open = True
        # The price of one output image given whether a subject was recognised (studio
        # calls), so that a settlement prices what was actually made.
        self.each: Callable[[bool], float] | None = None

    def settle(self, usd: float) -> None:
        """The call was charged ``usd``: move it from pending to spent."""
        self._close(_micros(usd), 0)

    def settle_as_reserved(self) -> None:
        """The call was charged its estimated price."""
        self._close(self.amount, 0)

    def release(self, *, refunded: bool = False) -> None:
        """Nothing was charged (or it was refunded): give the reservation back."""
        self._close(0, self.amount if refunded else 0)

    def _close(self, spent: int, refunded: int) -> None:
        with _LOCK:
            if not self.open:
                return  # a shared keyed reservation is closed by whichever call ends first
            self.open = False
            for budget in self.budgets:
                row = budget._row(self.endpoint)
                budget._pending -= self.amount
                row[2] -= self.amount
                budget._spent += spent
                row[0] += spent
                budget._refunded += refunded
                row[1] += refunded
                if self.key is not None and budget._keyed.get(self.key) is self:
                    del budget._keyed[self.key]

    def settle_result(self, result: ImageResult | ResultBody) -> None:
        """Settle to what a studio answer says was made: its outputs, and whether a trained
        subject was recognised in them."""
        if isinstance(result, ImageResult):
            count, identity = len(result), bool(result.known_subjects)
        else:
            count = len(result.download_urls) or len(result.images)
            identity = bool(result.known_subjects.counts)
        each = self.each
        self.settle(count * each(identity) if each is not None else _usd(self.amount))

    def ended_by(self, error: BaseException, *, retry: str, sent: bool) -> None:
        """End the reservation of a call that raised ``error``: released when nothing can
        have been charged, refunded on a 504, kept (pending) when the outcome is unknown."""
        fate = _fate(error, retry, sent)
        if fate == "released":
            self.release()
        elif fate == "refunded":
            self.release(refunded=True)


def _fate(error: BaseException, retry: str, sent: bool) -> str:
    """What a failed paid call cost: ``released``, ``refunded`` or ``kept``."""
    if isinstance(error, (BudgetExceededError, InvalidRequestError, ConnectError)):
        return "released"
    if isinstance(error, OutcomeUnknownError):
        return "kept"
    if isinstance(error, ReadTimeoutError):
        # A sent paid or keyed call that times out is an OutcomeUnknownError; this one was
        # cut off before it was sent (queued, connecting, waiting to retry).
        return "released"
    if isinstance(error, APIError):
        if error.status == 504:
            return "refunded"
        if error.status in (429, 503):
            return "released"
        if 400 <= error.status < 500 and error.status not in _MAYBE_CHARGED_4XX:
            return "released"
        return "kept"
    if isinstance(error, (Exception, asyncio.CancelledError)):
        # A lost or unreadable answer, another failure, or a cancellation (Ctrl-C, a task
        # group, a timeout around the call, the client closed while the call waited its turn):
        # the session says whether any attempt may have been processed, keyed or not; if none,
        # nothing was charged, and a price kept would shrink the budget for the rest of its life.
        return "kept" if sent else "released"
    # Anything else (KeyboardInterrupt in the loop...): a paid call not yet sent cost
    # nothing; a keyed one may have been sent by an earlier attempt.
    return "released" if retry == "paid" and not sent else "kept"


class Guard:
    """The spend guard of one client: its budget, its prices, and the reservations of the jobs
    it submitted, settled when one of its polls sees them finish.

    Args:
        budget: the client's budget, or ``None``.
        prices: the price table.
        unknown_price: ``"refuse"`` (a call whose price is unknown is refused under a budget)
            or ``"allow"`` (sent, reserving nothing, counted as ``unpriced``).
    """

    def __init__(self, budget: Budget | None, prices: Prices, unknown_price: UnknownPrice) -> None:
        if unknown_price not in ("refuse", "allow"):
            raise InvalidRequestError(
                "unknown_price", f"must be 'refuse' or 'allow', got {unknown_price!r}"
            )
        self.budget = budget
        self.prices = prices
        self.unknown_price = unknown_price
        self._jobs: dict[str, Reservation] = {}
        self._settled: collections.OrderedDict[str, None] = collections.OrderedDict()

    def budgets(self) -> list[Budget]:
        """The budgets a call made now counts against: the run's, then the client's."""
        run = RUN_BUDGET.get()
        if run is None:
            return [self.budget] if self.budget is not None else []
        if self.budget is None or self.budget is run:
            return [run]
        return [run, self.budget]

    def reserve_call(
        self, endpoint: str, fields: Mapping[str, Any], key: str | None = None
    ) -> Reservation | None:
        """Reserve a studio call's worst-case price (``reserved_price``: an enhance or remix
        at the recognised-subject price), settled later to the charge; ``None`` when no budget
        applies.

        Raises:
            BudgetExceededError: the price would take a budget past its limit (nothing sent).
            InvalidRequestError: the price is unknown and ``unknown_price`` is ``"refuse"``.
        """
        budgets = self.budgets()
        if not budgets:
            return None
        endpoint = endpoint.strip("/")
        price = reserved_price(self.prices, endpoint, fields)
        if price is None:
            self._unknown(endpoint, fields)
            return reserve(budgets, endpoint, 0.0, key, unpriced=True)
        reservation = reserve(budgets, endpoint, price, key)
        if reservation.each is None:
            reservation.each = _per_image(self.prices, endpoint, fields)
        return reservation

    def reserve_training(self, tier: str) -> Reservation | None:
        """Reserve a profile training's price; ``None`` when no budget applies.

        Raises:
            BudgetExceededError, InvalidRequestError: as for ``reserve_call``.
        """
        budgets = self.budgets()
        if not budgets:
            return None
        price = self.prices.training(tier)
        if price is None:
            self._unknown("training", {"training_tier": tier})
            return reserve(budgets, "training", 0.0, None, unpriced=True)
        return reserve(budgets, "training", price, None)

    def _unknown(self, endpoint: str, fields: Mapping[str, Any]) -> None:
        if self.unknown_price == "allow":
            return
        if endpoint == "training":
            key = f"training/{fields.get('training_tier')}"
        else:
            key = f"{endpoint}/{fields.get('base_model') or 'nb2'}"
            resolution = fields.get("resolution") or "1K"
            if resolution != "1K":
                key = f"{key}/{resolution}"
        raise InvalidRequestError(
            "prices",
            f"the price of {endpoint} is not known ({key!r}: Phota does not publish edit and "
            f"generate prices per model), and a budget needs it: pass "
            f"PhotaClient(prices={{{key!r}: dollars per image}}), or unknown_price='allow' "
            "to send calls without a known price (they are then not capped)",
        )

    def hold_for_job(self, job: Job, reservation: Reservation) -> None:
        """Keep a submitted job's reservation until one of this client's polls sees it end."""
        if job.id in self._settled:
            reservation.release()  # a resubmit by key of a job already paid and settled
        else:
            self._jobs[job.id] = reservation

    def job_seen(self, job: Job) -> None:
        """Settle or refund the reservation of a finished job (when this client holds it)."""
        if not self._jobs or not job.is_finished:
            return
        reservation = self._jobs.pop(job.id, None)
        if reservation is None:
            return
        self._settled[job.id] = None
        if len(self._settled) > _SETTLED_JOBS_KEPT:
            self._settled.popitem(last=False)
        if job.status == JobStatus.SUCCEEDED and job.result is not None:
            reservation.settle_result(job.result)
        elif job.status == JobStatus.FAILED:
            reservation.release(refunded=True)  # a failed job is refunded


def _per_image(prices: Prices, endpoint: str, fields: Mapping[str, Any]) -> Callable[[bool], float]:
    def each(identity: bool) -> float:
        price = prices.per_image(endpoint, fields, identity)
        return price if price is not None else 0.0

    return each


def reserve(
    budgets: Iterable[Budget],
    endpoint: str,
    usd: float,
    key: str | None,
    *,
    unpriced: bool = False,
) -> Reservation:
    """Reserve ``usd`` against every budget, atomically, or refuse; a keyed call whose key
    already holds a reservation in a budget reuses it there.

    Raises:
        BudgetExceededError: a budget's ``spent + pending + usd`` would pass its limit.
    """
    amount = _micros(usd)
    budgets = list(budgets)
    with _LOCK:
        found = next((b._keyed[key] for b in budgets if key is not None and key in b._keyed), None)
        reservation = found or Reservation([], endpoint, amount, key)
        adding = [b for b in budgets if b not in reservation.budgets]
        for budget in adding:
            limit = budget._limit
            if limit is not None and budget._spent + budget._pending + reservation.amount > limit:
                raise BudgetExceededError(
                    endpoint,
                    estimate=_usd(reservation.amount),
                    spent=_usd(budget._spent),
                    reserved=_usd(budget._pending),
                    limit=budget.usd,
                    scope=budget.name,
                )
        for budget in adding:
            row = budget._row(endpoint)
            budget._pending += reservation.amount
            row[2] += reservation.amount
            row[3] += 1
            row[4] += unpriced
            if key is not None:
                budget._keyed[key] = reservation
        reservation.budgets.extend(adding)
        return reservation


@attrs.frozen
class Estimate:
    """What a batch run would cost, before paying (``BatchRun.estimate()``).

    Attributes:
        items: inputs in the run.
        done: already done per the manifest (not paid again).
        to_run: items the run would call for (pending ones included: a rerun resumes them by
            key and the server does not charge them twice, so this is an upper bound).
        per_item: the estimated price of one item, or ``None`` when unknown.
        total: ``to_run * per_item``, or ``None`` when the price is unknown.
    """

    items: int
    done: int
    to_run: int
    per_item: float | None
    total: float | None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return attrs.asdict(self)

    def line(self) -> str:
        """One human line."""
        done = f", {self.done} already done" if self.done else ""
        if self.per_item is None or self.total is None:
            cost = "price unknown (edit/generate prices per model are not published)"
        else:
            cost = f"${self.per_item:.2f} each, estimated ${self.total:.2f}"
        return f"{self.items} items{done}; {self.to_run} to run at {cost}; nothing was sent"
