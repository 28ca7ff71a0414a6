"""The emulator's routes: the Phota API under ``/v1/phota`` and its own under ``/_emulator``.

Handlers read and validate the request, then hand it to the service (``_service``) or read the
state; what they answer is raw JSON built here, never an SDK model.

Emulator decisions:

- ``/profiles/add`` with a number of URLs outside the tier's range answers 400
  ``INVALID_TRAINING_SET``; download or decode failures surface later as status ``ERROR``.
- The profile picture is available once validation has passed.
- ``POST /_emulator/uploads`` (with the API key) hands out a one-time PUT URL for the public
  file store; ``GET /_emulator/files/{key}`` and signed output downloads need no key.
- ``GET /_emulator/ledger`` and ``GET /_emulator/requests`` (with the API key, checked like the
  API's: 403 without, 401 when wrong) show the account's money and traffic as JSON:

  - ledger: ``{"balance", "net_spent", "entries": [{"kind": "charge"|"refund", "amount",
    "endpoint", "request_id", ...}]}``, every entry since the account was made;
  - requests: ``{"requests": [{"method", "path", "query", "request_id", "time", "fault",
    "status", "json"}], "dropped", "max_log", "log_ttl"}``, oldest first, the last ``limit``
    (query parameter, 1000 by default) of what the log still holds; ``dropped`` counts the
    entries retention let go. Headers are never logged; image data in bodies shows only as
    ``"<N chars>"``, upload tokens and URL signatures as ``"***"``, and the API key never.
"""

from __future__ import annotations

import hmac
import json
import secrets
from pathlib import Path
from typing import Any

from aiohttp import web

from . import _service
from ._billing import price
from ._failure import APIFailure
from ._middleware import JSON_LOG, REQUEST_ID, STATE_KEY, Handler, auth, outer, rate_limit, short
from ._rules import check_semantics, named_profiles
from ._schema import TIER_COUNTS, validate
from ._state import API_PREFIX, FILES, OUTPUTS, EmulatorState

STUDIO_ENDPOINTS = ("edit", "generate", "enhance", "remix")


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # RecursionError: nesting deeper than the parser goes ("[[[[..."), refused like bad JSON.
        position = exc.pos if isinstance(exc, json.JSONDecodeError) else 0
        raise APIFailure(
            422,
            "VALIDATION_ERROR",
            [{"loc": ["body", position], "msg": "JSON decode error", "type": "json_invalid"}],
        ) from exc


async def _read_json(request: web.Request, endpoint: str) -> dict[str, Any]:
    """The request's JSON body, logged (shortened) and validated against the endpoint's schema."""
    body = await _json_body(request)
    JSON_LOG.set(short(body))
    details = validate(endpoint, body)
    if details:
        raise APIFailure(422, "VALIDATION_ERROR", details)
    assert isinstance(body, dict)
    return body


def _studio_handler(endpoint: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        body = await _read_json(request, endpoint)
        check_semantics(endpoint, body, state.config.blocked_words)
        named = named_profiles(body, state.profiles, state.now())
        cost = price(endpoint, body, bool(named))
        if body.get("async"):
            handle = _service.submit(state, endpoint, body, named, cost, REQUEST_ID.get())
            return web.json_response(handle, status=202)
        result = await _service.call(state, endpoint, body, named, cost, REQUEST_ID.get())
        return web.json_response(result)

    return handle


async def _get_job(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    job_id = request.match_info["job_id"]
    state.prune()
    job = state.jobs.get(job_id)
    if job is None:
        # Never submitted, or finished and evicted (output_ttl, max_jobs): one answer for both.
        raise APIFailure(404, "JOB_NOT_FOUND", f"job {job_id[:80]} does not exist")
    return web.json_response(state.job_json(job))


async def _add_profile(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body = await _read_json(request, "profiles/add")
    tier = body.get("training_tier") or "standard"
    lo, hi = TIER_COUNTS[tier]
    urls: list[str] = body["image_urls"]
    if not lo <= len(urls) <= hi:
        raise APIFailure(
            400, "INVALID_TRAINING_SET", f"the {tier} tier needs {lo}-{hi} images, got {len(urls)}"
        )
    if any(not u.startswith(("http://", "https://")) for u in urls):
        raise APIFailure(400, "INVALID_TRAINING_SET", "image_urls must be http(s) URLs, not base64")
    record = _service.create_profile(state, urls, tier, body.get("tag"), REQUEST_ID.get())
    return web.json_response({"profile_id": record.id})


async def _list_profiles(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    tag = request.query.get("tag")
    profiles = [
        state.profile_json(p) for p in state.profiles.values() if tag is None or p.tag == tag
    ]
    return web.json_response(
        {"profiles": [{k: p[k] for k in ("profile_id", "status", "tag")} for p in profiles]}
    )


async def _profile_status(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    body = state.profile_json(state.get_profile(request.match_info["profile_id"]))
    del body["tag"]
    return web.json_response(body)


async def _profile_picture(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    record = state.get_profile(request.match_info["profile_id"])
    if record.subject() is None or record.picture is None:
        raise APIFailure(404, "PICTURE_NOT_AVAILABLE", f"profile {record.id} has no picture yet")
    return web.Response(body=record.picture, content_type="image/jpeg")


async def _delete_profile(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    record = state.get_profile(request.match_info["profile_id"])
    state.delete_profile(record.id)
    return web.json_response({"profile_id": record.id, "status": "ok"})


async def _webhook_secret(request: web.Request) -> web.StreamResponse:
    return web.json_response({"secret": request.app[STATE_KEY].webhook_secret})


def _require_key(request: web.Request, *, missing: int = 403) -> EmulatorState:
    """The state, once the request's ``X-API-Key`` is checked like the API checks it (the
    upload grant has always answered a missing key with 401, and still does)."""
    state = request.app[STATE_KEY]
    given = request.headers.get("X-API-Key")
    if given is None and missing == 403:
        raise APIFailure(403, "MISSING_API_KEY", "the X-API-Key header is missing")
    given = given or ""
    if not hmac.compare_digest(given.encode(), state.config.api_key.encode()):
        raise APIFailure(401, "INVALID_API_KEY", "the API key is not valid")
    return state


async def _ledger(request: web.Request) -> web.StreamResponse:
    """``GET /_emulator/ledger``: the balance and every charge and refund, in order."""
    state = _require_key(request)
    return web.json_response(
        {
            "balance": state.balance,
            "net_spent": state.billing.net_spent(),
            "entries": list(state.billing.entries),
        }
    )


async def _requests(request: web.Request) -> web.StreamResponse:
    """``GET /_emulator/requests?limit=N``: the last N entries of the request log, redacted."""
    state = _require_key(request)
    text = request.query.get("limit", "1000")
    if not (text.isascii() and text.isdigit()):  # "²" is a digit to str, not to int()
        raise APIFailure(400, "INVALID_LIMIT", f"limit must be a whole number, not {text[:40]!r}")
    state.prune_log()
    entries = list(state.requests)
    limit = int(text)
    shown = entries[len(entries) - limit :] if limit < len(entries) else entries
    body = json.dumps(
        {
            "requests": [_redacted(e) for e in shown],
            "dropped": state.requests_dropped,
            "max_log": state.config.max_log,
            "log_ttl": state.config.log_ttl,
        }
    )
    # The key is never logged; this is the backstop should a client put it in a body or query.
    body = body.replace(state.config.api_key, "***")
    return web.Response(text=body, content_type="application/json")


def _redacted(entry: dict[str, Any]) -> dict[str, Any]:
    query = {k: "***" if k in ("token", "sig") else v for k, v in entry["query"].items()}
    return {**entry, "query": query}


async def _new_upload(request: web.Request) -> web.StreamResponse:
    """Hand out a one-time PUT URL for the file store (emulator-only, needs the API key)."""
    state = _require_key(request, missing=401)
    key = secrets.token_hex(12)
    token = secrets.token_hex(16)
    state.upload_tokens[key] = token
    return web.json_response(
        {
            "upload_url": f"{state.origin}{FILES}{key}?token={token}",
            "url": f"{state.origin}{FILES}{key}",
        }
    )


async def _put_file(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    key = request.match_info["key"]
    token = state.upload_tokens.get(key)
    if token is None or not hmac.compare_digest(token, request.query.get("token", "")):
        raise APIFailure(403, "INVALID_UPLOAD_URL", "this upload URL is not valid")
    data = await request.read()
    del state.upload_tokens[key]
    content_type = request.headers.get("Content-Type", "application/octet-stream")
    await state.put_file_async(key, data, content_type)
    return web.json_response({"url": f"{state.origin}{FILES}{key}", "size": len(data)}, status=201)


async def _get_file(request: web.Request) -> web.StreamResponse:
    entry = request.app[STATE_KEY].file(request.match_info["key"])
    if entry is None:
        raise APIFailure(404, "NOT_FOUND", "no such file")
    return _bytes_response(*entry)


async def _get_output(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    data, content_type = state.signed_output(
        request.match_info["key"], request.query.get("expires", ""), request.query.get("sig", "")
    )
    return _bytes_response(data, content_type)


def _bytes_response(data: bytes | Path, content_type: str) -> web.StreamResponse:
    """Bytes held in memory, or a file of the state folder (sent without reading it here)."""
    if isinstance(data, Path):
        return web.FileResponse(data, headers={"Content-Type": content_type})
    return web.Response(body=data, content_type=content_type)


async def _on_shutdown(app: web.Application) -> None:
    app[STATE_KEY].stopping.set()


async def _on_cleanup(app: web.Application) -> None:
    await app[STATE_KEY].close()


def build_app(state: EmulatorState) -> web.Application:
    """The emulator's ``aiohttp.web`` application, serving ``state``."""
    app = web.Application(
        middlewares=[outer, auth, rate_limit], client_max_size=state.config.max_body_bytes
    )
    app[STATE_KEY] = state
    p = API_PREFIX
    for endpoint in STUDIO_ENDPOINTS:
        app.router.add_post(f"{p}/{endpoint}", _studio_handler(endpoint))
    app.router.add_get(f"{p}/jobs/{{job_id}}", _get_job)
    app.router.add_post(f"{p}/profiles/add", _add_profile)
    app.router.add_get(f"{p}/profiles/ids", _list_profiles)
    app.router.add_get(f"{p}/profiles/{{profile_id}}/status", _profile_status)
    app.router.add_get(f"{p}/profiles/{{profile_id}}/profile_picture", _profile_picture)
    app.router.add_delete(f"{p}/profiles/{{profile_id}}", _delete_profile)
    app.router.add_get(f"{p}/webhook-secret", _webhook_secret)
    app.router.add_post("/_emulator/uploads", _new_upload)
    app.router.add_get("/_emulator/ledger", _ledger)
    app.router.add_get("/_emulator/requests", _requests)
    app.router.add_put(FILES + "{key}", _put_file)
    app.router.add_get(FILES + "{key}", _get_file)
    app.router.add_get(OUTPUTS + "{key}.{fmt}", _get_output)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app
