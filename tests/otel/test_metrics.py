"""Metrics: calls, attempts, throttled answers, estimated cost and wait durations."""

from __future__ import annotations

from typing import Any

import pytest

from phota_async import PhotaClient
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes
from tests.otel.conftest import Recorded


def points(metric: Any) -> list[tuple[dict[str, Any], Any]]:
    """``(attributes, point)`` of each data point of a metric."""
    return [(dict(point.attributes or {}), point) for point in metric.data.data_points]


async def test_calls_attempts_and_throttled_answers_are_counted(
    emu: PhotaEmulator, phota: PhotaClient, recorded: Recorded, no_backoff: None
) -> None:
    """One enhance answered 429 then 200: one call, two attempts, one throttled answer."""
    emu.add_fault("/enhance", status=429, retry_after=0)
    await phota.enhance(jpeg_bytes())

    metrics = recorded.metrics()
    calls = metrics["phota.client.calls"]
    assert calls.unit == "{call}"
    assert [(a, p.value) for a, p in points(calls)] == [({"phota.operation": "enhance"}, 1)]
    attempts = metrics["phota.client.attempts"]
    assert attempts.unit == "{attempt}"
    by_status = {a["http.response.status_code"]: (a, p.value) for a, p in points(attempts)}
    assert by_status[429][0]["error.type"] == "429"
    assert by_status[429][1] == 1
    assert by_status[200][1] == 1
    assert "error.type" not in by_status[200][0]
    throttled = metrics["phota.client.throttled"]
    assert [(a, p.value) for a, p in points(throttled)] == [({"http.response.status_code": 429}, 1)]


async def test_estimated_cost_is_counted_in_dollars(phota: PhotaClient, recorded: Recorded) -> None:
    """Two enhances of one output each add the published $0.12 each to ``phota.client.cost``."""
    await phota.enhance(jpeg_bytes(1))
    await phota.enhance(jpeg_bytes(2))

    cost = recorded.metrics()["phota.client.cost"]
    assert cost.unit == "USD"
    ((attributes, point),) = points(cost)
    assert attributes == {"phota.operation": "enhance"}
    assert point.value == pytest.approx(0.24)


async def test_a_failed_call_is_counted_with_its_error_type(
    phota: PhotaClient, recorded: Recorded
) -> None:
    """A 404 counts one ``phota.profiles.get`` call with ``error.type`` 404, and no cost."""
    with pytest.raises(Exception, match="404"):
        await phota.profiles.get("nobody")

    metrics = recorded.metrics()
    assert [(a, p.value) for a, p in points(metrics["phota.client.calls"])] == [
        ({"phota.operation": "profiles.get", "error.type": "404"}, 1)
    ]
    assert "phota.client.cost" not in metrics


async def test_wait_durations_are_a_histogram_in_seconds(
    emu: PhotaEmulator, phota: PhotaClient, recorded: Recorded
) -> None:
    """A profile wait records one duration, in seconds, labelled with its kind and final
    status."""
    profile_id = emu.add_profile(training_seconds=0.2)
    await phota.profiles.wait_ready(profile_id, timeout=30)

    waits = recorded.metrics()["phota.client.wait.duration"]
    assert waits.unit == "s"
    ((attributes, point),) = points(waits)
    assert attributes == {"phota.wait.kind": "profile", "phota.status": "READY"}
    assert point.count == 1
    assert 0 < point.sum < 30


async def test_a_keyed_resubmit_answered_by_the_same_job_adds_no_cost(
    phota: PhotaClient, recorded: Recorded
) -> None:
    """Submitting a job again with the same ``client_request_id`` returns the same job, which
    is charged once, so the cost counter grows once."""
    first = await phota.jobs.submit_enhance(jpeg_bytes(), client_request_id="resubmitted")
    again = await phota.jobs.submit_enhance(jpeg_bytes(), client_request_id="resubmitted")
    assert again.id == first.id

    cost = recorded.metrics()["phota.client.cost"]
    assert sum(point.value for point in cost.data.data_points) == pytest.approx(0.12)
