"""The adaptive limiter: its reaction to throttling, on virtual time against a token bucket."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import attrs
import pytest

import phota_async
from phota_async import MockTransport, PhotaClient, ThrottleStats
from phota_async._protocol import Request, Response
from phota_async.errors import RateLimitError, ReadTimeoutError
from phota_async.testing import PhotaEmulator, RateLimit
from tests.helpers import jpeg_bytes, run_virtual
from tests.sdk._throttle_sim import RESULT, BucketServer

URL = "https://images.test/photo.jpg"


@pytest.fixture(autouse=True)
def _waits_on() -> Iterator[None]:
    """The limiter's pacing and pauses are the subject here, so they are not switched off
    (virtual time keeps them instant)."""
    with phota_async.set_testing(False):
        yield


def client(handler: object, concurrency: int = 64) -> PhotaClient:
    return PhotaClient(
        api_key="k",
        base_url="https://api.test",
        transport=MockTransport(handler),  # type: ignore[arg-type]
        max_concurrency=concurrency,
    )


async def enhance_all(phota: PhotaClient, n: int, concurrency: int = 64) -> int:
    """Run ``n`` enhance calls at ``concurrency``; return how many succeeded."""
    done = 0
    async for item in phota.enhance_many([URL] * n, concurrency=concurrency, response_mode="urls"):
        done += item.ok
    return done


def test_a_storm_of_429s_from_one_burst_decreases_the_rate_once() -> None:
    """Forty requests in flight together (past slow start), all refused, lower the studio
    rate once, not forty times."""
    release = asyncio.Event()
    refused = 0
    warm = 0

    async def handler(request: Request) -> Response:
        nonlocal refused, warm
        if warm < 100:  # successes that take the lane past slow start
            warm += 1
            return Response(200, {}, RESULT)
        if refused < 40:
            refused += 1
            await release.wait()
            return Response(429, {}, b"{}")
        return Response(200, {}, RESULT)

    async def main() -> tuple[ThrottleStats, int]:
        async with client(handler) as phota:
            await enhance_all(phota, 100)
            calls = [
                asyncio.ensure_future(phota.enhance(URL, response_mode="urls")) for _ in range(40)
            ]
            while refused < 40:
                await asyncio.sleep(0.001)
            release.set()
            await asyncio.gather(*calls)
            return phota.throttle, phota._session.limiter.studio.decreases

    stats, decreases = run_virtual(main())
    assert (stats.throttled, decreases) == (40, 1)


def test_retry_after_pauses_every_new_attempt_of_the_lane() -> None:
    """After a 429 with ``Retry-After: 5``, no studio request is sent for 5 s, whoever sends
    it."""
    sends: list[float] = []

    async def handler(request: Request) -> Response:
        sends.append(asyncio.get_running_loop().time())
        if len(sends) == 1:
            return Response(429, {"retry-after": "5"}, b"{}")
        return Response(200, {}, RESULT)

    async def main() -> float:
        async with client(handler) as phota:
            with pytest.raises(RateLimitError):
                await phota.enhance(URL, response_mode="urls", timeout=1)
            refused_at = sends[0]
            await asyncio.gather(*(phota.enhance(URL, response_mode="urls") for _ in range(3)))
            return refused_at

    refused_at = run_virtual(main())
    assert len(sends) == 4
    assert min(sends[1:]) >= refused_at + 5


def test_polls_are_not_held_back_by_a_studio_pause() -> None:
    """A ``Retry-After`` on a studio POST does not delay a GET of another lane."""
    sends: list[tuple[str, float]] = []

    async def handler(request: Request) -> Response:
        sends.append((request.method, asyncio.get_running_loop().time()))
        if request.method == "POST":
            return Response(429, {"retry-after": "30"}, b"{}")
        return Response(200, {}, b'{"profile_id": "p1", "status": "READY", "message": ""}')

    async def main() -> tuple[float, float]:
        async with client(handler) as phota:
            with pytest.raises(RateLimitError):
                await phota.enhance(URL, response_mode="urls", timeout=1)
            before = asyncio.get_running_loop().time()
            await phota.profiles.get("p1")
            return before, phota.throttle.pause_left

    before, pause_left = run_virtual(main())
    assert sends[-1] == ("GET", before)
    assert pause_left == pytest.approx(30)


def test_a_pause_longer_than_the_deadline_ends_the_call_at_its_deadline() -> None:
    """A call that would wait out a 60 s pause with 5 s left fails at its deadline, unsent."""
    sends: list[float] = []

    async def handler(request: Request) -> Response:
        sends.append(asyncio.get_running_loop().time())
        return Response(429, {"retry-after": "60"}, b"{}")

    async def main() -> tuple[float, ReadTimeoutError]:
        async with client(handler) as phota:
            with pytest.raises(RateLimitError):
                await phota.enhance(URL, response_mode="urls", timeout=1)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(ReadTimeoutError) as caught:
                await phota.enhance(URL, response_mode="urls", timeout=5)
            return loop.time() - started, caught.value

    took, error = run_virtual(main())
    assert took == pytest.approx(5, abs=0.01)
    assert len(sends) == 1
    assert "rate limit" in str(error)
    assert "nothing was sent" in str(error)


def test_the_rate_recovers_to_the_ceiling_once_the_server_stops_throttling() -> None:
    """After a storm ends, the studio lane speeds back up and opens again (no pacing)."""
    server = BucketServer(rate=20)

    async def main() -> tuple[float | None, float | None, int]:
        async with client(server) as phota:
            await enhance_all(phota, 200)
            paced = phota.throttle.rate
            server.rate = server.burst = 10_000.0  # the limit is lifted
            await enhance_all(phota, 1500)
            return paced, phota.throttle.rate, phota.throttle.in_flight

    paced, after, in_flight = run_virtual(main())
    assert paced is not None
    assert paced < 40
    assert after is None
    assert in_flight == 0


def test_a_steady_limit_is_used_at_least_at_95_percent_with_few_refusals() -> None:
    """Against 20 requests/s, 2,000 calls at concurrency 64 run at >= 0.95 of the limit, and
    fewer than 2% of all their requests are refused (slow start spares the first wave)."""
    server = BucketServer(rate=20)

    async def main() -> tuple[int, float, float]:
        async with client(server) as phota:
            loop = asyncio.get_running_loop()
            started = loop.time()
            done = await enhance_all(phota, 2000)
            return done, loop.time() - started, started

    done, took, started = run_virtual(main())
    assert done == 2000
    assert done / took >= 0.95 * 20
    sent = server.sent(started, started + took + 1)
    assert sent.count(429) / len(sent) < 0.02


def test_a_halving_limit_is_followed_within_five_seconds() -> None:
    """When the server's limit drops from 80 to 40 requests/s, from 5 s after the drop on the
    client sends at most 40 a second, at least 90% of the limit gets through, and under 2% of
    the requests are refused."""
    server = BucketServer(rate=80)

    async def main() -> float:
        async with client(server) as phota:
            loop = asyncio.get_running_loop()
            halved_at = loop.time() + 10

            def halve() -> None:
                server.admit(loop.time())
                server.rate = server.burst = 40
                server.tokens = min(server.tokens, 40)

            loop.call_at(halved_at, halve)
            await enhance_all(phota, 1600)
            return halved_at

    halved_at = run_virtual(main())
    after = server.sent(halved_at + 5, halved_at + 15)
    assert len(after) <= 40 * 10 * 1.05
    assert after.count(200) >= 0.9 * 40 * 10
    assert after.count(429) <= 0.02 * len(after)


def test_throttle_is_a_frozen_snapshot() -> None:
    """``phota.throttle`` reports the ceiling, the throttled count, the pace and the pause,
    and cannot be changed."""

    async def handler(request: Request) -> Response:
        return Response(429, {"retry-after": "7"}, b"{}")

    async def main() -> tuple[ThrottleStats, ThrottleStats]:
        async with client(handler, concurrency=8) as phota:
            fresh = phota.throttle
            with pytest.raises(RateLimitError):
                await phota.enhance(URL, response_mode="urls", timeout=1)
            return fresh, phota.throttle

    fresh, stats = run_virtual(main())
    assert (fresh.throttled, fresh.rate, fresh.pause_left, fresh.line()) == (0, None, 0.0, "")
    assert (stats.max_concurrency, stats.in_flight, stats.throttled) == (8, 0, 1)
    assert stats.rate is not None
    assert stats.pause_left == pytest.approx(7)
    assert stats.lanes["studio"].decreases == 1
    assert stats.lanes["api"].throttled == 0
    assert stats.line().startswith("throttled 1 (429/503); pacing ")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.throttled = 0  # type: ignore[misc]


def test_a_503_throttles_like_a_429() -> None:
    """A 503 lowers the pace of its lane as a 429 does."""

    async def handler(request: Request) -> Response:
        return Response(503, {}, b"{}")

    async def main() -> ThrottleStats:
        async with client(handler) as phota:
            with pytest.raises(phota_async.errors.APIError):
                await phota.enhance(URL, response_mode="urls", timeout=1)
            return phota.throttle

    stats = run_virtual(main())
    assert stats.throttled >= 1
    assert stats.rate is not None


async def test_a_batch_against_a_rate_limited_emulator_pays_once_per_photo(
    threaded_emu: PhotaEmulator,
) -> None:
    """Against a real emulator limited to 40 requests/s (4 at once), 120 enhance calls at
    concurrency 32 all succeed, each is charged once, and the client counts every refusal the
    server made."""
    emu = threaded_emu
    # A small burst: the first wave (8 calls) is refused in part however slowly a loaded
    # machine sends it, so the refusals this test counts always happen.
    emu.rate_limit = RateLimit(rate=40, burst=4)
    photo = jpeg_bytes(3, (32, 32))
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
        done = 0
        async for item in phota.enhance_many([photo] * 120, concurrency=32):
            done += item.ok
        stats = phota.throttle
    assert done == 120
    assert len(emu.charges()) == 120
    assert stats.throttled == emu.rate_limited
    assert emu.rate_limited >= 1


def test_cancelling_a_call_that_waits_its_turn_sends_nothing_and_leaves_no_waiter() -> None:
    """A call held by a pause and then cancelled is never sent and leaves the queue empty."""
    sends: list[str] = []

    async def handler(request: Request) -> Response:
        sends.append(request.method)
        return Response(429, {"retry-after": "30"}, b"{}")

    async def main() -> tuple[int, int]:
        async with client(handler) as phota:
            with pytest.raises(RateLimitError):
                await phota.enhance(URL, response_mode="urls", timeout=1)
            call = asyncio.ensure_future(phota.enhance(URL, response_mode="urls"))
            await asyncio.sleep(1)
            queued = phota.throttle.lanes["studio"].queued
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            return queued, phota.throttle.lanes["studio"].queued

    assert run_virtual(main()) == (1, 0)
    assert sends == ["POST"]


def test_a_pace_the_client_does_not_use_does_not_reopen_the_lane() -> None:
    """After throttling, a client sending far below its pace stays paced: a pace it never
    used proves nothing about the server's limit."""
    server = BucketServer(rate=20)

    async def main() -> float | None:
        async with client(server) as phota:
            await enhance_all(phota, 200)
            server.rate = server.burst = 10_000.0
            for _ in range(30):  # one call a second for half a minute
                await phota.enhance(URL, response_mode="urls")
                await asyncio.sleep(1)
            return phota.throttle.rate

    assert run_virtual(main()) is not None


def test_closing_the_client_ends_calls_waiting_on_a_pause_at_once_unsent() -> None:
    """A call held by a 30 s ``Retry-After`` pause fails as soon as the client is closed, and
    is never sent through the closed client."""
    sends: list[str] = []

    async def handler(request: Request) -> Response:
        sends.append(request.method)
        return Response(429, {"retry-after": "30"}, b"{}")

    async def main() -> tuple[float, str]:
        phota = client(handler)
        with pytest.raises(RateLimitError):
            await phota.enhance(URL, response_mode="urls", timeout=1)
        call = asyncio.ensure_future(phota.enhance(URL, response_mode="urls"))
        await asyncio.sleep(1)
        loop = asyncio.get_running_loop()
        closed_at = loop.time()
        await phota.aclose()
        with pytest.raises(phota_async.errors.PhotaError) as caught:
            await call
        return loop.time() - closed_at, str(caught.value)

    took, message = run_virtual(main())
    assert took < 1
    assert "closed" in message
    assert sends == ["POST"]


def test_an_unthrottled_studio_lane_starts_small_and_doubles_each_round_trip() -> None:
    """Unthrottled, the studio lane sends 8 calls in its first round trip, about twice as
    many in each next one, and 64 at once from the fourth on."""
    flying = 0
    most: dict[int, int] = {}
    start: list[float] = []

    async def handler(request: Request) -> Response:
        nonlocal flying
        now = asyncio.get_running_loop().time()
        start[:] = start or [now]
        trip = int(now - start[0])  # a round trip is one second here
        flying += 1
        most[trip] = max(most.get(trip, 0), flying)
        await asyncio.sleep(1)
        flying -= 1
        return Response(200, {}, RESULT)

    async def main() -> int:
        async with client(handler) as phota:
            return await enhance_all(phota, 640)

    assert run_virtual(main()) == 640
    assert [most[t] for t in range(4)] == [8, 16, 32, 64]
    assert max(most.values()) == 64


def test_calls_cancelled_while_waiting_for_a_slow_start_slot_leave_it_serving() -> None:
    """Calls cancelled (or cut off by their deadline) while waiting for a slow-start slot are
    never sent, and the calls after them are served."""
    release = asyncio.Event()
    sends = 0

    async def handler(request: Request) -> Response:
        nonlocal sends
        sends += 1
        await release.wait()
        return Response(200, {}, RESULT)

    async def main() -> tuple[int, int, int]:
        async with client(handler) as phota:
            first = [
                asyncio.ensure_future(phota.enhance(URL, response_mode="urls")) for _ in range(8)
            ]
            waiting = [
                asyncio.ensure_future(phota.enhance(URL, response_mode="urls")) for _ in range(8)
            ]
            timed = asyncio.ensure_future(phota.enhance(URL, response_mode="urls", timeout=0.5))
            await asyncio.sleep(1)
            held = sends
            for call in waiting:
                call.cancel()
            with pytest.raises(ReadTimeoutError):
                await timed
            release.set()
            await asyncio.gather(*first)
            done = await enhance_all(phota, 100)
            return held, sends, done

    held, sent, done = run_virtual(main())
    assert held == 8
    assert sent == 8 + 100
    assert done == 100


def test_closing_the_client_releases_the_budget_of_a_call_waiting_on_a_pause() -> None:
    """A paid call that the client's closing fails while it waits on a ``Retry-After`` pause
    was never sent, so a shared budget gets its reservation back."""

    async def handler(request: Request) -> Response:
        return Response(429, {"retry-after": "30"}, b"{}")

    async def main() -> float:
        shared = phota_async.Budget(5.0)
        phota = PhotaClient(
            api_key="k",
            base_url="https://api.test",
            transport=MockTransport(handler),
            budget=shared,
        )
        with pytest.raises(RateLimitError):
            await phota.enhance(URL, response_mode="urls", timeout=1)
        call = asyncio.ensure_future(phota.enhance(URL, response_mode="urls"))
        await asyncio.sleep(1)
        await phota.aclose()
        with pytest.raises(phota_async.errors.PhotaError):
            await call
        return shared.spend.pending

    assert run_virtual(main()) == 0
