"""The API key never appears in a repr, a str, a log line at any level, an error or its notes."""

from __future__ import annotations

import logging
import traceback

import pytest

from phota_async import PhotaClient
from phota_async.errors import PhotaError
from phota_async.testing import PhotaEmulator
from tests.conftest import jpeg_bytes

KEY = "sk_live_TOPSECRET_4242"


async def test_key_absent_everywhere_even_when_echoed(caplog: pytest.LogCaptureFixture) -> None:
    """A server that echoes the key into error bodies still cannot make the SDK print it."""
    caplog.set_level(logging.DEBUG)
    async with PhotaEmulator(api_key=KEY, max_output_side=64) as emu:
        echo = {"code": "ECHO", "detail": "bad", "request_id": "req_1"}
        emu.add_fault("/profiles/ids", status=400, body=echo)
        emu.add_fault("/generate", status=500, body="<html>upstream</html>")
        emu.add_fault("/enhance", drop="after")
        texts: list[str] = []
        async with PhotaClient(api_key=KEY, base_url=emu.base_url) as phota:
            texts += [repr(phota), str(phota)]
            for call in (
                phota.profiles.list(),
                phota.generate("x"),
                phota.enhance(jpeg_bytes()),
                phota.profiles.get("../etc"),
            ):
                with pytest.raises(PhotaError) as info:
                    await call
                error = info.value
                texts += [str(error), repr(error), *getattr(error, "__notes__", [])]
                texts.append("".join(traceback.format_exception(error)))
            result = await phota.generate("ok")
            texts += [repr(result), repr(result.outputs)]
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    assert caplog.records
    assert [t for t in texts if KEY in t] == []


def test_requests_hide_their_headers() -> None:
    """A Request's repr never shows headers or body."""
    from phota_async import _protocol as proto

    request = proto.Api("https://x", KEY).post("/generate", {"prompt": "x"}, "paid")
    assert KEY not in repr(request)


def test_request_builder_hides_the_key() -> None:
    """The per-account request builder shows its base URL but never the key."""
    from phota_async import _protocol as proto

    api = proto.Api("https://x", KEY)
    assert "https://x" in repr(api)
    assert KEY not in repr(api)
