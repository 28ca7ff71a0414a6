"""``EmulatorState``: everything the emulated account holds, and the clock it lives by.

Profiles, jobs, the ledger, idempotency keys, the file store and signed outputs, the request
and callback logs, the scripted faults. Times are readings of one ``Clock``; wall-clock
timestamps (job times, download URL expiry) are those readings shifted by the Unix time at
which the state was made, so a ``ManualClock`` moves them too.

Emulator decisions:

- Emulator-only routes live under ``/_emulator/``: the file store and signed output downloads.
  A download URL carries its expiry (Unix seconds on the emulator's clock) and an HMAC of it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import math
import random
import secrets
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

from ._billing import IdempotencyKeys, Ledger
from ._clock import Clock
from ._failure import APIFailure
from ._faults import FaultBook
from ._outbound import Outbound
from ._ratelimit import Buckets
from ._records import EmulatorConfig, JobRecord, ProfileRecord
from ._render import Seeds, prepare, produce
from ._schema import ID_PATTERN

API_PREFIX = "/v1/phota"
FILES = "/_emulator/files/"
OUTPUTS = "/_emulator/outputs/"


class EmulatorState:
    """The emulated account: its records, its money, its logs, and the tasks working on them."""

    def __init__(self, config: EmulatorConfig, clock: Clock) -> None:
        self.config = config
        self.clock = clock
        self.billing = Ledger(config.balance)
        self.idempotency = IdempotencyKeys(config.idempotency_ttl)
        self.webhook_secret = "whsec_" + secrets.token_hex(16)
        self.profiles: dict[str, ProfileRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.requests: list[dict[str, Any]] = []
        self.callbacks: list[dict[str, Any]] = []
        self.files: dict[str, tuple[bytes, str]] = {}
        self.upload_tokens: dict[str, str] = {}
        self.outputs: dict[str, tuple[bytes, str]] = {}
        self.faults = FaultBook()
        self.limits = Buckets(clock)
        self.job_failures: list[tuple[str, str]] = []
        self.origin = ""  # "http://127.0.0.1:PORT", set once the server listens
        self.outbound = Outbound(clock, config.max_body_bytes)
        self.stopping = asyncio.Event()  # set on shutdown: answers still held go out now
        self._epoch = time.time() - clock.now()  # Unix time at clock reading 0
        self._url_key = secrets.token_bytes(32)
        self._counter = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._random = random.Random()
        self.seeds = Seeds()  # PhotaEmulator(seed=...) replaces it

    # -- time --------------------------------------------------------------------------------

    def now(self) -> float:
        """The emulator's clock reading."""
        return self.clock.now()

    def unix(self, reading: float | None = None) -> float:
        """Unix seconds at a clock reading (now by default)."""
        return self._epoch + (self.clock.now() if reading is None else reading)

    def timestamp(self, reading: float) -> str:
        """RFC 3339 UTC, milliseconds, ``Z``: the API's time format."""
        moment = datetime.fromtimestamp(self.unix(reading), UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    async def hold(self, seconds: float) -> None:
        """Wait ``seconds`` on the clock, cut short when the emulator shuts down."""
        if seconds <= 0 or self.stopping.is_set():
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        stopped = asyncio.ensure_future(self.stopping.wait())
        try:
            await asyncio.wait((sleeper, stopped), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopped):
                task.cancel()
            await asyncio.gather(sleeper, stopped, return_exceptions=True)

    async def answer_latency(self) -> None:
        """Hold a processed answer for the configured latency (cut short on shutdown)."""
        low, high = self.config.latency
        await self.hold(low if high <= low else self._random.uniform(low, high))

    # -- tasks -------------------------------------------------------------------------------

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._counter):04d}{secrets.token_hex(4)}"

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a piece of the service's background work until it ends or the emulator stops."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.outbound.close()

    # -- money -------------------------------------------------------------------------------

    @property
    def balance(self) -> float:
        return self.billing.balance

    @balance.setter
    def balance(self, value: float) -> None:
        self.billing.balance = value

    # -- files and outputs -------------------------------------------------------------------

    def store_file(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Keep bytes in the public file store; return their public URL."""
        key = secrets.token_hex(12)
        self.files[key] = (data, content_type)
        return f"{self.origin}{FILES}{key}"

    def store_output(self, data: bytes, fmt: str) -> str:
        """Keep an output image; return its signed download URL, valid for ``url_ttl``."""
        key = secrets.token_hex(12)
        self.outputs[key] = (data, "image/png" if fmt == "png" else "image/jpeg")
        expires = math.ceil(self.unix() + self.config.url_ttl)  # valid at least url_ttl
        sig = self._url_signature(key, expires)
        return f"{self.origin}{OUTPUTS}{key}.{fmt}?expires={expires}&sig={sig}"

    def signed_output(self, key: str, expires: str, sig: str) -> tuple[bytes, str]:
        """The output a download URL names, once its signature and expiry are checked."""
        try:
            moment = int(expires)
        except ValueError:
            raise APIFailure(403, "INVALID_SIGNATURE", "the download URL is not signed") from None
        if not hmac.compare_digest(self._url_signature(key, moment), sig):
            raise APIFailure(403, "INVALID_SIGNATURE", "the download URL signature does not match")
        if self.unix() > moment:
            raise APIFailure(403, "URL_EXPIRED", "the download URL has expired")
        entry = self.outputs.get(key)
        if entry is None:
            raise APIFailure(404, "NOT_FOUND", "no such output")
        return entry

    def _url_signature(self, key: str, expires: int) -> str:
        return hmac.new(self._url_key, f"{key}:{expires}".encode(), hashlib.sha256).hexdigest()

    async def fetch(self, url: str, field_name: str) -> bytes:
        """Download an input or training URL (the emulator's own file store is read directly)."""
        store_prefix = f"{self.origin}{FILES}"
        if url.startswith(store_prefix):
            entry = self.files.get(url[len(store_prefix) :])
            if entry is None:
                raise APIFailure(400, "IMAGE_DOWNLOAD_FAILED", f"{field_name}: 404 from {url}")
            return entry[0]
        return await self.outbound.download(url, field_name)

    # -- studio ------------------------------------------------------------------------------

    async def render(
        self, endpoint: str, body: dict[str, Any], named: list[ProfileRecord]
    ) -> dict[str, Any]:
        """Decode inputs, make the output images, and build the 200 body."""
        fmt = body.get("output_format") or "jpg"
        n = body.get("num_output_images") or 1
        faces = [face for p in named if (face := p.subject()) is not None]
        seed = self.seeds.draw(endpoint, body)
        work = await prepare(endpoint, body, faces, self.config.max_output_side, self.fetch)
        await self.clock.sleep(self.config.processing_seconds)
        blobs = await produce(work, n, fmt, seed)
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

    def job_json(self, job: JobRecord) -> dict[str, Any]:
        """A job as ``GET /jobs/{id}`` shows it now."""
        now = self.now()
        return {
            "job_id": job.id,
            "status": job.status(now),
            "created_at": self.timestamp(job.submitted),
            "updated_at": self.timestamp(job.updated(now)),
            "result": job.result,
            "error": job.error,
        }

    # -- profiles ----------------------------------------------------------------------------

    def add_ready_profile(self, tag: str | None, tier: str, training_seconds: float = 0.0) -> str:
        """A validated profile with a synthetic face, READY after ``training_seconds``."""
        now = self.now()
        record = ProfileRecord(
            id=self.new_id("prof_"),
            tier=tier,
            tag=tag,
            image_urls=[],
            created=now,
            training_seconds=training_seconds,
            validated_at=now,
            face_seed=len(self.profiles) + 1,
        )
        self.profiles[record.id] = record
        return record.id

    def get_profile(self, profile_id: str) -> ProfileRecord:
        if not ID_PATTERN.fullmatch(profile_id) or profile_id not in self.profiles:
            raise APIFailure(404, "PROFILE_NOT_FOUND", f"profile {profile_id[:80]} does not exist")
        return self.profiles[profile_id]

    def profile_json(self, record: ProfileRecord) -> dict[str, Any]:
        status, message = record.status(self.now())
        return {"profile_id": record.id, "status": status, "message": message, "tag": record.tag}
