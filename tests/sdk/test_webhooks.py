"""Webhooks: signature checks and parsing, without sockets (the endpoints of every framework
are specified in tests/asgi/test_webhook_endpoints.py)."""

from __future__ import annotations

import asyncio
import json
import math

import pytest

from phota_async import Job
from phota_async.errors import InvalidRequestError, PhotaError, ResponseValidationError
from phota_async.webhooks import (
    WebhookReceiver,
    WebhookVerificationError,
    parse_event,
    sign,
    verify_signature,
)

SECRET = "whsec_test"
BODY = json.dumps(
    {"job_id": "job_1", "status": "SUCCEEDED", "result": None, "error": None}
).encode()
NOW = 1_800_000_000


def test_valid_signature_is_accepted() -> None:
    """A correctly signed body verifies and returns its timestamp."""
    assert verify_signature(BODY, sign(BODY, SECRET, NOW), SECRET, now=NOW) == NOW


def test_verification_error_is_a_phota_error_and_value_error() -> None:
    """WebhookVerificationError fits both hierarchies."""
    assert issubclass(WebhookVerificationError, PhotaError)
    assert issubclass(WebhookVerificationError, ValueError)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing"),
        ("", "missing"),
        ("garbage", "malformed"),
        (f"v1={'0' * 64}", "no timestamp"),
        (f"t={NOW}", "no v1"),
        (f"t=abc,v1={'0' * 64}", "not a number"),
        (f"t={NOW},t={NOW},v1={'0' * 64}", "two timestamps"),
        (f"t={NOW},v1={'0' * 64}", "does not match"),
        (f"t={NOW},v1=é", "does not match"),
    ],
)
def test_malformed_or_wrong_headers_are_refused(header: str | None, message: str) -> None:
    """Missing, malformed, duplicated and wrong signature headers are refused, saying why."""
    with pytest.raises(WebhookVerificationError, match=message):
        verify_signature(BODY, header, SECRET, now=NOW)


def test_tampered_body_is_refused() -> None:
    """A body changed after signing is refused."""
    header = sign(BODY, SECRET, NOW)
    with pytest.raises(WebhookVerificationError, match="does not match"):
        verify_signature(BODY.replace(b"SUCCEEDED", b"FAILED"), header, SECRET, now=NOW)


def test_wrong_secret_is_refused() -> None:
    """A body signed with another secret is refused."""
    with pytest.raises(WebhookVerificationError):
        verify_signature(BODY, sign(BODY, "whsec_other", NOW), SECRET, now=NOW)


def test_old_timestamp_is_refused() -> None:
    """A delivery older than the tolerance (a replay) is refused."""
    header = sign(BODY, SECRET, NOW - 301)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_signature(BODY, header, SECRET, now=NOW)


def test_future_timestamp_is_refused() -> None:
    """A timestamp too far in the future is refused."""
    header = sign(BODY, SECRET, NOW + 301)
    with pytest.raises(WebhookVerificationError, match="future"):
        verify_signature(BODY, header, SECRET, now=NOW)


def test_tolerance_is_configurable() -> None:
    """A wider tolerance accepts an older delivery."""
    header = sign(BODY, SECRET, NOW - 500)
    assert verify_signature(BODY, header, SECRET, tolerance=600, now=NOW) == NOW - 500


def test_rotation_accepts_any_listed_secret() -> None:
    """During a rotation a body signed with either secret verifies."""
    for secret in ("whsec_old", "whsec_new"):
        header = sign(BODY, secret, NOW)
        assert verify_signature(BODY, header, ["whsec_old", "whsec_new"], now=NOW) == NOW


def test_parse_event_gives_a_job() -> None:
    """A verified body parses into a Job."""
    job = parse_event(BODY)
    assert isinstance(job, Job)
    assert (job.id, job.status) == ("job_1", "SUCCEEDED")


def test_parse_event_refuses_non_json() -> None:
    """A body that is not a job is a ResponseValidationError."""
    with pytest.raises(ResponseValidationError):
        parse_event(b"[1, 2")


@pytest.mark.parametrize(
    "stamp", ["²", "1800000000²", "١٨٠٠٠٠٠٠٠٠", "１８００", "+1800000000", " 1"]
)
def test_timestamp_accepts_ascii_digits_only(stamp: str) -> None:
    """Superscript, Arabic-Indic and full-width digits or signs in ``t=`` are refused."""
    with pytest.raises(WebhookVerificationError, match="not a number"):
        verify_signature(BODY, f"t={stamp},v1={'0' * 64}", SECRET, now=NOW)


@pytest.mark.parametrize("tolerance", [math.nan, -1.0])
def test_a_tolerance_that_is_not_a_number_of_seconds_is_refused(tolerance: float) -> None:
    """tolerance=nan (which would accept a delivery of any age) or negative is refused."""
    old = sign(BODY, SECRET, NOW - 10**9)
    with pytest.raises(InvalidRequestError, match="tolerance"):
        verify_signature(BODY, old, SECRET, tolerance, now=NOW)


@pytest.mark.parametrize("secret", ["", [""], ["", ""]])
def test_empty_secret_verifies_nothing(secret: str | list[str]) -> None:
    """An empty secret (an unset variable) matches no signature, not one anybody can forge."""
    with pytest.raises(WebhookVerificationError, match="no webhook secret"):
        verify_signature(BODY, sign(BODY, "", NOW), secret, now=NOW)


async def test_retry_arriving_while_the_first_delivery_fails_is_handled() -> None:
    """A retry that arrives while the same delivery is still being handled waits for it, and
    is handled itself when that first attempt fails (it is not acknowledged unhandled)."""
    release = asyncio.Event()
    handled: list[Job] = []

    async def on_job(job: Job) -> None:
        if not handled and not release.is_set():
            await release.wait()
            raise RuntimeError("the database is down")
        handled.append(job)

    receiver = WebhookReceiver(SECRET, on_job)
    first = asyncio.create_task(receiver.receive(BODY, sign(BODY, SECRET)))
    await asyncio.sleep(0)
    retry = asyncio.create_task(receiver.receive(BODY, sign(BODY, SECRET)))
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(RuntimeError):
        await first
    assert (await retry).status == 204
    assert [job.id for job in handled] == ["job_1"]
