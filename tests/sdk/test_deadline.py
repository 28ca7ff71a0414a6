"""Whole-call deadlines sharing one timer: the semantics of asyncio.timeout(), cheaper."""

from __future__ import annotations

import asyncio

import pytest

from phota_async._deadline import Deadlines


async def test_a_block_past_its_deadline_raises_timeout_error() -> None:
    """A call still running when its deadline passes is cancelled and raises TimeoutError."""
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError), deadlines.after(0.05):
        await asyncio.sleep(5)
    assert 0.04 <= loop.time() - started < 1.0


async def test_a_block_finished_in_time_is_untouched() -> None:
    """A call that ends before its deadline returns normally and is never cancelled later."""
    deadlines = Deadlines()
    with deadlines.after(0.05):
        await asyncio.sleep(0)
    await asyncio.sleep(0.1)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


async def test_an_outside_cancellation_stays_a_cancellation() -> None:
    """Cancelling the task from outside is not turned into TimeoutError."""
    deadlines = Deadlines()

    async def call() -> None:
        with deadlines.after(10):
            await asyncio.sleep(5)

    task = asyncio.create_task(call())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_each_call_keeps_its_own_deadline() -> None:
    """Of two concurrent calls, only the one with the shorter deadline times out."""
    deadlines = Deadlines()

    async def call(seconds: float) -> str:
        with deadlines.after(seconds):
            await asyncio.sleep(0.1)
        return "done"

    short, long = await asyncio.gather(call(0.02), call(5), return_exceptions=True)
    assert isinstance(short, TimeoutError)
    assert long == "done"


async def test_finished_calls_do_not_pile_up() -> None:
    """Ten thousand finished calls with long deadlines leave a small heap behind."""
    deadlines = Deadlines()
    for _ in range(10_000):
        with deadlines.after(900):
            pass
    assert len(deadlines._heap) <= 128
