"""The emulator's HTTP edge: request ids, the request log, API-key checks, scripted faults and
error bodies, as ``aiohttp.web`` middlewares.

Emulator decisions:

- Error bodies are ``{"code", "detail", "request_id"}``; a 422 is FastAPI's ``{"detail": [...]}``
  plus ``request_id``. Every answer carries ``X-Request-Id``.
- ``latency`` delays every answer on API routes *after* the request has been processed (and
  charged) and *before* the answer is sent, like a server far away: the window in which a
  client can die knowing nothing of a charge is as wide as the latency. It is measured on the
  emulator's clock. Scripted status faults (a proxy answering) are not delayed; a shutting-down
  emulator cuts the remaining delays short.
- A ``delay`` fault waits on the emulator's clock too, and is cut short on shutdown.
- The rate limit (``_ratelimit``) comes after the key check: a refused request is logged with
  its 429 (or 503) like any other, and never reaches a handler, so it is never charged.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import itertools
import json
import math
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn

from aiohttp import web

from ._failure import APIFailure
from ._faults import Fault
from ._state import API_PREFIX, EmulatorState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATE_KEY = web.AppKey("phota_state", EmulatorState)
# Per-request values: each request runs in its own task, hence its own context.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
JSON_LOG: contextvars.ContextVar[Any] = contextvars.ContextVar("json_log", default=None)


# A logged body keeps this many items of each list and object, this many levels deep: a 64 MB
# body of small numbers would otherwise be one log entry of hundreds of megabytes.
LOG_ITEMS = 32
LOG_DEPTH = 8


def short(value: Any, limit: int = 80, depth: int = LOG_DEPTH) -> Any:
    """Shrink a JSON value so the request log stays small and shows no image data: prose (with
    spaces) and URLs keep their first ``limit`` characters, anything else (base64) only its
    length; lists and objects keep their first ``LOG_ITEMS`` items, ``LOG_DEPTH`` levels deep."""
    if isinstance(value, str) and len(value) > limit:
        if " " in value or value.startswith(("http://", "https://")):
            return value[:limit] + f"...<{len(value)} chars>"
        return f"<{len(value)} chars>"
    if isinstance(value, (list, dict)) and depth <= 0:
        return f"<{len(value)} items>"
    if isinstance(value, list):
        kept = [short(v, limit, depth - 1) for v in value[:LOG_ITEMS]]
        if len(value) > LOG_ITEMS:
            kept.append(f"...<{len(value)} items>")
        return kept
    if isinstance(value, dict):
        shown = {
            short(k, limit): short(v, limit, depth - 1)
            for k, v in itertools.islice(value.items(), LOG_ITEMS)
        }
        if len(value) > LOG_ITEMS:
            shown["..."] = f"<{len(value)} items>"
        return shown
    return value


def error_response(
    request_id: str, status: int, code: str, detail: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An error answer in Phota's shape."""
    if status == 422 and isinstance(detail, list):
        body: dict[str, Any] = {"detail": detail, "request_id": request_id}
    else:
        body = {"code": code, "detail": detail, "request_id": request_id}
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def outer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, request log, scripted faults and error bodies for every route."""
    state = request.app[STATE_KEY]
    request_id = "req_" + secrets.token_hex(8)
    REQUEST_ID.set(request_id)
    JSON_LOG.set(None)
    path = request.path[len(API_PREFIX) :] if request.path.startswith(API_PREFIX) else request.path
    entry: dict[str, Any] = {
        "method": request.method,
        "path": path,
        "query": dict(request.query),
        "request_id": request_id,
        "time": state.unix(),
        "fault": None,
        "status": None,
        "json": None,
    }
    state.log_request(entry)
    fault = state.faults.take(request.method, path)
    if fault is not None:
        entry["fault"] = _fault_name(fault)
        if fault.status is not None:
            entry["status"] = fault.status
            entry["json"] = await _peek_json(request)
            return _fault_response(request_id, fault)
        if fault.drop == "before":
            _drop(request)
        if fault.delay is not None:
            # Like a real server: the body is received first, then the slow work happens,
            # and it is finished even if the client has given up meanwhile. A stopping
            # emulator cuts the wait short instead of holding its shutdown for the delay.
            if request.can_read_body:
                await request.read()
            await state.hold(fault.delay)
    try:
        response = await handler(request)
    except APIFailure as failure:
        response = error_response(
            request_id, failure.status, failure.code, failure.detail, failure.headers
        )
    except ConnectionResetError:
        # The client went away mid-request (a cancelled call): nobody is left to answer.
        entry["status"] = "disconnected"
        raise asyncio.CancelledError from None
    except web.HTTPRequestEntityTooLarge as exc:
        response = error_response(
            request_id, 413, "PAYLOAD_TOO_LARGE", exc.text or "request body too large"
        )
    except web.HTTPException as exc:
        code = (exc.reason or "error").upper().replace(" ", "_")
        response = error_response(request_id, exc.status, code, exc.text or exc.reason)
    entry["status"] = response.status
    entry["json"] = JSON_LOG.get()
    response.headers["X-Request-Id"] = request_id
    if request.path.startswith(API_PREFIX):
        # Processed and charged already: the client may vanish meanwhile, the charge stands.
        await state.answer_latency()
    if fault is not None and fault.processes and fault.delay is None:
        return await _spoil(request, response, fault)
    return response


async def _peek_json(request: web.Request) -> Any:
    """The shortened JSON body of a request answered by a fault, for the request log."""
    if not request.can_read_body:
        return None
    try:
        return short(json.loads(await request.read()))
    except (ValueError, web.HTTPException):
        return None


def _fault_name(fault: Fault) -> str:
    for name in ("status", "delay", "drop", "content_type"):
        if getattr(fault, name) is not None:
            return f"{name}={getattr(fault, name)}"
    return "truncate" if fault.truncate else "malformed"


def _fault_response(request_id: str, fault: Fault) -> web.Response:
    headers = {"X-Request-Id": request_id}
    if fault.retry_after is not None:
        headers["Retry-After"] = f"{fault.retry_after:g}"
    assert fault.status is not None
    if fault.body is None:
        return error_response(
            request_id, fault.status, "INJECTED_FAULT", f"injected {fault.status}", headers
        )
    if isinstance(fault.body, dict):
        return web.json_response(fault.body, status=fault.status, headers=headers)
    data = fault.body.encode() if isinstance(fault.body, str) else fault.body
    return web.Response(body=data, status=fault.status, headers=headers, content_type="text/html")


def _drop(request: web.Request) -> NoReturn:
    """Close the connection without an answer; aiohttp treats the cancelled handler as gone."""
    if request.transport is not None:
        request.transport.close()
    raise asyncio.CancelledError


async def _spoil(
    request: web.Request, response: web.StreamResponse, fault: Fault
) -> web.StreamResponse:
    """Mangle the answer of a request that was processed: drop, truncate, malform, mislabel."""
    if fault.drop == "after":
        _drop(request)
    body = response.body if isinstance(response, web.Response) else b""
    data = bytes(body) if isinstance(body, (bytes, bytearray)) else b""
    if fault.malformed:
        return web.Response(
            body=b'{"images": [not json',
            status=200,
            content_type="application/json",
            headers={"X-Request-Id": REQUEST_ID.get()},
        )
    if fault.content_type is not None:
        return web.Response(
            body=data,
            status=response.status,
            headers={"X-Request-Id": REQUEST_ID.get(), "Content-Type": fault.content_type},
        )
    spoiled = web.StreamResponse(status=response.status, headers={"X-Request-Id": REQUEST_ID.get()})
    spoiled.content_type = response.content_type
    spoiled.content_length = len(data)
    await spoiled.prepare(request)
    await spoiled.write(data[: len(data) // 2])
    _drop(request)
    return spoiled  # unreachable: _drop raises


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(API_PREFIX):
        key = request.headers.get("X-API-Key")
        if key is None:
            raise APIFailure(403, "MISSING_API_KEY", "the X-API-Key header is missing")
        expected = request.app[STATE_KEY].config.api_key
        if not hmac.compare_digest(key.encode(), expected.encode()):
            raise APIFailure(401, "INVALID_API_KEY", "the API key is not valid")
    return await handler(request)


@web.middleware
async def rate_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse an authenticated API request that finds the account's bucket empty
    (``_ratelimit``): before any work, so it is never charged."""
    if request.path.startswith(API_PREFIX):
        refused = request.app[STATE_KEY].limits.take(request.path[len(API_PREFIX) :])
        if refused is not None:
            limit, wait = refused
            if request.can_read_body:
                await request.read()  # received in full, as a real server would, then refused
            headers = {"Retry-After": str(max(1, math.ceil(wait)))} if limit.retry_after else None
            if limit.status == 503:
                raise APIFailure(503, "SERVICE_UNAVAILABLE", "overloaded; retry later", headers)
            raise APIFailure(429, "RATE_LIMITED", "too many requests; slow down", headers)
    return await handler(request)
