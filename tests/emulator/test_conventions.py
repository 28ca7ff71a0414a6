"""Contract: auth, request ids, error shapes and body limits that every endpoint shares."""

from __future__ import annotations

import aiohttp
import pytest

from phota_async.testing import PhotaEmulator

P = "/v1/phota"


async def test_missing_key_is_403(anon: aiohttp.ClientSession) -> None:
    """A call without X-API-Key answers 403 with a coded error body."""
    async with anon.get(f"{P}/profiles/ids") as resp:
        body = await resp.json()
    assert resp.status == 403
    assert body["code"] == "MISSING_API_KEY"


async def test_wrong_key_is_401(emu: PhotaEmulator) -> None:
    """A call with a wrong key answers 401."""
    async with (
        aiohttp.ClientSession(headers={"X-API-Key": "nope"}) as session,
        session.get(f"{emu.base_url}/profiles/ids") as resp,
    ):
        body = await resp.json()
    assert resp.status == 401
    assert body["code"] == "INVALID_API_KEY"


async def test_every_response_has_a_request_id(http: aiohttp.ClientSession) -> None:
    """Success and error answers both carry X-Request-Id, and errors repeat it in the body."""
    async with http.get(f"{P}/profiles/ids") as ok:
        assert ok.headers["X-Request-Id"].startswith("req_")
    async with http.get(f"{P}/profiles/nope/status") as missing:
        body = await missing.json()
    assert missing.status == 404
    assert body["request_id"] == missing.headers["X-Request-Id"]


async def test_request_ids_are_unique(http: aiohttp.ClientSession) -> None:
    """Two calls never share a request id."""
    ids = set()
    for _ in range(5):
        async with http.get(f"{P}/profiles/ids") as resp:
            ids.add(resp.headers["X-Request-Id"])
    assert len(ids) == 5


async def test_validation_errors_use_the_fastapi_shape(http: aiohttp.ClientSession) -> None:
    """A schema failure answers 422 with detail entries that name the field in loc."""
    async with http.post(f"{P}/generate", json={"prompt": "x", "num_output_images": 0}) as resp:
        body = await resp.json()
    assert resp.status == 422
    assert body["detail"][0]["loc"] == ["body", "num_output_images"]
    assert {"msg", "type"} <= body["detail"][0].keys()
    assert body["request_id"] == resp.headers["X-Request-Id"]


async def test_missing_required_field_is_422(http: aiohttp.ClientSession) -> None:
    """Leaving out a required field answers 422 naming it as missing."""
    async with http.post(f"{P}/enhance", json={}) as resp:
        body = await resp.json()
    assert resp.status == 422
    assert body["detail"] == [
        {"loc": ["body", "image"], "msg": "Field required", "type": "missing"}
    ]


async def test_body_that_is_not_json_is_422(http: aiohttp.ClientSession) -> None:
    """A body that does not parse as JSON answers 422 json_invalid."""
    async with http.post(
        f"{P}/generate", data=b"{not json", headers={"Content-Type": "application/json"}
    ) as resp:
        body = await resp.json()
    assert resp.status == 422
    assert body["detail"][0]["type"] == "json_invalid"


async def test_json_array_body_is_422(http: aiohttp.ClientSession) -> None:
    """A JSON body that is not an object answers 422."""
    async with http.post(f"{P}/generate", json=["prompt"]) as resp:
        assert resp.status == 422


async def test_oversize_body_is_413() -> None:
    """A body over the configured limit answers 413 with a coded error."""
    async with (
        PhotaEmulator(max_body_bytes=1024) as emu,
        aiohttp.ClientSession(headers={"X-API-Key": emu.api_key}) as session,
        session.post(f"{emu.base_url}/enhance", json={"image": "A" * 4096}) as resp,
    ):
        body = await resp.json()
    assert resp.status == 413
    assert body["code"] == "PAYLOAD_TOO_LARGE"
    assert body["request_id"] == resp.headers["X-Request-Id"]


async def test_unknown_fields_are_ignored(http: aiohttp.ClientSession) -> None:
    """Old clients' extra fields (pro_mode, profile_ids: null on generate) are accepted."""
    payload = {"prompt": "a lake", "pro_mode": True, "profile_ids": None}
    async with http.post(f"{P}/generate", json=payload) as resp:
        assert resp.status == 200


async def test_json_content_type_on_get_is_accepted(http: aiohttp.ClientSession) -> None:
    """A body-less GET labelled application/json still answers 200."""
    async with http.get(f"{P}/profiles/ids", headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 200


async def test_unknown_route_is_a_coded_404(http: aiohttp.ClientSession) -> None:
    """An unknown path answers 404 in the same error shape."""
    async with http.get(f"{P}/nothing-here") as resp:
        body = await resp.json()
    assert resp.status == 404
    assert body["request_id"] == resp.headers["X-Request-Id"]


async def test_webhook_secret_is_stable(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """GET /webhook-secret answers the account's one secret."""
    async with http.get(f"{P}/webhook-secret") as first, http.get(f"{P}/webhook-secret") as second:
        a, b = await first.json(), await second.json()
    assert a == b == {"secret": emu.webhook_secret}


async def test_request_log_records_calls(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """The request log keeps method, path, status and a shortened JSON body."""
    async with http.post(f"{P}/enhance", json={"image": "Q" * 500}) as resp:
        assert resp.status == 400
    entry = emu.requests[-1]
    assert (entry["method"], entry["path"], entry["status"]) == ("POST", "/enhance", 400)
    assert len(entry["json"]["image"]) < 120


@pytest.mark.parametrize("balance", [0.0, 0.05])
async def test_exhausted_credit_is_402(balance: float) -> None:
    """A paid call beyond the prepaid balance answers 402 and charges nothing."""
    async with (
        PhotaEmulator(balance=balance, max_output_side=64) as emu,
        aiohttp.ClientSession(headers={"X-API-Key": emu.api_key}) as session,
        session.post(f"{emu.base_url}/generate", json={"prompt": "a cat"}) as resp,
    ):
        body = await resp.json()
        assert resp.status == 402
        assert body["code"] == "INSUFFICIENT_CREDIT"
        assert emu.ledger == []
