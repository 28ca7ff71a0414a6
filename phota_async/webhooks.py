"""Receiving Phota's job callbacks: signature checks, parsing, and a ready aiohttp handler.

A callback is a POST of the job object, signed in ``X-Phota-Signature`` as
``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` with the account's secret
(``await phota.webhook_secret()``). Verify the *raw* body before parsing it, compare in constant
time, and refuse timestamps outside the tolerance so that an old delivery cannot be replayed.

Callbacks are best effort; the job endpoint is the source of truth. The handler from
``webhook_handler()`` therefore hands a client's waiters a nudge: the waiting ``Job.wait()``
polls once, at once, and completes from that GET.

The ready-made handler also drops what a sender (or an attacker holding a captured delivery)
may send twice or out of order, within the timestamp tolerance:

- a replay: a delivery whose verified body was already handled (whatever its timestamp);
- a step back: a delivery whose job status comes before one already handled for that job
  (``RUNNING`` after ``SUCCEEDED``), or a second finished status for a finished job.

Both are answered 204 (so the sender stops retrying) without calling ``on_job``. The memory is
bounded: the last ``remember`` deliveries and jobs (1024 by default), oldest forgotten first.
A delivery whose ``on_job`` raised is forgotten, so that the sender's retry is handled.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ._converter import structure
from ._deadline import check_seconds
from .errors import PhotaError, ResponseValidationError
from .models import Job, JobStatus

if TYPE_CHECKING:
    from ._client import PhotaClient

SIGNATURE_HEADER = "X-Phota-Signature"
DEFAULT_TOLERANCE = 300
DEFAULT_REMEMBER = 1024

# A job's statuses only move forward; a delivery of an earlier one is stale. Statuses the SDK
# does not know (a newer API) have no rank and are never dropped as stale.
_STATUS_RANK = {
    JobStatus.QUEUED: 0,
    JobStatus.RUNNING: 1,
    JobStatus.SUCCEEDED: 2,
    JobStatus.FAILED: 2,
}


class WebhookVerificationError(PhotaError, ValueError):
    """A callback's signature header is missing, malformed, wrong, or outside the tolerance."""


def sign(body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``X-Phota-Signature`` value for ``body``, as Phota computes it (useful in tests)."""
    stamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return f"t={stamp},v1={mac.hexdigest()}"


def _parse_header(header: str) -> tuple[int, list[str]]:
    stamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise WebhookVerificationError("malformed signature header")
        if key == "t":
            if stamp is not None:
                raise WebhookVerificationError("the signature header has two timestamps")
            # ASCII digits only: str.isdigit() also accepts "²" (which int() refuses) and other
            # scripts' digits (which int() accepts), neither of which a sender writes.
            if not (value.isascii() and value.isdigit()) or len(value) > 12:
                raise WebhookVerificationError("the signature timestamp is not a number")
            stamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if stamp is None:
        raise WebhookVerificationError("the signature header has no timestamp")
    if not signatures:
        raise WebhookVerificationError("the signature header has no v1 signature")
    return stamp, signatures


def verify_signature(
    body: bytes,
    header: str | None,
    secret: str | Sequence[str],
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> int:
    """Check a callback's signature; return its timestamp.

    Args:
        body: the raw request body, exactly as received.
        header: the ``X-Phota-Signature`` value.
        secret: the webhook secret, or several during a rotation (any may match).
        tolerance: the most seconds the timestamp may differ from now, either way.
        now: the current Unix time (for tests).

    Raises:
        WebhookVerificationError: the header is missing or malformed, the timestamp is too old
            or too far in the future, or no signature matches.
        InvalidRequestError: ``tolerance`` is not a number of seconds >= 0.
    """
    # nan would make both age comparisons false and accept a delivery of any age.
    tolerance = check_seconds(tolerance, "tolerance")
    if not header:
        raise WebhookVerificationError("the signature header is missing")
    stamp, signatures = _parse_header(header)
    current = time.time() if now is None else now
    if stamp < current - tolerance:
        raise WebhookVerificationError("the signature timestamp is too old")
    if stamp > current + tolerance:
        raise WebhookVerificationError("the signature timestamp is in the future")
    secrets = [secret] if isinstance(secret, str) else list(secret)
    signed = f"{stamp}.".encode() + body
    matched = False
    for key in secrets:
        expected = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
        for candidate in signatures:
            # Check every pair, so the time taken does not depend on which one matches.
            matched |= hmac.compare_digest(expected.encode(), candidate.encode("utf-8", "replace"))
    if not matched:
        raise WebhookVerificationError("the signature does not match")
    return stamp


def parse_event(body: bytes) -> Job:
    """Parse a verified callback body into a ``Job``.

    Raises:
        ResponseValidationError: the body is not a job object.
    """
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ResponseValidationError(f"callback: the body is not JSON ({exc})") from None
    return structure(data, Job, "callback")


OnJob = Callable[[Job], Awaitable[None]]
SecretSource = str | Sequence[str] | Callable[[], Awaitable[str]]


class _Deliveries:
    """A bounded memory of handled deliveries (by body digest) and of each job's furthest
    status, to drop replays and steps back."""

    def __init__(self, remember: int) -> None:
        self._remember = remember
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._ranks: OrderedDict[str, int] = OrderedDict()

    def admit(self, digest: bytes, job: Job) -> tuple[bool, int | None]:
        """Whether to handle this delivery, and the job's rank before it (to undo with)."""
        if digest in self._seen:
            return False, None
        previous = self._ranks.get(job.id)
        rank = _STATUS_RANK.get(job.status)
        if rank is not None and previous is not None:
            finished = previous == max(_STATUS_RANK.values())
            if rank < previous or (rank == previous and finished):
                return False, None
        self._remember_item(self._seen, digest, None)
        if rank is not None and (previous is None or rank > previous):
            self._remember_item(self._ranks, job.id, rank)
        return True, previous

    def forget(self, digest: bytes, job: Job, previous: int | None) -> None:
        """Undo ``admit`` after ``on_job`` failed, so that a retried delivery is handled."""
        self._seen.pop(digest, None)
        if self._ranks.get(job.id) != _STATUS_RANK.get(job.status):
            return  # a later delivery moved the job on meanwhile: keep that
        if previous is None:
            self._ranks.pop(job.id, None)
        else:
            self._ranks[job.id] = previous

    def _remember_item(self, memory: OrderedDict[Any, Any], key: Any, value: Any) -> None:
        memory[key] = value
        memory.move_to_end(key)
        while len(memory) > self._remember:
            memory.popitem(last=False)


def webhook_handler(
    secret: SecretSource,
    on_job: OnJob | None = None,
    *,
    client: PhotaClient | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    remember: int = DEFAULT_REMEMBER,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An ``aiohttp.web`` handler for Phota callbacks.

    It reads the raw body, verifies it (401 for every missing, malformed or wrong signature,
    without parsing), parses the job, drops replays and deliveries that would move the job's
    status backwards (answering 204 without calling anything; see the module docstring),
    nudges ``client``'s waiters on that job (so ``Job.wait()`` confirms with one GET), and
    awaits ``on_job(job)``. It answers 204 when all went well.

    Args:
        secret: the webhook secret, several during a rotation, or an async function returning
            it (``phota.webhook_secret``, cached by the client).
        on_job: called with each verified, new, in-order job.
        client: a ``PhotaClient`` whose waiters should be woken.
        tolerance: accepted clock difference, in seconds.
        remember: how many deliveries and jobs to remember for dropping replays and steps
            back (the memory is bounded by it).

    Returns:
        The handler, for ``app.router.add_post(path, handler)``.
    """
    check_seconds(tolerance, "tolerance")  # refused now, not as a 401 for every delivery
    deliveries = _Deliveries(max(1, remember))

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        secrets = await secret() if callable(secret) else secret
        try:
            verify_signature(body, request.headers.get(SIGNATURE_HEADER), secrets, tolerance)
        except (WebhookVerificationError, ValueError) as exc:
            return web.json_response({"detail": str(exc)}, status=401)
        try:
            job = parse_event(body)
        except ResponseValidationError as exc:
            return web.json_response({"detail": str(exc)}, status=400)
        digest = hashlib.sha256(body).digest()
        admitted, previous = deliveries.admit(digest, job)
        if not admitted:
            return web.Response(status=204)
        try:
            if client is not None:
                client.jobs.notify(job.id)
            if on_job is not None:
                await on_job(job)
        except BaseException:
            deliveries.forget(digest, job, previous)
            raise
        return web.Response(status=204)

    return handle


__all__ = [
    "SIGNATURE_HEADER",
    "WebhookVerificationError",
    "parse_event",
    "sign",
    "verify_signature",
    "webhook_handler",
]
