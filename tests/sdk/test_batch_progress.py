"""The batch progress callback: a frozen ``BatchProgress`` with counts, throttling and spend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest

import phota_async
from phota_async import BatchItem, BatchProgress, PhotaClient, ThrottleStats
from phota_async.errors import InvalidRequestError
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes

ENHANCE = 0.12  # published price of one enhanced image without a trained subject


@pytest.fixture
async def phota(emu: PhotaEmulator) -> AsyncIterator[PhotaClient]:
    """A client of the test's emulator, retrying without waits."""
    with phota_async.set_testing():
        async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as client:
            yield client


async def run(phota: PhotaClient, count: int, **options: object) -> list[BatchProgress]:
    """Enhance ``count`` photos one at a time; return every progress snapshot."""
    seen: list[BatchProgress] = []

    def on_progress(progress: BatchProgress, item: BatchItem[bytes]) -> None:
        seen.append(progress)

    photos = [jpeg_bytes(i) for i in range(count)]
    batch = phota.enhance_many(photos, concurrency=1, on_progress=on_progress, **options)  # type: ignore[arg-type]
    async with batch:
        async for _ in batch:
            pass
    return seen


async def test_progress_is_a_frozen_snapshot_per_item(phota: PhotaClient) -> None:
    """Each item brings a new frozen snapshot; an earlier one keeps the counts it had."""
    seen = await run(phota, 3)
    assert [p.done for p in seen] == [1, 2, 3]
    assert [p.total for p in seen] == [3, 3, 3]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        seen[0].done = 7  # type: ignore[misc]


async def test_progress_carries_the_runs_spend(phota: PhotaClient) -> None:
    """Under a run budget, each snapshot's spend is the ledger after that item."""
    seen = await run(phota, 3, budget=5.0)
    spends = [p.spend for p in seen]
    assert all(s is not None for s in spends)
    assert [round(s.spent, 2) for s in spends if s is not None] == [
        ENHANCE,
        2 * ENHANCE,
        3 * ENHANCE,
    ]
    assert seen[-1].spend_line() == "$0.36 spent of $5.00"


async def test_progress_has_no_spend_without_a_budget(phota: PhotaClient) -> None:
    """Without any budget there is no ledger: spend is None and the spend line is empty."""
    seen = await run(phota, 1)
    assert (seen[0].spend, seen[0].spend_line()) == (None, "")


async def test_progress_carries_the_servers_throttling(
    phota: PhotaClient, emu: PhotaEmulator
) -> None:
    """429 answers during the run show in the snapshot: the run's count and the client's
    limiter, lanes included."""
    emu.add_fault("/enhance", status=429, retry_after=0, times=2)
    seen = await run(phota, 2)
    last = seen[-1]
    assert last.throttled == 2
    assert isinstance(last.throttle, ThrottleStats)
    assert last.throttle.throttled == 2
    assert sum(lane.throttled for lane in last.throttle.lanes.values()) == 2
    assert last.throttle_line().startswith("throttled 2 (429/503)")


async def test_an_exception_in_on_progress_ends_the_run(phota: PhotaClient) -> None:
    """An exception raised by the callback is the run's failure, raised to the consumer."""

    def refuse(progress: BatchProgress, item: BatchItem[bytes]) -> None:
        raise LookupError("display gone")

    batch = phota.enhance_many([jpeg_bytes()], on_progress=refuse)
    with pytest.raises(LookupError, match="display gone"):
        await batch.collect()


async def test_an_async_on_progress_is_refused_before_the_run(phota: PhotaClient) -> None:
    """An ``async def`` on_progress is refused with InvalidRequestError when the run is made,
    not silently never awaited."""

    async def show(progress: BatchProgress, item: object) -> None:
        pass

    with pytest.raises(InvalidRequestError, match="on_progress: must be a plain function"):
        phota.enhance_many([jpeg_bytes()], on_progress=show)  # type: ignore[arg-type]
