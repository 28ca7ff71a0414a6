"""Receiving Phota's job callbacks: signature checks, parsing, and a framework-free receiver.

This module imports no web framework. ``WebhookReceiver`` is the whole behaviour of an endpoint
(bounded read, verification, de-duplication, nudging waiters, calling ``on_job``) as a function
from a body and a header to a ``WebhookReply``; thin adapters turn that into a framework's
response: ``webhook_handler()`` for ``aiohttp.web`` (importing aiohttp on call) and
``phota_async.starlette.webhook_endpoint()`` for Starlette and FastAPI (the ``[fastapi]`` extra).

A callback is a POST of the job object, signed in ``X-Phota-Signature`` as
``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` with the account's secret
(``await phota.webhook_secret()``). Verify the *raw* body before parsing it, compare in constant
time, and refuse timestamps outside the tolerance so that an old delivery cannot be replayed.

Callbacks are best effort; the job endpoint is the source of truth. The receiver therefore
hands a client's waiters a nudge: the waiting ``Job.wait()`` polls once, at once, and completes
from that GET.

The receiver also drops what a sender (or an attacker holding a captured delivery) may send
twice or out of order, within the timestamp tolerance:

- a replay: a delivery whose verified body was already handled (whatever its timestamp);
- a step back: a delivery whose job status comes before one already handled for that job
  (``RUNNING`` after ``SUCCEEDED``), or a second finished status for a finished job.

Both are answered 204 (so the sender stops retrying) without calling ``on_job``. The memory is
bounded: the last ``remember`` deliveries and jobs (1024 by default), oldest forgotten first.
A delivery whose ``on_job`` raised is forgotten, so that the sender's retry is handled; a retry
that arrives while the first attempt is still running waits for its outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ._converter import structure
from ._deadline import check_seconds
from .errors import InvalidRequestError, PhotaError, ResponseValidationError
from .models import Job, JobStatus

if TYPE_CHECKING:
    from aiohttp import web

    from ._client import PhotaClient

SIGNATURE_HEADER = "X-Phota-Signature"
"""The request header that carries a callback's signature (``t=<unix>,v1=<hex>``)."""
DEFAULT_TOLERANCE = 300
DEFAULT_REMEMBER = 1024
DEFAULT_MAX_BODY = 1024 * 1024  # aiohttp's default request cap; a job object is a few kB
# Neither aiohttp nor uvicorn bounds the time a body takes: a sender trickling bytes would
# hold a handler (and up to max_body bytes) for ever.
DEFAULT_READ_TIMEOUT = 30.0

log = logging.getLogger("phota_async.webhooks")

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
            or too far in the future, no signature matches, or every secret is empty.
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
    # An empty key (an unset environment variable) would accept what anybody signs with it.
    secrets = [key for key in ([secret] if isinstance(secret, str) else secret) if key]
    if not secrets:
        raise WebhookVerificationError("there is no webhook secret to verify with")
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


@attrs.frozen
class WebhookReply:
    """What a receiver answers to one delivery, whatever the web framework.

    Attributes:
        status: the HTTP status: 204 handled or dropped as a replay or step back, 400 signed
            but not a job, 401 bad signature, 413 body over the cap, 503 secret unavailable
            (its source raised, or took over ``read_timeout``).
        detail: a short reason for an error status (sent as ``{"detail": ...}``), else ``None``.
        job: the job handed to ``on_job`` (``None`` when nothing was handed over).
    """

    status: int
    detail: str | None = None
    job: Job | None = None


class WebhookReceiver:
    """The framework-neutral core of a webhook endpoint; the aiohttp handler
    (``webhook_handler``) and the Starlette/FastAPI endpoint
    (``phota_async.starlette.webhook_endpoint``) both call it.

    For each delivery it reads the raw body up to ``max_body`` bytes, verifies it (401 for
    every missing, malformed or wrong signature, without parsing), parses the job, drops
    replays and deliveries that would move the job's status backwards (answering 204 without
    calling anything; see the module docstring), nudges ``client``'s waiters on that job (so
    ``Job.wait()`` confirms with one GET), and awaits ``on_job(job)``. It answers 204 when all
    went well. An exception from ``on_job`` propagates (the framework answers 500) and the
    delivery is forgotten, so that the sender's retry is handled.

    Args:
        secret: the webhook secret, several during a rotation, or an async function returning
            it (``phota.webhook_secret``, cached by the client).
        on_job: called with each verified, new, in-order job.
        client: a ``PhotaClient`` whose waiters should be woken.
        tolerance: accepted clock difference, in seconds.
        remember: how many deliveries and jobs to remember for dropping replays and steps
            back (the memory is bounded by it).
        max_body: the largest body read, in bytes (a job object is a few kilobytes).
        read_timeout: the most seconds a body may take to arrive (408 past it), and the most
            an async ``secret`` source may take (503 past it, as when it raises).

    Raises:
        InvalidRequestError: ``tolerance`` is not a number of seconds >= 0, ``max_body``
            is not a whole number >= 1, or ``read_timeout`` is not a number of seconds > 0.
    """

    def __init__(
        self,
        secret: SecretSource,
        on_job: OnJob | None = None,
        *,
        client: PhotaClient | None = None,
        tolerance: float = DEFAULT_TOLERANCE,
        remember: int = DEFAULT_REMEMBER,
        max_body: int = DEFAULT_MAX_BODY,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
    ) -> None:
        # Refused now, not as a 401 (or a 500) for every delivery.
        self._tolerance = check_seconds(tolerance, "tolerance")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or max_body < 1:
            raise InvalidRequestError("max_body", "must be a whole number of bytes >= 1")
        self._secret = secret
        self._on_job = on_job
        self._client = client
        self._max_body = max_body
        self._read_timeout = check_seconds(read_timeout, "read_timeout", allow_zero=False)
        self._deliveries = _Deliveries(max(1, remember))
        self._secret_down = False  # the secret source failed last time (logged once)
        self._in_flight: dict[bytes, asyncio.Event] = {}

    async def handle(
        self,
        chunks: AsyncIterable[bytes],
        header: str | None,
        content_length: str | int | None = None,
    ) -> WebhookReply:
        """Read a delivery's body as it streams in, then ``receive`` it.

        Args:
            chunks: the request body, in pieces (``request.stream()``, ``request.content``).
            header: the ``X-Phota-Signature`` value, or ``None`` when absent.
            content_length: the declared ``Content-Length``, if any: a body declared over the
                cap is refused before a byte of it is read.

        Returns:
            The reply to send; 413 when the body passes ``max_body``, 408 when it takes
            longer than ``read_timeout`` to arrive.
        """
        too_large = WebhookReply(413, f"the body is over {self._max_body} bytes")
        try:
            declared = int(content_length) if content_length is not None else None
        except ValueError:
            declared = None  # the server's HTTP parser has the last word on framing
        if declared is not None and declared > self._max_body:
            return too_large
        body = bytearray()
        limit = None if math.isinf(self._read_timeout) else self._read_timeout
        try:
            async with asyncio.timeout(limit):
                async for chunk in chunks:
                    body += chunk
                    if len(body) > self._max_body:
                        return too_large
        except TimeoutError:
            return WebhookReply(408, f"the body took over {self._read_timeout:g} s to arrive")
        return await self.receive(bytes(body), header)

    async def receive(self, body: bytes, header: str | None) -> WebhookReply:
        """Verify, de-duplicate and hand over one delivery whose raw body is in hand.

        Args:
            body: the raw request body, exactly as received.
            header: the ``X-Phota-Signature`` value, or ``None`` when absent.

        Returns:
            The reply to send (see ``WebhookReply``).

        Raises:
            Exception: whatever ``on_job`` raised (the delivery is then forgotten).
        """
        if len(body) > self._max_body:
            return WebhookReply(413, f"the body is over {self._max_body} bytes")
        secrets: str | Sequence[str]
        if callable(self._secret):
            failure = None
            limit = None if math.isinf(self._read_timeout) else self._read_timeout
            try:
                # Bounded: a source that hangs would otherwise hold every delivery for ever.
                async with asyncio.timeout(limit):
                    secrets = await self._secret()
            except TimeoutError:
                failure = f"did not answer within {self._read_timeout:g} s"
            except Exception as exc:  # any failure of the source (OSError...) is a 503
                failure = f"failed ({type(exc).__name__})"
            if failure is not None:
                # The sender retries later; the secret source (the API, a file, a vault) may be
                # back by then. Logged once per outage, by type only: an error's text could
                # hold the secret itself.
                if not self._secret_down:
                    self._secret_down = True
                    log.error("the webhook secret source %s; answering 503", failure)
                return WebhookReply(503, f"the webhook secret is unavailable: its source {failure}")
            if self._secret_down:
                self._secret_down = False
                log.warning("the webhook secret source answers again")
        else:
            secrets = self._secret
        try:
            verify_signature(body, header, secrets, self._tolerance)
        except (WebhookVerificationError, ValueError) as exc:
            return WebhookReply(401, str(exc))
        try:
            job = parse_event(body)
        except ResponseValidationError as exc:
            return WebhookReply(400, str(exc))
        digest = hashlib.sha256(body).digest()
        # A retry of a delivery still being handled waits for its outcome: acknowledged now,
        # it would be lost if that first attempt then failed (and was forgotten).
        while (pending := self._in_flight.get(digest)) is not None:
            await pending.wait()
        admitted, previous = self._deliveries.admit(digest, job)
        if not admitted:
            return WebhookReply(204)
        done = self._in_flight[digest] = asyncio.Event()
        try:
            if self._client is not None:
                self._client.jobs.notify(job.id)
            if self._on_job is not None:
                await self._on_job(job)
        except BaseException:
            self._deliveries.forget(digest, job, previous)
            raise
        finally:
            del self._in_flight[digest]
            done.set()
        return WebhookReply(204, job=job)


def webhook_handler(
    secret: SecretSource,
    on_job: OnJob | None = None,
    *,
    client: PhotaClient | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    remember: int = DEFAULT_REMEMBER,
    max_body: int = DEFAULT_MAX_BODY,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An ``aiohttp.web`` handler for Phota callbacks (a ``WebhookReceiver`` underneath).

    It reads the raw body (up to ``max_body`` bytes, else 413), verifies it (401 for every
    missing, malformed or wrong signature, without parsing), parses the job (400 if it is
    not one), drops replays and deliveries that would move the job's status backwards
    (answering 204 without calling anything; see the module docstring), nudges ``client``'s
    waiters on that job (so ``Job.wait()`` confirms with one GET), and awaits
    ``on_job(job)``. It answers 204 when all went well. For Starlette and FastAPI, see
    ``phota_async.starlette.webhook_endpoint``.

    Args:
        secret: the webhook secret, several during a rotation, or an async function returning
            it (``phota.webhook_secret``, cached by the client).
        on_job: called with each verified, new, in-order job.
        client: a ``PhotaClient`` whose waiters should be woken.
        tolerance: accepted clock difference, in seconds.
        remember: how many deliveries and jobs to remember for dropping replays and steps
            back (the memory is bounded by it).
        max_body: the largest body read, in bytes.
        read_timeout: the most seconds a body may take to arrive (408 past it), and the most
            an async ``secret`` source may take (503 past it, as when it raises).

    Returns:
        The handler, for ``app.router.add_post(path, handler)``.

    Raises:
        InvalidRequestError: ``tolerance``, ``max_body`` or ``read_timeout`` is invalid.
    """
    # aiohttp.web is imported here, not at module level: this module stays framework-free.
    from ._aiohttp_webhook import aiohttp_handler

    receiver = WebhookReceiver(
        secret,
        on_job,
        client=client,
        tolerance=tolerance,
        remember=remember,
        max_body=max_body,
        read_timeout=read_timeout,
    )
    return aiohttp_handler(receiver)


__all__ = [
    "SIGNATURE_HEADER",
    "WebhookReceiver",
    "WebhookReply",
    "WebhookVerificationError",
    "parse_event",
    "sign",
    "verify_signature",
    "webhook_handler",
]
