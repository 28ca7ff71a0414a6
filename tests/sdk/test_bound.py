"""The client's concurrency bound: slots, arrival order, and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from phota_async._bound import Bound


async def _hold(bound: Bound, order: list[int], me: int, release: asyncio.Event) -> None:
    if not bound.try_take():
        await bound.take()
    order.append(me)
    try:
        await release.wait()
    finally:
        bound.give()


def test_a_free_slot_is_taken_without_waiting() -> None:
    """try_take succeeds while slots are free and fails once they are all held."""
    bound = Bound(2)
    assert (bound.try_take(), bound.try_take(), bound.try_take()) == (True, True, False)
    assert bound.free == 0


def test_a_bound_below_one_is_refused() -> None:
    """A bound of zero slots is a clear error, not a deadlock."""
    with pytest.raises(ValueError, match="at least 1"):
        Bound(0)


async def test_waiters_are_served_in_arrival_order() -> None:
    """When slots free up, the waiters get them first come, first served."""
    bound = Bound(1)
    release = asyncio.Event()
    order: list[int] = []
    tasks = []
    for me in range(5):
        tasks.append(asyncio.create_task(_hold(bound, order, me, release)))
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4]
    assert bound.free == 1


async def test_a_newcomer_cannot_overtake_a_waiter() -> None:
    """A released slot goes to the oldest waiter, not to a caller arriving at that moment."""
    bound = Bound(1)
    assert bound.try_take()
    waiter = asyncio.create_task(bound.take())
    await asyncio.sleep(0)
    bound.give()
    assert not bound.try_take()
    await waiter
    assert bound.free == 0


async def test_a_cancelled_waiter_takes_no_slot() -> None:
    """Cancelling a wait leaves the slot count as it was and lets the next waiter through."""
    bound = Bound(1)
    assert bound.try_take()
    cancelled = asyncio.create_task(bound.take())
    later = asyncio.create_task(bound.take())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    bound.give()
    await later
    assert cancelled.cancelled()
    bound.give()
    assert bound.free == 1


async def test_a_slot_handed_to_a_cancelled_waiter_is_passed_on() -> None:
    """A slot given to a waiter cancelled in the same instant goes to the next waiter."""
    bound = Bound(1)
    assert bound.try_take()
    first = asyncio.create_task(bound.take())
    second = asyncio.create_task(bound.take())
    await asyncio.sleep(0)
    bound.give()  # hands the slot to `first` ...
    first.cancel()  # ... which is cancelled before it runs
    await asyncio.sleep(0)
    await second
    assert first.cancelled()
    assert bound.free == 0
    bound.give()
    assert bound.free == 1
