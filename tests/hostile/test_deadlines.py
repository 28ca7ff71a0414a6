"""A hostile or broken server cannot make a call overrun its deadline, lose its request ids, or
hide whether a paid call may have been charged. Real waits (no testing switch), loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from phota_async import PhotaClient, PollPolicy, RetryPolicy
from phota_async import _profiles as profiles_module
from phota_async.errors import (
    InvalidRequestError,
    JobFailedError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitError,
    ReadTimeoutError,
    ResponseValidationError,
    ServiceUnavailableError,
)
from phota_async.testing import PhotaEmulator
from tests.conftest import jpeg_bytes, local_server

RESULT = {"known_subjects": {"counts": {}}, "images": [], "download_urls": []}
PROFILE = {"profile_id": "p1", "status": "READY", "message": None}
FAST = PollPolicy().scaled(0.01)  # polls every 10 ms at first: these tests time retries, not polls
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Hostile:
    """A loopback API whose routes are scripted handlers; counts the requests of each path."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.routes: dict[str, Handler] = {}
        self.release = asyncio.Event()  # handlers that hang wait for this (or the test's end)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.removeprefix("/v1/phota")
        self.hits[path] = self.hits.get(path, 0) + 1
        await request.read()
        return await self.routes[path](request)

    @contextlib.asynccontextmanager
    async def serve(self, **options: object) -> AsyncIterator[PhotaClient]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        async with (
            local_server(app, shutdown_timeout=0.1) as origin,
            PhotaClient(api_key="k", base_url=f"{origin}/v1/phota", **options) as client,  # type: ignore[arg-type]
        ):
            try:
                yield client
            finally:
                self.release.set()

    async def hang(self, _: web.Request) -> web.StreamResponse:
        await self.release.wait()
        return web.json_response(PROFILE)


async def until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until ``condition()`` holds."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def elapsed_since(started: float) -> float:
    return asyncio.get_running_loop().time() - started


# -- row 2: bad timeouts are refused and cannot disturb other calls ---------------------------


@pytest.mark.parametrize("value", [math.nan, -1.0, "1", True])
async def test_a_bad_timeout_is_refused_before_anything_is_sent(value: object) -> None:
    """timeout=nan, negative or not a number is InvalidRequestError naming it; nothing is sent."""
    server = Hostile()
    server.routes["/generate"] = lambda _: _json(RESULT)
    async with server.serve() as phota:
        with pytest.raises(InvalidRequestError) as info:
            await phota.generate("a cat", timeout=value)  # type: ignore[arg-type]
    assert info.value.field == "timeout"
    assert server.hits == {}


async def test_a_bad_timeout_on_create_is_refused_before_any_upload(
    emu: PhotaEmulator,
) -> None:
    """profiles.create(timeout=nan) is refused before its photos are uploaded or a call made."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
        with pytest.raises(InvalidRequestError, match="timeout"):
            await phota.profiles.create(
                [jpeg_bytes(i) for i in range(5)],
                tier="fast",
                uploader=_never_called,
                timeout=math.nan,
            )
    assert emu.requests == []


async def test_one_nan_call_cannot_turn_off_another_calls_deadline() -> None:
    """While a nan call is refused, a concurrent 2 s call still ends at its deadline."""
    server = Hostile()
    server.routes["/profiles/p1/status"] = server.hang
    async with server.serve() as phota:
        bounded = asyncio.create_task(phota.profiles.get("p1", timeout=2))
        await until(lambda: server.hits.get("/profiles/p1/status") == 1)
        with pytest.raises(InvalidRequestError):
            await phota.profiles.get("p1", timeout=math.nan)
        with pytest.raises(ReadTimeoutError, match=r"\b2 s deadline"):
            await asyncio.wait_for(bounded, 10)


async def test_a_deadline_passed_while_uploading_creates_nothing(emu: PhotaEmulator) -> None:
    """create() whose uploads outlast its deadline raises ReadTimeoutError; nothing is created."""

    async def slow(data: bytes | Path, name: str, content_type: str) -> str:
        await asyncio.sleep(30)
        raise AssertionError("the upload should have been cut off")

    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
        with pytest.raises(ReadTimeoutError, match="while uploading the training photos"):
            await phota.profiles.create(
                [jpeg_bytes(i) for i in range(5)], tier="fast", uploader=slow, timeout=1
            )
    assert emu.profiles() == []


# -- row 3: the deadline lives in the retry layer --------------------------------------------


async def test_a_retry_after_longer_than_the_deadline_is_not_slept() -> None:
    """A 429 with Retry-After 60 s inside a 10 s deadline is raised at once (not at the
    deadline) with its request id."""
    server = Hostile()
    server.routes["/generate"] = lambda _: _json(
        {"code": "RATE_LIMITED", "detail": "slow down"},
        429,
        {"Retry-After": "60", "X-Request-Id": "req-429"},
    )
    async with server.serve() as phota:
        started = asyncio.get_running_loop().time()
        with pytest.raises(RateLimitError) as info:
            await phota.generate("a cat", timeout=10)
        took = elapsed_since(started)
    assert info.value.request_ids == ("req-429",)
    assert "retries stopped by the call's deadline" in str(info.value)
    assert server.hits == {"/generate": 1}
    assert took < 5  # half the deadline: it neither waited out the pause nor the deadline


async def test_a_retry_after_that_fits_the_deadline_is_honoured() -> None:
    """A 429 with Retry-After 0.2 s inside a 5 s deadline is waited out and retried."""
    server = Hostile()
    answers = iter([(429, {"Retry-After": "0.2"}), (200, {})])

    async def generate(_: web.Request) -> web.StreamResponse:
        code, headers = next(answers)
        return await _json(RESULT if code == 200 else {"code": "RATE_LIMITED"}, code, headers)

    server.routes["/generate"] = generate
    async with server.serve() as phota:
        started = asyncio.get_running_loop().time()
        await phota.generate("a cat", timeout=5)
        took = elapsed_since(started)
    assert server.hits == {"/generate": 2}
    assert took >= 0.2


async def test_a_retry_after_date_in_minus_zero_zone_is_a_rate_limit_error() -> None:
    """A 429 whose Retry-After is an HTTP date in zone -0000 is honoured, not a TypeError."""
    server = Hostile()
    server.routes["/profiles/p1/status"] = lambda _: _json(
        {"code": "RATE_LIMITED", "detail": "slow down"},
        429,
        {"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"},
    )
    async with server.serve(retry=RetryPolicy(max_attempts=2)) as phota:
        with pytest.raises(RateLimitError) as info:
            await phota.profiles.get("p1", timeout=10)
    assert info.value.retry_after == 0.0
    assert server.hits == {"/profiles/p1/status": 2}


async def test_a_huge_retry_after_on_a_job_poll_is_capped() -> None:
    """A poll answered 503 with Retry-After 1e308 waits only max_retry_after before polling again."""
    server = Hostile()
    polls: list[int] = []
    done = {"job_id": "j1", "status": "SUCCEEDED", "result": RESULT, "error": None}

    async def job(_: web.Request) -> web.StreamResponse:
        polls.append(1)
        if len(polls) == 1:
            return await _json({**done, "status": "RUNNING", "result": None})
        if len(polls) == 2:
            busy = {"code": "UNAVAILABLE", "detail": "busy"}
            return await _json(busy, 503, {"Retry-After": "1e308"})
        return await _json(done)

    server.routes["/jobs/j1"] = job
    async with server.serve(
        retry=RetryPolicy(max_attempts=1, max_retry_after=0.05), poll=FAST
    ) as phota:
        job = await phota.jobs.get("j1")
        await job.wait(timeout=10)
    assert len(polls) == 3


async def test_backoff_stops_at_the_deadline_with_every_request_id() -> None:
    """Repeated 503s end before the deadline with the last 503 and every attempt's id."""
    server = Hostile()
    count = iter(range(100))

    async def unavailable(_: web.Request) -> web.StreamResponse:
        return await _json({"code": "DOWN"}, 503, {"X-Request-Id": f"req-{next(count)}"})

    server.routes["/profiles/p1/status"] = unavailable
    policy = RetryPolicy(max_attempts=20, initial_backoff=0.05, max_backoff=0.2)
    async with server.serve(retry=policy) as phota:
        with pytest.raises(ServiceUnavailableError) as info:
            await phota.profiles.get("p1", timeout=2.0)
    hits = server.hits["/profiles/p1/status"]
    assert 1 < hits < 20
    assert info.value.request_ids == tuple(f"req-{i}" for i in range(hits))
    assert info.value.attempts == hits
    assert "deadline" in str(info.value)


async def test_a_later_attempt_cut_short_keeps_the_earlier_request_ids() -> None:
    """When the deadline cuts a retry short, the error keeps the first attempt's id and error."""
    server = Hostile()
    answers = iter(["503", "hang"])

    async def status(request: web.Request) -> web.StreamResponse:
        if next(answers) == "503":
            return await _json({"code": "DOWN"}, 503, {"X-Request-Id": "req-first"})
        return await server.hang(request)

    server.routes["/profiles/p1/status"] = status
    async with server.serve(retry=RetryPolicy(initial_backoff=0.01)) as phota:
        with pytest.raises(ReadTimeoutError) as info:
            await phota.profiles.get("p1", timeout=2)
    assert info.value.request_ids == ("req-first",)
    assert info.value.attempts == 2
    assert "503" in str(info.value)


async def test_a_deadline_passed_in_the_queue_is_not_an_unknown_outcome() -> None:
    """A paid call whose deadline passes while queued for a slot says nothing was sent."""
    server = Hostile()
    server.routes["/profiles/p1/status"] = server.hang
    server.routes["/generate"] = lambda _: _json(RESULT)
    async with server.serve(max_concurrency=1) as phota:
        holder = asyncio.create_task(phota.profiles.get("p1", timeout=30))
        await until(lambda: server.hits.get("/profiles/p1/status") == 1)
        with pytest.raises(ReadTimeoutError) as info:
            await phota.generate("a cat", timeout=0.3)
        holder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await holder
    assert "queued for a concurrency slot" in str(info.value)
    assert "nothing was sent" in str(info.value)
    assert "/generate" not in server.hits


async def test_a_deadline_passed_after_a_paid_call_was_sent_is_an_unknown_outcome() -> None:
    """A paid call sent but unanswered at its deadline raises OutcomeUnknownError."""
    server = Hostile()
    server.routes["/generate"] = server.hang
    async with server.serve() as phota:
        with pytest.raises(OutcomeUnknownError, match="waiting for the answer"):
            await phota.generate("a cat", timeout=2)
    assert server.hits == {"/generate": 1}


async def test_an_input_deleted_before_its_body_is_sent_is_a_local_error(
    tmp_path: Path,
) -> None:
    """A checked input that vanishes before its bytes are sent is InvalidRequestError naming it."""
    photo = tmp_path / "vanishing.jpg"
    photo.write_bytes(jpeg_bytes(3))
    server = Hostile()
    server.routes["/profiles/p1/status"] = server.hang
    server.routes["/enhance"] = lambda _: _json(RESULT)
    async with server.serve(max_concurrency=1) as phota:
        holder = asyncio.create_task(phota.profiles.get("p1", timeout=30))
        await until(lambda: server.hits.get("/profiles/p1/status") == 1)
        call = asyncio.create_task(phota.enhance(photo, timeout=10))
        await until(lambda: len(phota._session.bound._waiters) == 1)
        photo.unlink()
        server.release.set()
        with pytest.raises(InvalidRequestError) as info:
            await call
        await holder
    assert "vanishing.jpg" in str(info.value)
    assert not isinstance(info.value, OutcomeUnknownError)


# -- row 4: a paid call that may have been processed says so ---------------------------------


async def test_a_huge_response_header_after_a_paid_post_is_an_unknown_outcome() -> None:
    """A 20 KB response header after a paid POST raises OutcomeUnknownError, sent once."""
    server = Hostile()
    server.routes["/generate"] = lambda _: _json(RESULT, 200, {"X-Pad": "a" * 20_000})
    async with server.serve() as phota:
        with pytest.raises(OutcomeUnknownError, match="may have been processed"):
            await phota.generate("a cat")
    assert server.hits == {"/generate": 1}


async def test_a_huge_response_header_on_a_get_is_retried() -> None:
    """A 20 KB response header on a GET is a broken answer, and the GET is sent again."""
    server = Hostile()
    pads = iter(["a" * 20_000, "b"])
    server.routes["/profiles/p1/status"] = lambda _: _json(PROFILE, 200, {"X-Pad": next(pads)})
    async with server.serve(retry=RetryPolicy(initial_backoff=0.01)) as phota:
        assert (await phota.profiles.get("p1")).id == "p1"
    assert server.hits == {"/profiles/p1/status": 2}


async def test_a_bad_status_line_after_a_paid_post_is_an_unknown_outcome() -> None:
    """A garbled status line after a paid POST raises OutcomeUnknownError, sent once."""
    hits = 0

    async def garble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hits
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        hits += 1
        writer.write(b"HTTP/1.1 2OO FINE\r\nContent-Length: 2\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with PhotaClient(api_key="k", base_url=f"http://127.0.0.1:{port}/v1/phota") as phota:
            with pytest.raises(OutcomeUnknownError, match="may have been processed"):
                await phota.generate("a cat")
    finally:
        server.close()
        await server.wait_closed()
    assert hits == 1


async def test_a_lost_creation_is_not_matched_to_a_profile_with_another_tag() -> None:
    """When the tag look-up lists only a profile with another tag, create raises OutcomeUnknownError."""
    server = Hostile()

    async def lost(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    old = {"profile_id": "old", "status": "READY", "tag": "someone-else"}
    server.routes["/profiles/add"] = lost
    server.routes["/profiles/ids"] = lambda _: _json({"profiles": [old]})
    urls = [f"https://example.com/{i}.jpg" for i in range(5)]
    async with server.serve() as phota:
        with pytest.raises(OutcomeUnknownError):
            await phota.profiles.create(urls, tier="fast", timeout=10)
    assert server.hits["/profiles/ids"] == 1


async def test_another_jobs_answer_to_a_poll_is_not_taken_as_the_result() -> None:
    """A poll of job j1 answered with job j2's SUCCEEDED snapshot is polled past, not returned."""
    server = Hostile()
    answers = [
        {"job_id": "j1", "status": "RUNNING"},
        {"job_id": "j2", "status": "SUCCEEDED", "result": RESULT},
        {"job_id": "j1", "status": "FAILED", "error": {"code": "BOOM", "detail": "x"}},
    ]
    server.routes["/jobs/j1"] = lambda _: _json(answers.pop(0))
    async with server.serve(retry=RetryPolicy(max_attempts=1), poll=FAST) as phota:
        job = await phota.jobs.get("j1")
        with pytest.raises(JobFailedError):
            await job.wait(timeout=30)


async def test_another_profiles_status_is_not_taken_for_this_one() -> None:
    """profiles.get("p1") answered with the status of profile p2 is a ResponseValidationError."""
    server = Hostile()
    server.routes["/profiles/p1/status"] = lambda _: _json({**PROFILE, "profile_id": "p2"})
    async with server.serve(retry=RetryPolicy(max_attempts=1)) as phota:
        with pytest.raises(ResponseValidationError, match="about profile p2"):
            await phota.profiles.get("p1")


async def test_a_job_submit_whose_answers_were_all_lost_names_its_key(
    emu: PhotaEmulator,
) -> None:
    """enhance(via_job=True) losing every submit answer raises OutcomeUnknownError with the key,
    and resubmitting with that key returns the one job, charged once."""
    emu.add_fault("/enhance", drop="after", times=4)
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, retry=RetryPolicy(initial_backoff=0.01)
    ) as phota:
        with pytest.raises(OutcomeUnknownError) as info:
            await phota.enhance(jpeg_bytes(4), via_job=True, timeout=30)
        key = info.value.client_request_id
        assert key is not None
        assert info.value.attempts == 4
        job = await phota.jobs.submit_enhance(jpeg_bytes(4), client_request_id=key)
    assert [j["job_id"] for j in emu.jobs()] == [job.id]
    assert len(emu.charges()) == 1


async def test_a_job_submit_with_one_lost_answer_is_retried_under_its_key(
    emu: PhotaEmulator,
) -> None:
    """A submit whose first answer was lost is sent again with the same key: one job."""
    emu.add_fault("/enhance", drop="after")
    async with PhotaClient(
        api_key=emu.api_key,
        base_url=emu.base_url,
        retry=RetryPolicy(initial_backoff=0.01),
        poll=PollPolicy().scaled(0.02),
    ) as phota:
        await phota.enhance(jpeg_bytes(5), via_job=True, timeout=30)
    assert len(emu.jobs()) == 1
    assert len(emu.charges()) == 1


async def test_a_profile_whose_creation_answer_was_lost_is_found_by_its_tag(
    emu: PhotaEmulator,
) -> None:
    """create() without a tag finds the profile whose answer was lost by its generated tag."""
    emu.add_fault("/profiles/add", drop="after")
    urls = [emu.store_file(jpeg_bytes(i), "image/jpeg") for i in range(5)]
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
        profile = await phota.profiles.create(urls, tier="fast")
    [stored] = emu.profiles()
    assert profile.id == stored["profile_id"]
    assert profile.tag is not None
    assert profile.tag.startswith("phota-")
    assert stored["tag"] == profile.tag


async def test_a_lost_creation_with_the_callers_tag_names_the_tag(emu: PhotaEmulator) -> None:
    """create(tag=...) whose answer was lost raises OutcomeUnknownError carrying that tag."""
    emu.add_fault("/profiles/add", drop="after")
    urls = [emu.store_file(jpeg_bytes(i), "image/jpeg") for i in range(5)]
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
        with pytest.raises(OutcomeUnknownError) as info:
            await phota.profiles.create(urls, tier="fast", tag="family")
        [found] = await phota.profiles.list(tag=info.value.tag)
    assert info.value.tag == "family"
    assert "profiles.list(tag='family')" in str(info.value)
    assert found.id == emu.profiles()[0]["profile_id"]


async def test_a_404_right_after_creation_is_polled_through(emu: PhotaEmulator) -> None:
    """create(wait=True) whose first status poll answers 404 goes on and returns the profile."""
    emu.add_fault("/profiles/*/status", status=404, times=2)
    urls = [emu.store_file(jpeg_bytes(i), "image/jpeg") for i in range(5)]
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, poll=PollPolicy().scaled(0.01)
    ) as phota:
        profile = await phota.profiles.create(urls, tier="fast", wait=True, timeout=30)
    assert profile.is_ready
    assert profile.id == emu.profiles()[0]["profile_id"]


async def test_a_created_profile_never_found_is_named_in_the_error(
    emu: PhotaEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the new profile's status stays 404 past the grace period, the error names its id."""
    monkeypatch.setattr(profiles_module, "CREATED_NOT_FOUND_GRACE", 0.3)
    emu.add_fault("/profiles/*/status", status=404, times=1000)
    urls = [emu.store_file(jpeg_bytes(i), "image/jpeg") for i in range(5)]
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, poll=PollPolicy().scaled(0.01)
    ) as phota:
        with pytest.raises(NotFoundError) as info:
            await phota.profiles.create(urls, tier="fast", wait=True, timeout=30)
    assert emu.profiles()[0]["profile_id"] in str(info.value)


# -- helpers ---------------------------------------------------------------------------------


async def _json(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    return web.json_response(data, status=status, headers=headers)


async def _never_called(data: bytes | Path, name: str, content_type: str) -> str:
    raise AssertionError("nothing may be uploaded")
