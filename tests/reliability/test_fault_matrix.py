"""Every fault against every kind of call: the outcome, and the ledger never shows a double charge.

One table drives the test: for each fault and call kind, either the call is retried and
succeeds ("ok"), or it raises the named error; and the number of charges the faulted step
leaves in the emulator's ledger is exactly the number expected.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from phota_async import MockTransport, PhotaClient, PollPolicy
from phota_async._protocol import Request, Response
from phota_async._transport import AiohttpTransport
from phota_async.errors import (
    ConnectError,
    GatewayTimeoutError,
    OutcomeUnknownError,
    ServerError,
)
from phota_async.testing import PhotaEmulator
from tests.helpers import until

# The client's read timeout for the faulted call under the "read timeout" fault, which holds
# the answer twice as long. Every other request (the setup calls, and every call under the
# other faults) gets a read timeout no answer of a loaded machine comes near, so that only the
# fault under test can time a request out.
READ_TIMEOUT = 1.0
LOOSE_READ_TIMEOUT = 60.0
KINDS = ("get", "delete", "paid", "submit", "poll", "download")
PATHS = {
    "get": "/profiles/*/status",
    "delete": "/profiles/*",
    "paid": "/generate",
    "submit": "/generate",
    "poll": "/jobs/*",
    "download": "/_emulator/outputs/*",
}
METHODS = {"delete": "DELETE", "get": "GET", "poll": "GET", "download": "GET"}
FAULTS: dict[str, dict[str, Any]] = {
    "429 with Retry-After": {"status": 429, "retry_after": 1},
    "429 without Retry-After": {"status": 429},
    "500": {"status": 500},
    "502 with an HTML body": {"status": 502, "body": "<html><h1>502 Bad Gateway</h1></html>"},
    "503": {"status": 503},
    "504": {"status": 504},
    "connection refused": {},
    "dropped before the body": {"drop": "before"},
    "dropped after the body": {"drop": "after"},
    "read timeout": {"delay": 2 * READ_TIMEOUT},
    "truncated body": {"truncate": True},
    "malformed JSON": {"malformed": True},
    "wrong content type": {"content_type": "text/plain"},
}
UNKNOWN = OutcomeUnknownError
# (outcome, charges made by the faulted step) per fault, in the order of KINDS.
EXPECTED: dict[str, tuple[tuple[Any, int], ...]] = {
    "429 with Retry-After": (("ok", 0), ("ok", 0), ("ok", 1), ("ok", 1), ("ok", 0), ("ok", 0)),
    "429 without Retry-After": (("ok", 0), ("ok", 0), ("ok", 1), ("ok", 1), ("ok", 0), ("ok", 0)),
    "500": (("ok", 0), ("ok", 0), (ServerError, 0), ("ok", 1), ("ok", 0), ("ok", 0)),
    "502 with an HTML body": (("ok", 0), ("ok", 0), (UNKNOWN, 0), ("ok", 1), ("ok", 0), ("ok", 0)),
    "503": (("ok", 0), ("ok", 0), ("ok", 1), ("ok", 1), ("ok", 0), ("ok", 0)),
    "504": (
        (GatewayTimeoutError, 0),
        (GatewayTimeoutError, 0),
        (GatewayTimeoutError, 0),
        ("ok", 1),
        ("ok", 0),
        (GatewayTimeoutError, 0),
    ),
    "connection refused": (("ok", 0), ("ok", 0), ("ok", 1), ("ok", 1), ("ok", 0), ("ok", 0)),
    "dropped before the body": (
        ("ok", 0),
        ("ok", 0),
        (UNKNOWN, 0),
        ("ok", 1),
        ("ok", 0),
        ("ok", 0),
    ),
    "dropped after the body": (("ok", 0), ("ok", 0), (UNKNOWN, 1), ("ok", 1), ("ok", 0), ("ok", 0)),
    "read timeout": (("ok", 0), ("ok", 0), (UNKNOWN, 1), ("ok", 1), ("ok", 0), ("ok", 0)),
    "truncated body": (("ok", 0), ("ok", 0), (UNKNOWN, 1), ("ok", 1), ("ok", 0), ("ok", 0)),
    "malformed JSON": (("ok", 0), ("ok", 0), (UNKNOWN, 1), ("ok", 1), ("ok", 0), ("ok", 0)),
    "wrong content type": (("ok", 0), ("ok", 0), ("ok", 1), ("ok", 1), ("ok", 0), ("ok", 0)),
}
CASES = [
    pytest.param(fault, kind, *EXPECTED[fault][i], id=f"{fault}-{kind}")
    for fault in FAULTS
    for i, kind in enumerate(KINDS)
]


class RefuseFirst(MockTransport):
    """The real transport, except that the first request meets a refused connection."""

    def __init__(self, inner: AiohttpTransport) -> None:
        super().__init__(self._answer)
        self.inner = inner
        self.refused = False

    async def _answer(self, request: Request) -> Response:
        raise AssertionError("unused")

    async def send(self, request: Request) -> Response:
        if not self.refused:
            self.refused = True
            raise ConnectError(f"{request.method} {request.endpoint}: cannot connect (refused)")
        return await self.inner.send(request)

    async def download(self, request: Request, dest: Path) -> Response:
        if not self.refused:
            self.refused = True
            raise ConnectError("download: cannot connect (refused)")
        return await self.inner.download(request, dest)

    async def aclose(self) -> None:
        await self.inner.aclose()


class TightenLater(MockTransport):
    """The real transport with a loose read timeout until ``tight`` is set, then a tight one."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.loose = AiohttpTransport(read_timeout=LOOSE_READ_TIMEOUT)
        self.strict = AiohttpTransport(read_timeout=READ_TIMEOUT)
        self.tight = False

    async def _answer(self, request: Request) -> Response:
        raise AssertionError("unused")

    async def send(self, request: Request) -> Response:
        return await (self.strict if self.tight else self.loose).send(request)

    async def download(self, request: Request, dest: Path) -> Response:
        return await (self.strict if self.tight else self.loose).download(request, dest)

    async def aclose(self) -> None:
        await self.loose.aclose()
        await self.strict.aclose()


async def prepare(
    kind: str, phota: PhotaClient, emu: PhotaEmulator, tmp: Path
) -> Callable[[], Awaitable[object]]:
    """Set up what the call needs (unfaulted) and return the call to fault."""
    if kind in ("get", "delete"):
        profile_id = emu.add_profile()
        if kind == "get":
            return lambda: phota.profiles.get(profile_id)
        return lambda: phota.profiles.delete(profile_id)
    if kind == "paid":
        return lambda: phota.generate("a lighthouse")
    if kind == "submit":
        return lambda: phota.jobs.submit_generate("a lighthouse")
    if kind == "poll":
        job = await phota.jobs.submit_generate("a lighthouse")
        return lambda: job.wait(timeout=20)
    result = await phota.generate("a lighthouse", response_mode="urls")
    return lambda: result.save(tmp)


@pytest.mark.parametrize(("fault", "kind", "outcome", "charges"), CASES)
async def test_fault_matrix(
    fault: str, kind: str, outcome: Any, charges: int, emu: PhotaEmulator, tmp_path: Path
) -> None:
    """The faulted call ends as the table says, and charges exactly as the table says."""
    refused = fault == "connection refused"
    timed = fault == "read timeout"
    transport: MockTransport | AiohttpTransport
    if refused:
        transport = RefuseFirst(AiohttpTransport(read_timeout=LOOSE_READ_TIMEOUT))
    elif timed:
        transport = TightenLater()
    else:
        transport = AiohttpTransport(read_timeout=LOOSE_READ_TIMEOUT)
    async with PhotaClient(
        api_key=emu.api_key,
        base_url=emu.base_url,
        transport=transport,
        poll=PollPolicy().scaled(0.01),
    ) as phota:
        if isinstance(transport, RefuseFirst):
            transport.refused = True  # the setup calls connect normally
        call = await prepare(kind, phota, emu, tmp_path)
        before = len(emu.charges())
        if isinstance(transport, RefuseFirst):
            transport.refused = False
        else:
            if isinstance(transport, TightenLater):
                transport.tight = True
            emu.add_fault(PATHS[kind], method=METHODS.get(kind), **FAULTS[fault])
        if outcome == "ok":
            await call()
        else:
            with pytest.raises(outcome):
                await call()
        # The server finishes work the client gave up on: count charges once it has answered.
        await until(
            lambda: all(
                r["status"] is not None
                for r in emu.requests
                if str(r["fault"]).startswith("delay=")
            ),
            "the delayed request to be answered",
        )
    assert len(emu.charges()) - before == charges
    if kind == "submit" and outcome == "ok":
        assert len(emu.jobs()) == 1
    if kind == "download" and outcome == "ok":
        saved = list(tmp_path.iterdir())
        assert [p.suffix for p in saved] == [".jpg"]
        assert saved[0].read_bytes()[:3] == b"\xff\xd8\xff"
    assert not [p for p in tmp_path.rglob("*.part")]
