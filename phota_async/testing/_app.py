"""The emulated Phota service: state, handlers and middleware of an ``aiohttp.web`` app.

It speaks raw JSON and imports nothing from the SDK, so that a serialisation bug in the SDK cannot
hide by being the same on both sides. Where Phota's documentation is silent, the emulator follows
the decisions written in ``phota-api.md`` (error body shape, job and callback formats).

Emulator decisions beyond that document:

- ``/profiles/add`` with a number of URLs outside the tier's range answers 400
  ``INVALID_TRAINING_SET``; download or decode failures surface later as status ``ERROR``.
- A prompt containing one of ``blocked_words`` answers 400 ``CONTENT_MODERATION``.
- Edit and generate prices per output image: see ``MODEL_PRICES``; resolution multiplies them.
- Jobs are charged when submitted and refunded when they fail; a 504 is refunded at once.
- ``callback_url`` must be https, except for loopback hosts (tests run receivers locally).
- The profile picture is available once validation has passed.
- Emulator-only routes live under ``/_emulator/``: the file store and signed output downloads.
- ``latency`` delays every answer on API routes *after* the request has been processed (and
  charged) and *before* the answer is sent, like a server far away: the window in which a client
  can die knowing nothing of a charge is as wide as the latency. A ``(low, high)`` pair draws each
  delay uniformly from that range. Scripted status faults (a proxy answering) are not delayed;
  a shutting-down emulator cuts the remaining delays short.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import hashlib
import hmac
import itertools
import json
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, NoReturn
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from PIL import Image

from . import _images
from ._faults import Fault, FaultBook
from ._schema import ID_PATTERN, MODEL_RESOLUTIONS, TIER_COUNTS, prompt_tokens, validate

API_PREFIX = "/v1/phota"
TRAINING_PRICES = {"standard": 2.90, "fast": 1.49}
PER_IMAGE_PRICES = {"enhance": (0.12, 0.15), "remix": (0.12, 0.15)}  # (plain, subject seen)
MODEL_PRICES = {
    "nb2": 0.08,
    "gpt-image-2": 0.19,
    "qwen-image-2": 0.05,
    "flux-2": 0.06,
    "reve": 0.04,
}
RESOLUTION_FACTORS = {"1K": 1.0, "2K": 1.5, "4K": 2.0}
# Share of the training time spent in each phase after validation.
QUEUE_SHARE, TRAIN_SHARE = 0.25, 0.75

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class APIFailure(Exception):
    """An error answer in Phota's shape, raised anywhere inside a handler."""

    def __init__(
        self, status: int, code: str, detail: Any, headers: Mapping[str, str] | None = None
    ):
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _short(value: Any, limit: int = 80) -> Any:
    """Shrink long strings (base64 images) so the request log stays small."""
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + f"...<{len(value)} chars>"
    if isinstance(value, list):
        return [_short(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: _short(v, limit) for k, v in value.items()}
    return value


@dataclass
class ProfileRecord:
    """One profile and the clock of its training."""

    id: str
    tier: str
    tag: str | None
    image_urls: list[str]
    created: float
    training_seconds: float
    validated_at: float | None = None
    error: str | None = None
    forced_status: str | None = None
    forced_message: str | None = None
    picture: bytes | None = None
    face: Image.Image | None = None
    face_seed: int | None = None  # a synthetic face, drawn when first needed

    def subject(self) -> Image.Image | None:
        """The face this profile stands for (a synthetic one is drawn on first use)."""
        if self.face is None and self.face_seed is not None:
            self.face = _images.sample_photo(self.face_seed, (128, 128))
            self.picture = _images.profile_picture(self.face)
        return self.face

    def ready_at(self) -> float | None:
        """The monotonic moment training ends, once validation has passed."""
        if self.validated_at is None or self.error is not None:
            return None
        return self.validated_at + self.training_seconds

    def status(self, now: float) -> tuple[str, str | None]:
        if self.forced_status is not None:
            return self.forced_status, self.forced_message
        if self.error is not None:
            return "ERROR", self.error
        if self.validated_at is None:
            return "VALIDATING", None
        elapsed = now - self.validated_at
        if elapsed < self.training_seconds * QUEUE_SHARE:
            return "QUEUING", None
        if elapsed < self.training_seconds:
            return "IN_PROGRESS", None
        return "READY", None


@dataclass
class JobRecord:
    """One asynchronous job."""

    id: str
    endpoint: str
    body: dict[str, Any]
    client_request_id: str | None
    callback_url: str | None
    cost: float
    status: str = "QUEUED"
    created_at: str = field(default_factory=_utc_now)
    updated_at: str = field(default_factory=_utc_now)
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.id,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "result": self.result,
            "error": self.error,
        }


@dataclass
class EmulatorConfig:
    """Knobs of the emulated service (see ``PhotaEmulator`` for their meaning)."""

    api_key: str
    balance: float
    training_seconds: Mapping[str, float]
    validation_seconds: float
    job_queue_seconds: float
    job_run_seconds: float
    processing_seconds: float
    sync_timeout: float
    url_ttl: float
    max_body_bytes: int
    max_output_side: int | None
    blocked_words: tuple[str, ...]
    latency: tuple[float, float] = (0.0, 0.0)  # (low, high) seconds before each API answer


class EmulatorState:
    """Everything the emulated account holds, plus the handlers that act on it."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.balance = config.balance
        self.webhook_secret = "whsec_" + secrets.token_hex(16)
        self.profiles: dict[str, ProfileRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.idempotency: dict[str, str] = {}
        self.ledger: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self.upload_tokens: dict[str, str] = {}
        self.outputs: dict[str, tuple[bytes, str]] = {}
        self.faults = FaultBook()
        self.job_failures: list[tuple[str, str]] = []
        self.origin = ""  # "http://127.0.0.1:PORT", set once the server listens
        self._url_key = secrets.token_bytes(32)
        self._counter = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._random = random.Random()
        self.stopping = asyncio.Event()  # set on shutdown: answers still in latency go out now

    # -- helpers -------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._counter):04d}{secrets.token_hex(4)}"

    def spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def answer_latency(self) -> None:
        """Hold a processed answer for the configured latency (cut short on shutdown)."""
        low, high = self.config.latency
        delay = low if high <= low else self._random.uniform(low, high)
        if delay <= 0 or self.stopping.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), delay)

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    def charge(self, amount: float, **what: Any) -> None:
        self.balance = round(self.balance - amount, 6)
        self.ledger.append({"kind": "charge", "amount": round(amount, 6), **what})

    def refund(self, amount: float, **what: Any) -> None:
        self.balance = round(self.balance + amount, 6)
        self.ledger.append({"kind": "refund", "amount": round(amount, 6), **what})

    def require_funds(self, amount: float) -> None:
        if amount > self.balance + 1e-9:
            raise APIFailure(
                402, "INSUFFICIENT_CREDIT", f"prepaid credit exhausted: ${self.balance:.2f} left"
            )

    def store_output(self, data: bytes, fmt: str) -> str:
        key = secrets.token_hex(12)
        content_type = "image/png" if fmt == "png" else "image/jpeg"
        self.outputs[key] = (data, content_type)
        expires = int(time.time() + self.config.url_ttl)
        sig = self._url_signature(key, expires)
        return f"{self.origin}/_emulator/outputs/{key}.{fmt}?expires={expires}&sig={sig}"

    def _url_signature(self, key: str, expires: int) -> str:
        return hmac.new(self._url_key, f"{key}:{expires}".encode(), hashlib.sha256).hexdigest()

    def store_file(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Keep bytes in the public file store; return their public URL."""
        key = secrets.token_hex(12)
        self.files[key] = (data, content_type)
        return f"{self.origin}/_emulator/files/{key}"

    async def fetch(self, url: str, field_name: str) -> bytes:
        """Download an input or training URL (the file store is read directly)."""
        store_prefix = f"{self.origin}/_emulator/files/"
        if url.startswith(store_prefix):
            entry = self.files.get(url[len(store_prefix) :])
            if entry is None:
                raise APIFailure(400, "IMAGE_DOWNLOAD_FAILED", f"{field_name}: 404 from {url}")
            return entry[0]
        try:
            async with self.session.get(url) as resp:
                if resp.status != 200:
                    raise APIFailure(
                        400, "IMAGE_DOWNLOAD_FAILED", f"{field_name}: {resp.status} from {url}"
                    )
                return await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise APIFailure(
                400, "IMAGE_DOWNLOAD_FAILED", f"{field_name}: cannot download {url} ({exc!r})"
            ) from exc

    async def load_image(self, value: str, field_name: str) -> Image.Image:
        """Decode an image input given as base64 or an http(s) URL."""
        if value.startswith(("http://", "https://")):
            data = await self.fetch(value, field_name)
        else:
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise APIFailure(
                    400, "INVALID_IMAGE", f"{field_name}: neither a URL nor valid base64"
                ) from exc
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, _images.decode, data)
        except _images.ImageDecodeError as exc:
            raise APIFailure(400, "INVALID_IMAGE", f"{field_name}: {exc}") from exc

    # -- studio --------------------------------------------------------------------------

    def check_semantics(self, endpoint: str, body: dict[str, Any]) -> None:
        """The 400-class rules that are not schema: model capabilities, moderation, callbacks."""
        model = body.get("base_model") or "nb2"
        if endpoint in ("edit", "generate"):
            if body.get("quality") is not None and model != "gpt-image-2":
                raise APIFailure(
                    400,
                    "QUALITY_NOT_SUPPORTED",
                    f"quality is only supported by gpt-image-2, not {model}",
                )
            resolution = body.get("resolution") or "1K"
            if resolution not in MODEL_RESOLUTIONS[model]:
                raise APIFailure(
                    400, "UNSUPPORTED_RESOLUTION", f"{model} cannot produce {resolution} images"
                )
        callback = body.get("callback_url")
        if callback is not None:
            parts = urlsplit(callback)
            loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
            if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
                raise APIFailure(
                    422,
                    "VALIDATION_ERROR",
                    [
                        {
                            "loc": ["body", "callback_url"],
                            "msg": "URL scheme should be 'https'",
                            "type": "url_scheme",
                        }
                    ],
                )
        prompt = body.get("prompt") or ""
        lowered = prompt.lower()
        for word in self.config.blocked_words:
            if word in lowered:
                raise APIFailure(
                    400, "CONTENT_MODERATION", "the prompt was refused by content moderation"
                )

    def named_profiles(self, body: dict[str, Any]) -> list[ProfileRecord]:
        """Profiles named by ``profile_ids`` and ``[[id]]`` tokens, each once, checked READY."""
        names: list[str] = list(body.get("profile_ids") or [])
        for token in prompt_tokens(body.get("prompt") or ""):
            if not ID_PATTERN.fullmatch(token):
                raise APIFailure(
                    422,
                    "VALIDATION_ERROR",
                    [
                        {
                            "loc": ["body", "prompt"],
                            "msg": f"[[{token[:70]}]] is not a valid profile id",
                            "type": "value_error",
                        }
                    ],
                )
            names.append(token)
        records = []
        now = time.monotonic()
        for name in dict.fromkeys(names):
            record = self.profiles.get(name)
            if record is None:
                raise APIFailure(404, "PROFILE_NOT_FOUND", f"profile {name} does not exist")
            status, _ = record.status(now)
            if status != "READY":
                raise APIFailure(400, "PROFILE_NOT_READY", f"profile {name} is {status}, not READY")
            records.append(record)
        return records

    def price(self, endpoint: str, body: dict[str, Any], named: list[ProfileRecord]) -> float:
        n = body.get("num_output_images") or 1
        if endpoint in PER_IMAGE_PRICES:
            plain, with_subject = PER_IMAGE_PRICES[endpoint]
            return n * (with_subject if named else plain)
        model = body.get("base_model") or "nb2"
        factor = RESOLUTION_FACTORS[body.get("resolution") or "1K"]
        return round(n * MODEL_PRICES[model] * factor, 6)

    async def render(
        self, endpoint: str, body: dict[str, Any], named: list[ProfileRecord]
    ) -> dict[str, Any]:
        """Decode inputs, make the output images, and build the 200 body."""
        fmt = body.get("output_format") or "jpg"
        n = body.get("num_output_images") or 1
        cap = self.config.max_output_side
        prompt = body.get("prompt") or ""
        faces = [face for p in named if (face := p.subject()) is not None]
        work: Callable[[int], Image.Image]
        if endpoint == "enhance":
            image = await self.load_image(body["image"], "image")
            work = partial(_enhance_one, image, cap)
        elif endpoint == "remix":
            content = await self.load_image(body["input_image"], "input_image")
            style = await self.load_image(body["reference_image"], "reference_image")
            work = partial(_remix_one, content, style, cap)
        elif endpoint == "edit":
            images = [
                await self.load_image(value, f"images.{i}")
                for i, value in enumerate(body["images"])
            ]
            size = _images.target_size(
                body.get("aspect_ratio") or "auto",
                body.get("resolution") or "1K",
                images[0].size,
                cap,
            )
            work = partial(_edit_one, images, prompt, size)
        else:
            ratio = body.get("aspect_ratio") or "auto"
            size = _images.target_size(
                "1:1" if ratio == "auto" else ratio, body.get("resolution") or "1K", (1, 1), cap
            )
            work = partial(_generate_one, prompt, size, faces)
        loop = asyncio.get_running_loop()
        if self.config.processing_seconds:
            await asyncio.sleep(self.config.processing_seconds)
        blobs = [await loop.run_in_executor(None, _encode_one, work, i, fmt) for i in range(n)]
        counts = {p.id: n for p in named}
        if body.get("response_mode") == "urls":
            return {
                "known_subjects": {"counts": counts},
                "images": [],
                "download_urls": [self.store_output(b, fmt) for b in blobs],
            }
        return {
            "known_subjects": {"counts": counts},
            "images": [base64.b64encode(b).decode("ascii") for b in blobs],
            "download_urls": [],
        }

    async def run_job(self, job: JobRecord, named: list[ProfileRecord], request_id: str) -> None:
        await asyncio.sleep(self.config.job_queue_seconds)
        job.status, job.updated_at = "RUNNING", _utc_now()
        await asyncio.sleep(self.config.job_run_seconds)
        try:
            if self.job_failures:
                code, detail = self.job_failures.pop(0)
                raise APIFailure(500, code, detail)
            job.result = await self.render(job.endpoint, job.body, named)
            job.status = "SUCCEEDED"
        except APIFailure as failure:
            job.error = {"code": failure.code, "detail": str(failure.detail)}
            job.status = "FAILED"
            self.refund(job.cost, endpoint=job.endpoint, job_id=job.id, request_id=request_id)
        job.updated_at = _utc_now()
        if job.callback_url:
            await self.deliver_callback(job)

    async def deliver_callback(self, job: JobRecord) -> None:
        """POST the finished job to its callback URL, signed; best effort, three tries."""
        body = json.dumps(job.to_json()).encode()
        for attempt in range(3):
            stamp = str(int(time.time()))
            mac = hmac.new(
                self.webhook_secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256
            )
            header = f"t={stamp},v1={mac.hexdigest()}"
            record: dict[str, Any] = {
                "job_id": job.id,
                "url": job.callback_url,
                "attempt": attempt + 1,
                "signature": header,
            }
            try:
                async with self.session.post(
                    job.callback_url or "",
                    data=body,
                    headers={"Content-Type": "application/json", "X-Phota-Signature": header},
                ) as resp:
                    record["status"] = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                record["error"] = repr(exc)
            self.callbacks.append(record)
            if 200 <= record.get("status", 0) < 300:
                return
            await asyncio.sleep(0.2 * (attempt + 1))

    # -- profiles ------------------------------------------------------------------------

    async def validate_training(self, record: ProfileRecord) -> None:
        """Download and decode every training URL, then start the training clock."""
        started = time.monotonic()
        try:
            images = [
                await self.load_image(url, f"image_urls.{i}")
                for i, url in enumerate(record.image_urls)
            ]
        except APIFailure as failure:
            record.error = f"training image rejected: {failure.detail}"
            return
        subjects = [img for img in images if _images.has_subject(img)]
        if not subjects:
            record.error = "no subject found in the training images"
            return
        record.face = subjects[0]
        loop = asyncio.get_running_loop()
        record.picture = await loop.run_in_executor(None, _images.profile_picture, subjects[0])
        remaining = self.config.validation_seconds - (time.monotonic() - started)
        if remaining > 0:
            await asyncio.sleep(remaining)
        record.validated_at = time.monotonic()

    def add_ready_profile(self, tag: str | None, tier: str, training_seconds: float = 0.0) -> str:
        """A validated profile with a synthetic face, READY after ``training_seconds``."""
        record = ProfileRecord(
            id=self.new_id("prof_"),
            tier=tier,
            tag=tag,
            image_urls=[],
            created=time.monotonic(),
            training_seconds=training_seconds,
            validated_at=time.monotonic(),
            face_seed=len(self.profiles) + 1,
        )
        self.profiles[record.id] = record
        return record.id

    def get_profile(self, profile_id: str) -> ProfileRecord:
        if not ID_PATTERN.fullmatch(profile_id) or profile_id not in self.profiles:
            raise APIFailure(404, "PROFILE_NOT_FOUND", f"profile {profile_id[:80]} does not exist")
        return self.profiles[profile_id]

    def profile_json(self, record: ProfileRecord) -> dict[str, Any]:
        status, message = record.status(time.monotonic())
        return {"profile_id": record.id, "status": status, "message": message, "tag": record.tag}


def _enhance_one(image: Image.Image, cap: int | None, _i: int) -> Image.Image:
    if cap is not None and max(image.size) > cap:
        image = image.resize(_images.fit_side(image.size, cap))  # work at the output size
    return _images.enhance(image)


def _remix_one(content: Image.Image, style: Image.Image, cap: int | None, _i: int) -> Image.Image:
    side = 2048 if cap is None else min(2048, cap)
    return _images.remix(content.resize(_images.fit_side(content.size, side)), style)


def _edit_one(
    images: list[Image.Image], prompt: str, size: tuple[int, int], _i: int
) -> Image.Image:
    out = _images.edit(images, prompt)
    return out.resize(_images.fit_side(out.size, max(size))) if out.size != size else out


def _generate_one(
    prompt: str, size: tuple[int, int], faces: list[Image.Image], i: int
) -> Image.Image:
    return _images.generate(prompt, size, faces, seed=i)


def _encode_one(work: Callable[[int], Image.Image], i: int, fmt: str) -> bytes:
    return _images.encode(work(i), fmt)


# ---------------------------------------------------------------------------------------------
# HTTP layer
# ---------------------------------------------------------------------------------------------

STATE_KEY = web.AppKey("phota_state", EmulatorState)
# Per-request values: each request runs in its own task, hence its own context.
_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_JSON_LOG: contextvars.ContextVar[Any] = contextvars.ContextVar("json_log", default=None)


def _error_response(
    request_id: str, status: int, code: str, detail: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    if status == 422 and isinstance(detail, list):
        body: dict[str, Any] = {"detail": detail, "request_id": request_id}
    else:
        body = {"code": code, "detail": detail, "request_id": request_id}
    return web.json_response(body, status=status, headers=headers)


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise APIFailure(
            422,
            "VALIDATION_ERROR",
            [
                {
                    "loc": ["body", exc.pos if isinstance(exc, json.JSONDecodeError) else 0],
                    "msg": "JSON decode error",
                    "type": "json_invalid",
                }
            ],
        ) from exc


def _validated(endpoint: str, body: Any) -> dict[str, Any]:
    details = validate(endpoint, body)
    if details:
        raise APIFailure(422, "VALIDATION_ERROR", details)
    assert isinstance(body, dict)
    return body


@web.middleware
async def _outer(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, request log, scripted faults and error bodies for every route."""
    state = request.app[STATE_KEY]
    request_id = "req_" + secrets.token_hex(8)
    _REQUEST_ID.set(request_id)
    _JSON_LOG.set(None)
    path = request.path[len(API_PREFIX) :] if request.path.startswith(API_PREFIX) else request.path
    entry: dict[str, Any] = {
        "method": request.method,
        "path": path,
        "query": dict(request.query),
        "request_id": request_id,
        "time": time.time(),
        "fault": None,
        "status": None,
        "json": None,
    }
    state.requests.append(entry)
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
            # and it is finished even if the client has given up meanwhile.
            if request.can_read_body:
                await request.read()
            await asyncio.sleep(fault.delay)
    try:
        response = await handler(request)
    except APIFailure as failure:
        response = _error_response(
            request_id, failure.status, failure.code, failure.detail, failure.headers
        )
    except ConnectionResetError:
        # The client went away mid-request (a cancelled call): nobody is left to answer.
        entry["status"] = "disconnected"
        raise asyncio.CancelledError from None
    except web.HTTPRequestEntityTooLarge as exc:
        response = _error_response(
            request_id, 413, "PAYLOAD_TOO_LARGE", exc.text or "request body too large"
        )
    except web.HTTPException as exc:
        code = (exc.reason or "error").upper().replace(" ", "_")
        response = _error_response(request_id, exc.status, code, exc.text or exc.reason)
    entry["status"] = response.status
    entry["json"] = _JSON_LOG.get()
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
        return _short(json.loads(await request.read()))
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
        return _error_response(
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
            headers={"X-Request-Id": _REQUEST_ID.get()},
        )
    if fault.content_type is not None:
        return web.Response(
            body=data,
            status=response.status,
            headers={"X-Request-Id": _REQUEST_ID.get(), "Content-Type": fault.content_type},
        )
    spoiled = web.StreamResponse(
        status=response.status, headers={"X-Request-Id": _REQUEST_ID.get()}
    )
    spoiled.content_type = response.content_type
    spoiled.content_length = len(data)
    await spoiled.prepare(request)
    await spoiled.write(data[: len(data) // 2])
    _drop(request)
    return spoiled  # unreachable: _drop raises


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(API_PREFIX):
        key = request.headers.get("X-API-Key")
        if key is None:
            raise APIFailure(403, "MISSING_API_KEY", "the X-API-Key header is missing")
        expected = request.app[STATE_KEY].config.api_key
        if not hmac.compare_digest(key.encode(), expected.encode()):
            raise APIFailure(401, "INVALID_API_KEY", "the API key is not valid")
    return await handler(request)


async def _read_json(request: web.Request, endpoint: str) -> dict[str, Any]:
    body = await _json_body(request)
    _JSON_LOG.set(_short(body))
    return _validated(endpoint, body)


def _studio_handler(endpoint: str) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE_KEY]
        body = await _read_json(request, endpoint)
        state.check_semantics(endpoint, body)
        named = state.named_profiles(body)
        cost = state.price(endpoint, body, named)
        request_id = _REQUEST_ID.get()
        if body.get("async"):
            return _submit_job(state, endpoint, body, named, cost, request_id)
        state.require_funds(cost)
        state.charge(
            cost,
            endpoint=endpoint,
            request_id=request_id,
            images=body.get("num_output_images") or 1,
        )
        try:
            result = await asyncio.wait_for(
                state.render(endpoint, body, named), state.config.sync_timeout
            )
        except TimeoutError:
            state.refund(cost, endpoint=endpoint, request_id=request_id)
            raise APIFailure(
                504, "TIMEOUT", "the call exceeded its time limit and was refunded; use async mode"
            ) from None
        except APIFailure:
            state.refund(cost, endpoint=endpoint, request_id=request_id)
            raise
        return web.json_response(result)

    return handle


def _submit_job(
    state: EmulatorState,
    endpoint: str,
    body: dict[str, Any],
    named: list[ProfileRecord],
    cost: float,
    request_id: str,
) -> web.Response:
    key = body.get("client_request_id")
    if key is not None and key in state.idempotency:
        job = state.jobs[state.idempotency[key]]
    else:
        state.require_funds(cost)
        job = JobRecord(
            id=state.new_id("job_"),
            endpoint=endpoint,
            body=body,
            client_request_id=key,
            callback_url=body.get("callback_url"),
            cost=cost,
        )
        state.jobs[job.id] = job
        if key is not None:
            state.idempotency[key] = job.id
        state.charge(
            cost,
            endpoint=endpoint,
            request_id=request_id,
            job_id=job.id,
            client_request_id=key,
            images=body.get("num_output_images") or 1,
        )
        state.spawn(state.run_job(job, named, request_id))
    handle = {
        "job_id": job.id,
        "poll_url": f"{state.origin}{API_PREFIX}/jobs/{job.id}",
        "status": job.status,
    }
    return web.json_response(handle, status=202)


async def _get_job(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    job = state.jobs.get(request.match_info["job_id"])
    if job is None:
        raise APIFailure(
            404, "JOB_NOT_FOUND", f"job {request.match_info['job_id'][:80]} does not exist"
        )
    return web.json_response(job.to_json())


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
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if bad:
        raise APIFailure(400, "INVALID_TRAINING_SET", "image_urls must be http(s) URLs, not base64")
    price = TRAINING_PRICES[tier]
    state.require_funds(price)
    record = ProfileRecord(
        id=state.new_id("prof_"),
        tier=tier,
        tag=body.get("tag"),
        image_urls=urls,
        created=time.monotonic(),
        training_seconds=state.config.training_seconds[tier],
    )
    state.profiles[record.id] = record
    state.charge(price, endpoint="profiles/add", request_id=_REQUEST_ID.get(), profile_id=record.id)
    state.spawn(state.validate_training(record))
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
    record = state.get_profile(request.match_info["profile_id"])
    body = state.profile_json(record)
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
    del state.profiles[record.id]
    return web.json_response({"profile_id": record.id, "status": "ok"})


async def _webhook_secret(request: web.Request) -> web.StreamResponse:
    return web.json_response({"secret": request.app[STATE_KEY].webhook_secret})


async def _new_upload(request: web.Request) -> web.StreamResponse:
    """Hand out a one-time PUT URL for the file store (emulator-only, needs the API key)."""
    state = request.app[STATE_KEY]
    if request.headers.get("X-API-Key") != state.config.api_key:
        raise APIFailure(401, "INVALID_API_KEY", "the API key is not valid")
    key = secrets.token_hex(12)
    token = secrets.token_hex(16)
    state.upload_tokens[key] = token
    return web.json_response(
        {
            "upload_url": f"{state.origin}/_emulator/files/{key}?token={token}",
            "url": f"{state.origin}/_emulator/files/{key}",
        }
    )


async def _put_file(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    key = request.match_info["key"]
    tokens = state.upload_tokens
    token = tokens.get(key)
    if token is None or not hmac.compare_digest(token, request.query.get("token", "")):
        raise APIFailure(403, "INVALID_UPLOAD_URL", "this upload URL is not valid")
    data = await request.read()
    del tokens[key]
    state.files[key] = (data, request.headers.get("Content-Type", "application/octet-stream"))
    return web.json_response(
        {"url": f"{state.origin}/_emulator/files/{key}", "size": len(data)}, status=201
    )


async def _get_file(request: web.Request) -> web.StreamResponse:
    entry = request.app[STATE_KEY].files.get(request.match_info["key"])
    if entry is None:
        raise APIFailure(404, "NOT_FOUND", "no such file")
    return web.Response(body=entry[0], content_type=entry[1])


async def _get_output(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    key = request.match_info["key"]
    try:
        expires = int(request.query.get("expires", ""))
    except ValueError:
        raise APIFailure(403, "INVALID_SIGNATURE", "the download URL is not signed") from None
    expected = state._url_signature(key, expires)
    if not hmac.compare_digest(expected, request.query.get("sig", "")):
        raise APIFailure(403, "INVALID_SIGNATURE", "the download URL signature does not match")
    if time.time() > expires:
        raise APIFailure(403, "URL_EXPIRED", "the download URL has expired")
    entry = state.outputs.get(key)
    if entry is None:
        raise APIFailure(404, "NOT_FOUND", "no such output")
    return web.Response(body=entry[0], content_type=entry[1])


async def _on_shutdown(app: web.Application) -> None:
    app[STATE_KEY].stopping.set()


async def _on_cleanup(app: web.Application) -> None:
    await app[STATE_KEY].close()


def build_app(state: EmulatorState) -> web.Application:
    """The emulator's ``aiohttp.web`` application, serving ``state``."""
    app = web.Application(middlewares=[_outer, _auth], client_max_size=state.config.max_body_bytes)
    app[STATE_KEY] = state
    p = API_PREFIX
    for endpoint in ("edit", "generate", "enhance", "remix"):
        app.router.add_post(f"{p}/{endpoint}", _studio_handler(endpoint))
    app.router.add_get(f"{p}/jobs/{{job_id}}", _get_job)
    app.router.add_post(f"{p}/profiles/add", _add_profile)
    app.router.add_get(f"{p}/profiles/ids", _list_profiles)
    app.router.add_get(f"{p}/profiles/{{profile_id}}/status", _profile_status)
    app.router.add_get(f"{p}/profiles/{{profile_id}}/profile_picture", _profile_picture)
    app.router.add_delete(f"{p}/profiles/{{profile_id}}", _delete_profile)
    app.router.add_get(f"{p}/webhook-secret", _webhook_secret)
    app.router.add_post("/_emulator/uploads", _new_upload)
    app.router.add_put("/_emulator/files/{key}", _put_file)
    app.router.add_get("/_emulator/files/{key}", _get_file)
    app.router.add_get("/_emulator/outputs/{key}.{fmt}", _get_output)
    app.on_shutdown.append(_on_shutdown)
    app.on_cleanup.append(_on_cleanup)
    return app
