"""Client configuration and lifecycle: keys, closing, event loops, and secrets kept secret."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from phota_async import PhotaClient
from phota_async.errors import InvalidRequestError, PhotaError
from phota_async.testing import PhotaEmulator


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no key anywhere, construction names api_key and PHOTA_API_KEY."""
    monkeypatch.delenv("PHOTA_API_KEY", raising=False)
    monkeypatch.delenv("PHOTA_KEY", raising=False)
    with pytest.raises(InvalidRequestError, match="PHOTA_API_KEY"):
        PhotaClient()


def test_key_and_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """PHOTA_API_KEY and PHOTA_BASE_URL configure a client built with no arguments."""
    monkeypatch.setenv("PHOTA_API_KEY", "env-key")
    monkeypatch.setenv("PHOTA_BASE_URL", "http://127.0.0.1:9/v1/phota/")
    client = PhotaClient()
    assert client.base_url == "http://127.0.0.1:9/v1/phota"
    assert client._session.api.headers["X-API-Key"] == "env-key"


def test_phota_key_is_a_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """PHOTA_KEY is read when PHOTA_API_KEY is absent."""
    monkeypatch.delenv("PHOTA_API_KEY", raising=False)
    monkeypatch.setenv("PHOTA_KEY", "old-key")
    assert PhotaClient()._session.api.headers["X-API-Key"] == "old-key"


def test_repr_hides_the_key() -> None:
    """repr and str of a client never show the key."""
    client = PhotaClient(api_key="sk_live_topsecret")
    assert "topsecret" not in repr(client)
    assert "topsecret" not in str(client)


async def test_closing_twice_is_harmless(emu: PhotaEmulator) -> None:
    """aclose() may be called again after the context manager closed the client."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
        await phota.profiles.list()
    await phota.aclose()


async def test_closed_client_is_a_clear_error(emu: PhotaEmulator) -> None:
    """Using a closed client raises PhotaError saying so."""
    phota = PhotaClient(api_key=emu.api_key, base_url=emu.base_url)
    await phota.aclose()
    with pytest.raises(PhotaError, match="closed"):
        await phota.profiles.list()


def test_second_event_loop_is_a_clear_error() -> None:
    """A client used from a second event loop raises PhotaError naming the loop."""
    with PhotaEmulator() as emu:
        phota = PhotaClient(api_key=emu.api_key, base_url=emu.base_url)

        async def first() -> None:
            await phota.profiles.list()

        async def second() -> None:
            await phota.profiles.list()

        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(first())
            errors: list[BaseException] = []

            def other_thread() -> None:
                try:
                    asyncio.run(second())
                except BaseException as exc:
                    errors.append(exc)

            thread = threading.Thread(target=other_thread)
            thread.start()
            thread.join()
            assert isinstance(errors[0], PhotaError)
            assert "another event loop" in str(errors[0])
        finally:
            loop.run_until_complete(phota.aclose())
            loop.close()


async def test_key_never_reaches_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    """Even when the server echoes the key, it appears in no log line, error or repr."""
    key = "sk_live_SUPERSECRET_0123"
    async with PhotaEmulator(api_key=key) as emu:
        emu.add_fault("/profiles/ids", status=400, body={"code": "X", "detail": "bad"}, times=1)
        emu.add_fault(
            "/generate", status=500, body={"code": "ECHO", "detail": "you sent key"}, times=1
        )
        with caplog.at_level(logging.DEBUG, logger="phota_async"):
            async with PhotaClient(api_key=key, base_url=emu.base_url) as phota:
                for call in (
                    phota.profiles.list(),
                    phota.generate("x"),
                    phota.profiles.get("nope"),
                ):
                    with pytest.raises(PhotaError) as info:
                        await call
                    assert key not in str(info.value)
                    assert key not in repr(info.value)
                result = await phota.generate("ok")
                assert key not in repr(result)
    assert caplog.records, "debug logging produced no lines"
    assert all(key not in record.getMessage() for record in caplog.records)


async def test_one_debug_line_per_attempt(
    emu: PhotaEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Each attempt logs one debug line with method, path, status and request id."""
    emu.add_fault("/profiles/ids", status=503)
    with caplog.at_level(logging.DEBUG, logger="phota_async"):
        async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
            await phota.profiles.list()
    attempts = [
        r.getMessage()
        for r in caplog.records
        if "attempt" in r.getMessage() and "->" in r.getMessage()
    ]
    assert len(attempts) == 2
    assert "GET /profiles/ids attempt 1 -> 503 req_" in attempts[0]


async def test_concurrency_limit_bounds_requests_in_flight(emu: PhotaEmulator) -> None:
    """No more than max_concurrency requests are in flight at once."""
    emu.add_fault("/profiles/ids", delay=0.05, times=20)
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, max_concurrency=3) as phota:
        in_flight = 0
        peak = 0
        original = phota._session.transport.send

        async def counting(request):  # type: ignore[no-untyped-def]
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await original(request)
            finally:
                in_flight -= 1

        phota._session.transport.send = counting  # type: ignore[method-assign]
        await asyncio.gather(*(phota.profiles.list() for _ in range(12)))
    assert peak == 3
