"""Whole-call deadlines sharing one timer: the semantics of asyncio.timeout(), cheaper."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal

import pytest

from phota_async import Cadence, MockTransport, PhotaClient, PollPolicy, RetryPolicy, set_testing
from phota_async._deadline import Deadlines, check_seconds
from phota_async._protocol import Request, Response
from phota_async.errors import InvalidRequestError, WaitTimeoutError
from tests.helpers import run_virtual


def test_a_block_past_its_deadline_raises_timeout_error() -> None:
    """A call still running when its deadline passes is cancelled at exactly that moment and
    raises TimeoutError (on virtual time)."""

    async def scenario() -> float:
        deadlines = Deadlines()
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError), deadlines.after(0.05):
            await asyncio.sleep(5)
        return loop.time() - started

    assert run_virtual(scenario()) == pytest.approx(0.05)


def test_a_twenty_minute_deadline_cuts_a_call_off_exactly() -> None:
    """A 20-minute deadline among shorter ones fires at exactly 20 minutes (virtual time)."""

    async def scenario() -> list[float]:
        deadlines = Deadlines()
        loop = asyncio.get_running_loop()
        started = loop.time()
        ended: list[float] = []

        async def call(seconds: float) -> None:
            with pytest.raises(TimeoutError), deadlines.after(seconds):
                await asyncio.sleep(3600)
            ended.append(loop.time() - started)

        await asyncio.gather(call(1200), call(0.5), call(60))
        return ended

    assert run_virtual(scenario()) == pytest.approx([0.5, 60, 1200])


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


async def test_a_nan_deadline_is_refused_and_disturbs_no_other_call() -> None:
    """A nan deadline is refused, and a concurrent call still times out at its own deadline."""
    deadlines = Deadlines()

    async def bounded() -> None:
        with deadlines.after(0.05):
            await asyncio.sleep(5)

    task = asyncio.create_task(bounded())
    await asyncio.sleep(0)
    with pytest.raises(InvalidRequestError, match="nan"):
        deadlines.after(math.nan)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(task, 3)


async def test_an_infinite_deadline_arms_nothing() -> None:
    """A deadline of inf never enters the heap, so it cannot delay the others' timer."""
    deadlines = Deadlines()
    with deadlines.after(math.inf) as deadline:
        await asyncio.sleep(0)
    assert deadlines._heap == []
    assert deadline.remaining() == math.inf


async def test_a_negative_deadline_is_already_past() -> None:
    """A negative deadline cuts the call off at the next turn of the loop."""
    deadlines = Deadlines()
    with pytest.raises(TimeoutError), deadlines.after(-5):
        await asyncio.sleep(5)


@pytest.mark.parametrize("value", [math.nan, -1, "1", None, True, Decimal("1")])
def test_check_seconds_refuses_what_is_not_a_number_of_seconds(value: object) -> None:
    """nan, negative numbers, strings, None and booleans are refused, naming the field."""
    with pytest.raises(InvalidRequestError) as info:
        check_seconds(value, "timeout")
    assert info.value.field == "timeout"


def test_check_seconds_refuses_inf_where_a_limit_is_needed() -> None:
    """inf is accepted as "no limit" unless the option needs a finite value."""
    assert check_seconds(math.inf, "timeout") == math.inf
    with pytest.raises(InvalidRequestError, match="finite"):
        check_seconds(math.inf, "read_timeout", allow_inf=False)


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"timeout": math.nan}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"connect_timeout": math.inf}, "connect_timeout"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"read_timeout": math.nan}, "read_timeout"),
        ({"read_timeout": "630"}, "read_timeout"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"max_concurrency": 2.5}, "max_concurrency"),
        ({"max_concurrency": True}, "max_concurrency"),
    ],
)
def test_client_options_out_of_range_are_refused(options: dict[str, object], field: str) -> None:
    """A client option that is not a usable number is refused, naming the option."""
    with pytest.raises(InvalidRequestError) as info:
        PhotaClient(api_key="k", base_url="https://api.test/v1/phota", **options)  # type: ignore[arg-type]
    assert info.value.field == field


def test_setting_a_nan_client_timeout_is_refused() -> None:
    """Assigning a bad default timeout to a client is refused like passing one."""
    client = PhotaClient(api_key="k", base_url="https://api.test/v1/phota")
    with pytest.raises(InvalidRequestError, match="timeout"):
        client.timeout = math.nan
    assert client.timeout == 900.0


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_attempts": 0}, "RetryPolicy.max_attempts"),
        ({"max_attempts": 2.0}, "RetryPolicy.max_attempts"),
        ({"initial_backoff": math.nan}, "RetryPolicy.initial_backoff"),
        ({"max_backoff": -1}, "RetryPolicy.max_backoff"),
        ({"max_retry_after": math.inf}, "RetryPolicy.max_retry_after"),
    ],
)
def test_retry_policy_fields_out_of_range_are_refused(
    options: dict[str, object], field: str
) -> None:
    """A RetryPolicy field that is not a usable number is refused, naming the field."""
    with pytest.raises(InvalidRequestError) as info:
        RetryPolicy(**options)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize("field", ["first", "cap", "factor", "floor", "jitter"])
def test_a_nan_cadence_is_refused(field: str) -> None:
    """A nan poll interval is refused when the cadence is made, before it can reach a timer."""
    values = {"first": 1.0, "cap": 2.0, field: math.nan}
    with pytest.raises(InvalidRequestError, match=f"Cadence.{field}"):
        Cadence(**values)


def test_a_nan_poll_budget_is_refused() -> None:
    """A client with a nan poll budget (polls unbounded) is refused."""
    policy = PollPolicy(max_polls_per_second=math.nan)
    with pytest.raises(InvalidRequestError, match="max_polls_per_second"):
        PhotaClient(api_key="k", base_url="https://api.test/v1/phota", poll=policy)


def test_a_job_call_ends_at_its_deadline_when_its_submit_waited_out_a_retry_after() -> None:
    """A ``via_job`` call whose submit waited 4 s on a ``Retry-After`` is cut off at its 10 s
    deadline, not 10 s after the submit (the deadline is kept on the loop's clock)."""
    posts = 0

    async def handler(request: Request) -> Response:
        nonlocal posts
        headers = {"content-type": "application/json"}
        if request.method == "POST":
            posts += 1
            if posts == 1:
                return Response(429, {**headers, "retry-after": "4"}, b"{}")
            return Response(200, headers, b'{"job_id": "job_0001", "status": "QUEUED"}')
        return Response(200, headers, b'{"job_id": "job_0001", "status": "RUNNING"}')

    async def main() -> float:
        phota = PhotaClient(
            api_key="k", base_url="https://api.test", transport=MockTransport(handler)
        )
        async with phota:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(WaitTimeoutError):
                await phota.enhance("https://images.test/a.jpg", via_job=True, timeout=10)
            return loop.time() - started

    with set_testing(False):
        assert run_virtual(main()) == pytest.approx(10, abs=0.01)
    assert posts == 2
