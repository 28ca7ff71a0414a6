"""The poller: next_delay, the poll budget, policy scaling, deadlines, and poll timing on
virtual time (tests/helpers.py), where intervals are asserted exactly."""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from phota_async import Cadence, PollPolicy
from phota_async._poll import PollBudget, Poller, next_delay, transient, wait_deadline
from phota_async._protocol import Response, error_from
from phota_async.errors import ConnectionLostError, InvalidRequestError, WaitTimeoutError
from tests.helpers import run_virtual

STEADY = Cadence(first=1.0, cap=8.0, factor=2.0, jitter=0.0)


def test_first_delay_is_the_fast_start() -> None:
    """The first interval is ``first``."""
    assert next_delay(STEADY, 1) == 1.0


def test_delays_grow_exponentially_to_the_cap() -> None:
    """Intervals double until they reach the cap, then stay there."""
    assert [next_delay(STEADY, n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]


def test_jitter_only_shortens_intervals() -> None:
    """With 10% jitter an interval lies between 90% and 100% of its base, never above."""
    cadence = Cadence(first=10.0, cap=10.0, jitter=0.1)
    assert next_delay(cadence, 1, rand=lambda: 0.0) == pytest.approx(10.0)
    assert next_delay(cadence, 1, rand=lambda: 1.0) == pytest.approx(9.0)


def test_floor_is_never_undercut() -> None:
    """Jitter never takes an interval below the floor."""
    cadence = Cadence(first=10.0, cap=30.0, floor=10.0, jitter=0.5)
    assert next_delay(cadence, 1, rand=lambda: 1.0) == 10.0


def test_server_hint_lengthens_the_delay() -> None:
    """A Retry-After hint longer than the interval wins."""
    assert next_delay(STEADY, 1, hint=5.0) == 5.0
    assert next_delay(STEADY, 4, hint=5.0) == 8.0


def test_training_profiles_follow_the_documented_cadence() -> None:
    """Default training polls stay within 10-30 s however long the wait."""
    cadence = PollPolicy().profile_training
    delays = [next_delay(cadence, n) for n in range(1, 40)]
    assert min(delays) >= 10
    assert max(delays) <= 30


def test_jobs_start_fast() -> None:
    """A job's first poll comes within about a second."""
    assert next_delay(PollPolicy().job, 1) <= 1.0


def test_scaled_policy_scales_intervals_and_budget() -> None:
    """scaled(0.01) makes every interval 100 times shorter and the budget 100 times larger."""
    policy = PollPolicy().scaled(0.01)
    assert policy.profile_training.floor == pytest.approx(0.1)
    assert policy.max_polls_per_second == pytest.approx(1000)


def test_budget_spaces_polls_from_the_last_one() -> None:
    """Each poll waits one interval after the previous one actually left."""
    now = [100.0]
    budget = PollBudget(rate=4, clock=lambda: now[0])
    assert budget.delay() == 0.0
    budget.passed()
    assert budget.delay() == 0.25
    now[0] = 100.1
    assert budget.delay() == pytest.approx(0.15)
    now[0] = 102.0
    assert budget.delay() == 0.0


def test_budget_gate_never_lets_a_burst_through() -> None:
    """Fifty concurrent acquisitions at 100/s leave exactly 10 ms apart (virtual time)."""

    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        budget = PollBudget(rate=100)
        times: list[float] = []

        async def one() -> None:
            await budget.acquire()
            times.append(loop.time())

        await asyncio.gather(*(one() for _ in range(50)))
        return times

    times = run_virtual(scenario())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 49
    assert gaps == pytest.approx([0.01] * 49)


def test_budget_must_be_positive() -> None:
    """A zero budget is refused."""
    with pytest.raises(ValueError, match="positive"):
        PollBudget(rate=0)


def test_none_timeout_means_the_default_not_forever() -> None:
    """timeout=None is the default deadline; infinity must be asked for."""
    assert wait_deadline(None, 1800) == 1800
    assert wait_deadline(math.inf, 1800) == math.inf
    with pytest.raises(InvalidRequestError, match="timeout"):
        wait_deadline(-1, 1800)


@pytest.mark.parametrize(
    ("status", "expected"), [(503, True), (429, True), (500, True), (404, False), (401, False)]
)
def test_transient_errors_keep_polling(status: int, expected: bool) -> None:
    """5xx and 429 keep a wait going; 4xx answers end it."""
    assert transient(error_from(Response(status, {}, b""))) is expected


def test_connection_trouble_keeps_polling() -> None:
    """Connection errors while polling are transient."""
    assert transient(ConnectionLostError("lost"))


async def _poll_times(answer_takes: float, interval: float, polls: int) -> list[float]:
    """Start and answer times of ``polls`` polls whose answers take ``answer_takes``."""
    loop = asyncio.get_running_loop()
    times: list[float] = []

    async def slow_fetch() -> int:
        times.append(loop.time())
        await asyncio.sleep(answer_takes)
        times.append(loop.time())
        return len(times) // 2

    every = Cadence(first=interval, cap=interval, floor=interval, jitter=0.0)
    poller = Poller(PollBudget(rate=1000))
    await poller.wait("k", slow_fetch, lambda n: n >= polls, lambda _: every, 10.0, "thing")
    return times


def test_answers_arrive_one_interval_after_the_previous_poll_left() -> None:
    """With answers taking 50 ms, each answer comes exactly one interval after the previous
    poll left, so a change is never seen later than one interval after it happened."""
    times = run_virtual(_poll_times(0.05, 0.2, 4))
    starts, answers = times[0::2], times[1::2]
    lags = [answer - start for start, answer in zip(starts, answers[1:], strict=False)]
    assert len(lags) == 3
    assert lags == pytest.approx([0.2] * 3), lags


def test_answers_slower_than_half_an_interval_keep_one_poll_in_flight() -> None:
    """When answers take most of an interval, polls go back to back but never overlap."""
    times = run_virtual(_poll_times(0.15, 0.2, 4))
    starts, answers = times[0::2], times[1::2]
    assert len(starts) == 4
    assert all(start >= answer for answer, start in zip(answers, starts[1:], strict=False))
    gaps = [start - answer for answer, start in zip(answers, starts[1:], strict=False)]
    assert gaps == pytest.approx([0.0] * 3, abs=1e-9)


def test_retry_after_counts_from_the_answer() -> None:
    """A server's Retry-After is waited in full after its answer, however long the poll took."""
    starts: list[float] = []
    answered: list[float] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()

        async def busy_then_done() -> int:
            starts.append(loop.time())
            await asyncio.sleep(0.1)
            answered.append(loop.time())
            if len(starts) == 1:
                raise error_from(Response(429, {"retry-after": "0.3"}, b"{}"))
            return 1

        every = Cadence(first=0.05, cap=0.05, floor=0.05, jitter=0.0)
        poller = Poller(PollBudget(rate=1000))
        await poller.wait("k", busy_then_done, lambda n: n == 1, lambda _: every, 10.0, "thing")

    run_virtual(scenario())
    assert len(starts) == 2
    assert starts[1] - answered[0] == pytest.approx(0.3)


def test_a_twenty_minute_wait_runs_on_virtual_time_to_its_exact_deadline() -> None:
    """A wait on something that never finishes ends with WaitTimeoutError at exactly its
    timeout, after polls at exactly the cadence (20 minutes of virtual time)."""
    polled: list[float] = []

    async def scenario() -> tuple[float, float, WaitTimeoutError]:
        loop = asyncio.get_running_loop()

        async def never_done() -> str:
            polled.append(loop.time())
            return "RUNNING"

        every = Cadence(first=10.0, cap=30.0, factor=2.0, floor=10.0, jitter=0.0)
        poller = Poller(PollBudget(rate=10))
        started = loop.time()
        with pytest.raises(WaitTimeoutError) as info:
            await poller.wait("k", never_done, lambda s: s == "DONE", lambda _: every, 1200, "x")
        return started, loop.time(), info.value

    started, ended, error = run_virtual(scenario())
    assert ended - started == pytest.approx(1200)
    # Polls at 0, 10, 30 s, then every 30 s (the cap) while the deadline has not come.
    expected = [0.0, 10.0, 30.0, *range(60, 1200, 30)]
    assert [t - started for t in polled] == pytest.approx(expected)
    assert error.last == "RUNNING"


def test_widened_budget_allows_more_polls_only_inside_the_block() -> None:
    """A widened budget passes polls faster inside the block and returns to its rate after."""
    budget = PollBudget(rate=10)
    with budget.widened(30):
        assert budget.interval == pytest.approx(1 / 40)
        with budget.widened(10):
            assert budget.interval == pytest.approx(1 / 50)
        assert budget.interval == pytest.approx(1 / 40)
    assert budget.interval == pytest.approx(1 / 10)
