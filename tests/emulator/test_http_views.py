"""Contract: the ledger and the request log are readable over HTTP under ``/_emulator/``, with
the API key, and the request log never shows the key, image data, upload tokens or signatures.
"""

from __future__ import annotations

import aiohttp
import pytest

from phota_async.testing import PhotaEmulator
from tests.conftest import b64, jpeg_bytes
from tests.emulator.helpers import P


async def get_json(session: aiohttp.ClientSession, path: str, **params: str) -> tuple[int, dict]:
    async with session.get(path, params=params) as resp:
        return resp.status, await resp.json()


async def test_ledger_lists_every_charge_with_balance_and_net_spent(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """GET /_emulator/ledger shows the same entries, balance and net spend as the emulator."""
    async with http.post(f"{P}/enhance", json={"image": b64(jpeg_bytes())}) as resp:
        request_id = resp.headers["X-Request-Id"]
    status, body = await get_json(http, "/_emulator/ledger")
    assert status == 200
    assert body["entries"] == emu.ledger
    assert body["entries"][0]["request_id"] == request_id
    assert (body["balance"], body["net_spent"]) == (emu.balance, emu.net_spent())


@pytest.mark.parametrize("path", ["/_emulator/ledger", "/_emulator/requests"])
async def test_views_need_the_api_key(anon: aiohttp.ClientSession, path: str) -> None:
    """Without X-API-Key the views answer 403, with a wrong one 401, like the API."""
    assert (await get_json(anon, path))[1]["code"] == "MISSING_API_KEY"
    async with anon.get(path, headers={"X-API-Key": "wrong"}) as resp:
        assert (resp.status, (await resp.json())["code"]) == (401, "INVALID_API_KEY")


async def test_requests_view_lists_requests_with_status_and_request_id(
    http: aiohttp.ClientSession,
) -> None:
    """GET /_emulator/requests shows each request's method, path, status and request id."""
    async with http.get(f"{P}/profiles/nope/status") as resp:
        request_id = resp.headers["X-Request-Id"]
    status, body = await get_json(http, "/_emulator/requests")
    assert status == 200
    entry = next(r for r in body["requests"] if r["request_id"] == request_id)
    assert (entry["method"], entry["path"], entry["status"]) == (
        "GET",
        "/profiles/nope/status",
        404,
    )
    assert (body["dropped"], body["max_log"]) == (0, 10_000)


async def test_requests_view_limit_keeps_the_latest(http: aiohttp.ClientSession) -> None:
    """``?limit=2`` returns the two latest entries, oldest first."""
    for tag in ("a", "b", "c"):
        async with http.get(f"{P}/profiles/ids", params={"tag": tag}):
            pass
    _, body = await get_json(http, "/_emulator/requests", limit="2")
    assert [r["query"].get("tag") for r in body["requests"]] == ["c", None]


async def test_requests_view_refuses_a_bad_limit(http: aiohttp.ClientSession) -> None:
    """A limit that is not a whole number answers 400 INVALID_LIMIT."""
    status, body = await get_json(http, "/_emulator/requests", limit="-1")
    assert (status, body["code"]) == (400, "INVALID_LIMIT")


async def test_requests_view_refuses_a_non_ascii_digit_limit(http: aiohttp.ClientSession) -> None:
    """A limit of "²" (a digit to str.isdigit, not to int) answers 400, not 500."""
    status, body = await get_json(http, "/_emulator/requests", limit="²")
    assert (status, body["code"]) == (400, "INVALID_LIMIT")


async def test_requests_view_never_shows_key_image_data_or_url_secrets(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """Neither the key (even sent in a body), nor base64 images, tokens or signatures show."""
    image = b64(jpeg_bytes())
    body = {"image": image, "response_mode": "urls", "note": emu.api_key}
    async with http.post(f"{P}/enhance", json=body) as resp:
        url = (await resp.json())["download_urls"][0]
    async with http.get(url) as resp:
        assert resp.status == 200
    async with http.post("/_emulator/uploads") as resp:
        upload_url = (await resp.json())["upload_url"]
    async with http.put(upload_url, data=b"x"):
        pass
    async with http.get("/_emulator/requests") as resp:
        text = await resp.text()
    signature = url.split("sig=")[1]
    token = upload_url.split("token=")[1]
    for secret in (emu.api_key, image[:40], signature, token):
        assert secret not in text
    assert f"<{len(image)} chars>" in text


async def test_a_body_nested_too_deep_is_a_422_not_a_500(http: aiohttp.ClientSession) -> None:
    """A JSON body of 100,000 nested lists answers 422 json_invalid."""
    data = b"[" * 100_000
    headers = {"Content-Type": "application/json"}
    async with http.post(P + "/enhance", data=data, headers=headers) as resp:
        assert resp.status == 422
        assert (await resp.json())["detail"][0]["type"] == "json_invalid"
