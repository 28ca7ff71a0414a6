"""Retries never bill twice: the rules of the retry wrapper, driven through MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from phota_async import MockTransport, PhotaClient, RetryPolicy
from phota_async._deadline import Deadlines
from phota_async._protocol import Request, Response
from phota_async.errors import (
    ConnectError,
    ConnectionLostError,
    GatewayTimeoutError,
    OutcomeUnknownError,
    PhotaError,
    RateLimitError,
    ReadTimeoutError,
    ServerError,
    TransportError,
)

PROFILE = json.dumps({"profile_id": "p1", "status": "READY"}).encode()
RESULT = json.dumps({"known_subjects": {"counts": {}}, "images": [], "download_urls": []}).encode()
Step = Callable[[Request], Response]


def ok(body: bytes) -> Step:
    return lambda r: Response(200, {"x-request-id": f"req_ok{len(r.url)}"}, body)


def status(code: int, **headers: str) -> Step:
    def answer(_: Request) -> Response:
        return Response(
            code, {"x-request-id": f"req_{code}", **headers}, b'{"code": "X", "detail": "d"}'
        )

    return answer


def fail(error: PhotaError) -> Step:
    def answer(_: Request) -> Response:
        raise error

    return answer


def scripted(*steps: Step) -> MockTransport:
    """A transport answering each request with the next step."""
    queue = list(steps)
    return MockTransport(lambda request: queue.pop(0)(request))


def client(transport: MockTransport, **kwargs: object) -> PhotaClient:
    return PhotaClient(
        api_key="k", base_url="https://api.test/v1/phota", transport=transport, **kwargs
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "first",
    [
        status(429),
        status(500),
        status(502),
        status(503),
        fail(ConnectError("refused")),
        fail(ConnectionLostError("lost")),
        fail(ReadTimeoutError("slow")),
        lambda _: Response(200, {}, b"{not json"),
    ],
)
async def test_get_is_retried_after_transient_failures(first: Step) -> None:
    """A GET is retried after 429, 5xx, connection errors, timeouts and unreadable bodies."""
    transport = scripted(first, ok(PROFILE))
    async with client(transport) as phota:
        profile = await phota.profiles.get("p1")
    assert profile.id == "p1"
    assert len(transport.requests) == 2


@pytest.mark.parametrize("first", [status(429), status(503), fail(ConnectError("refused"))])
async def test_paid_post_is_retried_when_it_cannot_have_been_processed(first: Step) -> None:
    """A paid POST is retried after 429, 503 and connection refused."""
    transport = scripted(first, ok(RESULT))
    async with client(transport) as phota:
        await phota.generate("a cat")
    assert len(transport.requests) == 2


@pytest.mark.parametrize(
    "first",
    [
        fail(ConnectionLostError("lost")),
        fail(ReadTimeoutError("slow")),
        status(502),
        lambda _: Response(200, {}, b"{not json"),
    ],
)
async def test_paid_post_with_unknown_outcome_is_not_retried(first: Step) -> None:
    """A paid POST whose answer was lost raises OutcomeUnknownError after one attempt."""
    transport = scripted(first, ok(RESULT))
    async with client(transport) as phota:
        with pytest.raises(OutcomeUnknownError, match="may have been processed"):
            await phota.generate("a cat")
    assert len(transport.requests) == 1


async def test_paid_post_500_is_a_server_error_not_retried() -> None:
    """A 500 on a paid POST raises ServerError after one attempt."""
    transport = scripted(status(500), ok(RESULT))
    async with client(transport) as phota:
        with pytest.raises(ServerError):
            await phota.generate("a cat")
    assert len(transport.requests) == 1


async def test_504_is_never_retried() -> None:
    """A 504 raises GatewayTimeoutError at once, even for a GET."""
    transport = scripted(status(504), ok(PROFILE))
    async with client(transport) as phota:
        with pytest.raises(GatewayTimeoutError):
            await phota.profiles.get("p1")
    assert len(transport.requests) == 1


async def test_attempts_are_bounded() -> None:
    """After max_attempts failures the last error is raised."""
    transport = scripted(*[status(503)] * 3)
    async with client(transport, retry=RetryPolicy(max_attempts=3)) as phota:
        with pytest.raises(ServerError) as info:
            await phota.profiles.get("p1")
    assert len(transport.requests) == 3
    assert info.value.status == 503


async def test_every_attempt_request_id_is_kept() -> None:
    """The final error carries the request id of every attempt."""
    transport = scripted(status(429), status(500), status(503))
    async with client(transport, retry=RetryPolicy(max_attempts=3)) as phota:
        with pytest.raises(ServerError) as info:
            await phota.profiles.get("p1")
    assert info.value.request_ids == ("req_429", "req_500", "req_503")


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    """Retry-After sets the wait, capped by max_retry_after."""
    from phota_async import _protocol as proto
    from phota_async import set_testing

    with set_testing(False):
        policy = RetryPolicy(max_retry_after=5)
        short = proto.error_from(Response(429, {"retry-after": "2"}, b""))
        long = proto.error_from(Response(503, {"retry-after": "300"}, b""))
        assert policy.wait_for(1, short) == 2
        assert policy.wait_for(1, long) == 5


def test_backoff_is_jittered_exponential_and_capped() -> None:
    """Without a hint, waits grow exponentially with jitter and stay under the cap."""
    from phota_async import set_testing

    with set_testing(False):
        policy = RetryPolicy(initial_backoff=1, max_backoff=4)
        waits = [policy.wait_for(n, None) for n in (1, 2, 3, 10)]
    assert 0.5 <= waits[0] <= 1
    assert 1 <= waits[1] <= 2
    assert 2 <= waits[2] <= 4
    assert 2 <= waits[3] <= 4


async def test_retry_waits_use_the_hint() -> None:
    """The wrapper sleeps the Retry-After hint between attempts."""
    from phota_async import _retry, set_testing

    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def attempt() -> int:
        if not slept:
            from phota_async import _protocol as proto

            raise proto.error_from(Response(429, {"retry-after": "3"}, b""))
        return 7

    with set_testing(False):
        got = await _retry.call(
            attempt, retry="safe", endpoint="/x", policy=RetryPolicy(), sleep=record
        )
    assert (got, slept) == (7, [3.0])


async def test_garbled_answer_to_a_paid_post_is_an_unknown_outcome() -> None:
    """A paid POST answered with a garbled status line or headers raises OutcomeUnknownError."""
    transport = scripted(fail(TransportError("POST /generate: BadStatusLine")), ok(RESULT))
    async with client(transport) as phota:
        with pytest.raises(OutcomeUnknownError, match="may have been processed"):
            await phota.generate("a cat")
    assert len(transport.requests) == 1


async def test_garbled_answer_to_a_get_is_retried() -> None:
    """A GET answered with a garbled status line or headers is sent again."""
    transport = scripted(fail(TransportError("GET /x: BadStatusLine")), ok(PROFILE))
    async with client(transport) as phota:
        assert (await phota.profiles.get("p1")).id == "p1"
    assert len(transport.requests) == 2


async def test_a_submit_whose_every_answer_was_lost_names_its_key() -> None:
    """A job submit that lost every answer raises OutcomeUnknownError carrying its one key."""
    transport = scripted(*[fail(ConnectionLostError("lost"))] * 4)
    async with client(transport) as phota:
        with pytest.raises(OutcomeUnknownError) as info:
            await phota.jobs.submit_generate("a cat")
    keys = {json.loads(r.body)["client_request_id"] for r in transport.requests}  # type: ignore[arg-type]
    assert len(transport.requests) == 4
    assert keys == {info.value.client_request_id}
    assert "client_request_id=" in str(info.value)


async def test_a_submit_lost_then_rate_limited_is_an_unknown_outcome() -> None:
    """A submit whose lost attempt was followed only by 429s may exist: OutcomeUnknownError."""
    transport = scripted(fail(ConnectionLostError("lost")), *[status(429)] * 3)
    async with client(transport) as phota:
        with pytest.raises(OutcomeUnknownError) as info:
            await phota.jobs.submit_generate("a cat")
    assert info.value.request_ids == ("req_429",)
    assert info.value.attempts == 4


async def test_a_submit_refused_outright_is_not_an_unknown_outcome() -> None:
    """A submit that only ever got 429s raises RateLimitError: no job can exist."""
    transport = scripted(*[status(429)] * 4)
    async with client(transport) as phota:
        with pytest.raises(RateLimitError):
            await phota.jobs.submit_generate("a cat")


async def test_retries_stop_before_a_wait_the_deadline_cannot_cover() -> None:
    """A Retry-After longer than the time left is not slept: the 429 is raised at once."""
    from phota_async import _protocol as proto
    from phota_async import _retry, set_testing

    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def attempt() -> int:
        raise proto.error_from(Response(429, {"retry-after": "5", "x-request-id": "r1"}, b""))

    with (
        set_testing(False),
        Deadlines().after(1.0) as deadline,
        pytest.raises(RateLimitError) as info,
    ):
        await _retry.call(
            attempt,
            retry="paid",
            endpoint="/x",
            policy=RetryPolicy(),
            sleep=record,
            deadline=deadline,
        )
    assert slept == []
    assert info.value.request_ids == ("r1",)
    assert "deadline" in str(info.value)


def test_set_testing_as_a_context_manager_restores_the_previous_setting() -> None:
    """Leaving ``with set_testing(...)`` puts back the setting it found, also when nested."""
    from phota_async import _retry, set_testing

    assert _retry._testing is True  # the SDK suites run with waits off
    with set_testing(False):
        assert _retry._testing is False
        with set_testing():
            assert _retry._testing is True
        assert _retry._testing is False
    assert _retry._testing is True


def test_set_testing_restores_the_setting_after_an_error() -> None:
    """An exception leaving the block still restores the previous setting."""
    from phota_async import _retry, set_testing

    with pytest.raises(RuntimeError), set_testing(False):
        raise RuntimeError("boom")
    assert _retry._testing is True


def test_set_testing_as_a_plain_call_switches_until_switched_back() -> None:
    """``set_testing(False)`` without ``with`` takes effect at once and stays."""
    from phota_async import _retry, set_testing

    set_testing(False)
    try:
        assert _retry._testing is False
        assert RetryPolicy(max_retry_after=5).wait_for(1, None) > 0
    finally:
        set_testing(True)
    assert _retry._testing is True
