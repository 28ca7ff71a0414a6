"""``EmulatorState``: everything the emulated account holds, and the clock it lives by.

Profiles, jobs, the ledger, idempotency keys, the file store and signed outputs, the request
and callback logs, the scripted faults. Times are readings of one ``Clock``; wall-clock
timestamps (job times, download URL expiry) are those readings shifted by the Unix time at
which the state was made, so a ``ManualClock`` moves them too.

Emulator decisions:

- Emulator-only routes live under ``/_emulator/``: the file store and signed output downloads.
  A download URL carries its expiry (Unix seconds on the emulator's clock) and an HMAC of it.
- Retention: outputs are kept ``output_ttl`` seconds (24 hours, the URLs' validity, by
  default) and at most ``max_outputs`` of them (the oldest go first); finished jobs are kept
  ``output_ttl`` seconds after they finish and at most ``max_jobs`` of them (jobs still queued
  or running are never evicted). The request log keeps ``log_ttl`` seconds and at most
  ``max_log`` entries, the callback log at most ``max_log``; ``requests_dropped`` counts what
  the request log let go. The ledger, the profiles and the file store are kept whole.
- A download URL past its expiry answers 403 ``URL_EXPIRED``, as a signed URL does; one whose
  output is no longer kept answers 404 ``NOT_FOUND``. An evicted job answers 404
  ``JOB_NOT_FOUND`` like one that never existed; its ``client_request_id`` still names it until
  the key expires, so a resubmit is answered with the original job id and final status, and
  is not charged.
- With a state folder (``_store``), every change is written through, and the state is read
  back on construction: profiles resume their training timeline, unfinished jobs run again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import io
import itertools
import math
import random
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from ._billing import IdempotencyKeys, Ledger
from ._clock import Clock
from ._failure import APIFailure
from ._faults import FaultBook
from ._outbound import Outbound
from ._ratelimit import Buckets
from ._records import EmulatorConfig, JobRecord, ProfileRecord
from ._render import Seeds, prepare, produce
from ._schema import ID_PATTERN
from ._store import StateDirError, StateStore

API_PREFIX = "/v1/phota"
FILES = "/_emulator/files/"
OUTPUTS = "/_emulator/outputs/"


class EmulatorState:
    """The emulated account: its records, its money, its logs, and the tasks working on them."""

    def __init__(
        self, config: EmulatorConfig, clock: Clock, store: StateStore | None = None
    ) -> None:
        self.config = config
        self.clock = clock
        self.store = store
        self.billing = Ledger(config.balance)
        self.idempotency = IdempotencyKeys(config.idempotency_ttl)
        self.webhook_secret = "whsec_" + secrets.token_hex(16)
        self.profiles: dict[str, ProfileRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.requests: deque[dict[str, Any]] = deque(maxlen=config.max_log)
        self.requests_dropped = 0
        self._log_lock = threading.Lock()
        self.callbacks: list[dict[str, Any]] = []
        # key -> (bytes, or None when they are in the state folder; content type)
        self.files: dict[str, tuple[bytes | None, str]] = {}
        self.upload_tokens: dict[str, str] = {}
        # key -> (bytes, or None when in the state folder; content type; clock reading made)
        self.outputs: dict[str, tuple[bytes | None, str, float]] = {}
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
        self._writes: set[asyncio.Future[None]] = set()  # outputs being written to the folder
        self._random = random.Random()
        self.seeds = Seeds()  # PhotaEmulator(seed=...) replaces it
        if store is not None:
            try:
                self._load(store)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                store.close()
                raise StateDirError(
                    f"state dir {store.folder} holds records this emulator cannot read: {exc!r}"
                ) from exc

    # -- the state folder --------------------------------------------------------------------

    def _load(self, store: StateStore) -> None:
        """Read the account back from its folder, then write every later change through."""
        self.webhook_secret = self._setting(store, "webhook_secret", self.webhook_secret)
        self._url_key = bytes.fromhex(self._setting(store, "url_key", self._url_key.hex()))
        balance = store.setting("balance")
        self.billing.entries = store.ledger()
        self.billing.balance = float(balance) if balance is not None else self.config.balance
        now = self.now()
        for record, picture, face in store.profiles():
            profile = _profile_from_json(record, self.reading)
            profile.picture = picture
            profile.face = Image.open(io.BytesIO(face)).convert("RGB") if face else None
            self.profiles[profile.id] = profile
        for record in store.jobs():
            job = _job_from_json(record, self.reading)
            self.jobs[job.id] = job
        for key, job_id, at, status in store.idempotency_keys():
            if now - self.reading(at) < self.config.idempotency_ttl:
                self.idempotency.remember(key, job_id, self.reading(at), status)
        for key, content_type, created in store.output_rows():
            self.outputs[key] = (None, content_type, self.reading(created))
        for key, content_type in store.file_rows():
            self.files[key] = (None, content_type)
        self.billing.sink = store.append_ledger
        if balance is None:
            store.append_ledger(None, self.billing.balance)
        self.idempotency.sink = self._save_key
        self.prune()

    @staticmethod
    def _setting(store: StateStore, name: str, default: str) -> str:
        value = store.setting(name)
        if value is None:
            store.set_setting(name, default)
            return default
        return value

    def _save_key(self, key: str, job_id: str, at: float, status: str | None) -> None:
        if self.store is not None:
            self.store.save_key(key, job_id, self.unix(at), status)

    def save_profile(self, record: ProfileRecord) -> None:
        """Write a profile through to the state folder (a no-op without one)."""
        if self.store is None:
            return
        face = None
        if record.face is not None and record.face_seed is None:
            # Rendering needs only a small face; a full-size training photo would bloat the row.
            small = record.face.copy()
            small.thumbnail((512, 512))
            buffer = io.BytesIO()
            small.save(buffer, format="PNG")
            face = buffer.getvalue()
        self.store.save_profile(_profile_json(record, self.unix), record.picture, face)

    def delete_profile(self, profile_id: str) -> None:
        """Forget a profile, in memory and in the state folder."""
        del self.profiles[profile_id]
        if self.store is not None:
            self.store.delete_profile(profile_id)

    def _save_job(self, job: JobRecord) -> None:
        if self.store is not None:
            self.store.save_job(_job_json(job, self.unix, self.origin))

    # -- retention ---------------------------------------------------------------------------

    def log_request(self, entry: dict[str, Any]) -> None:
        """Append to the request log, letting go of what is past ``log_ttl`` or ``max_log``."""
        self.prune_log()
        with self._log_lock:
            if len(self.requests) == self.requests.maxlen:
                self.requests_dropped += 1
            self.requests.append(entry)

    def prune_log(self) -> None:
        """Drop request log entries older than ``log_ttl`` and callbacks beyond ``max_log``."""
        oldest = self.unix() - self.config.log_ttl
        # The test's thread reads (and prunes) the log of a threaded emulator too.
        with self._log_lock:
            while self.requests and self.requests[0]["time"] < oldest:
                self.requests.popleft()
                self.requests_dropped += 1
        # The callback log is a list (the outbound module appends to it): trimmed in batches.
        excess = len(self.callbacks) - self.config.max_log
        if excess > 0 and (excess >= 64 or self.config.max_log < 64):
            del self.callbacks[:excess]

    def prune(self) -> None:
        """Evict what is past its time or beyond its cap: outputs, finished jobs, keys, logs."""
        now = self.now()
        self.prune_log()
        while self.outputs:
            key, (_, _, made) = next(iter(self.outputs.items()))
            if now - made < self.config.output_ttl and len(self.outputs) <= self.config.max_outputs:
                break
            self._evict_output(key)
        # Jobs are kept in submit order and finish in about that order: the scan stops at the
        # first finished job still within its time, so that a prune costs little per request.
        excess = len(self.jobs) - self.config.max_jobs
        evict = []
        for job in self.jobs.values():
            if job.finished is None:
                continue  # queued or running: never evicted
            if excess <= 0 and now - job.finished < self.config.output_ttl:
                break
            evict.append(job)
            excess -= 1
        for job in evict:
            self._evict_job(job)
        before = self.idempotency.prune(now)
        if before is not None and self.store is not None:
            self.store.forget_keys_before(self.unix(before))

    def _evict_output(self, key: str) -> None:
        del self.outputs[key]
        if self.store is not None:
            self.store.delete_output(key)

    def _evict_job(self, job: JobRecord) -> None:
        del self.jobs[job.id]
        if job.client_request_id is not None and job.outcome is not None:
            self.idempotency.settle(job.client_request_id, job.outcome)
        if self.store is not None:
            self.store.delete_job(job.id)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """The state folder's writes made inside are one transaction (no-op without one)."""
        return contextlib.nullcontext() if self.store is None else self.store.transaction()

    def add_job(self, job: JobRecord) -> None:
        """Keep a newly submitted job (evicting what retention lets go first)."""
        self.prune()
        self.jobs[job.id] = job
        self._save_job(job)

    def finish_job(self, job: JobRecord) -> None:
        """A job has its outcome: its request body is no longer needed; write it through."""
        job.body = {}
        self._save_job(job)

    # -- time --------------------------------------------------------------------------------

    def now(self) -> float:
        """The emulator's clock reading."""
        return self.clock.now()

    def unix(self, reading: float | None = None) -> float:
        """Unix seconds at a clock reading (now by default)."""
        return self._epoch + (self.clock.now() if reading is None else reading)

    def reading(self, unix: float) -> float:
        """The clock reading at Unix time ``unix`` (negative before this process started)."""
        return unix - self._epoch

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

    async def outputs_written(self) -> None:
        """Wait until every output being written to the state folder is there (or failed)."""
        if self._writes:
            # asyncio.wait, not gather: a cancelled caller (a 504) must not cancel the writes.
            await asyncio.wait(list(self._writes))

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.outbound.close()
        # Outputs still being written finish first: the store is closed after this.
        await asyncio.gather(*self._writes, return_exceptions=True)

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
        self.put_file(key, data, content_type)
        return f"{self.origin}{FILES}{key}"

    def put_file(self, key: str, data: bytes, content_type: str) -> None:
        """Keep bytes under ``key`` in the public file store (in the state folder if any)."""
        if self.store is not None:
            self.store.save_file(key, data, content_type)
            self.files[key] = (None, content_type)
        else:
            self.files[key] = (data, content_type)

    def file(self, key: str) -> tuple[bytes | Path, str] | None:
        """A stored file's bytes (or the path that holds them) and content type."""
        entry = self.files.get(key)
        if entry is None:
            return None
        data, content_type = entry
        if data is None:
            assert self.store is not None
            return self.store.files / key, content_type
        return data, content_type

    def store_output(self, data: bytes, fmt: str) -> str:
        """Keep an output image; return its signed download URL, valid for ``url_ttl``."""
        self.prune()
        key = secrets.token_hex(12)
        content_type = "image/png" if fmt == "png" else "image/jpeg"
        self.outputs[key] = (data, content_type, self.now())  # from memory until written
        if self.store is not None:
            self._write_output(self.store, key, data, content_type)
        self.prune()  # a cap of zero keeps nothing: the URL then answers 404 at once
        expires = math.ceil(self.unix() + self.config.url_ttl)  # valid at least url_ttl
        sig = self._url_signature(key, expires)
        return f"{self.origin}{OUTPUTS}{key}.{fmt}?expires={expires}&sig={sig}"

    def _write_output(self, store: StateStore, key: str, data: bytes, content_type: str) -> None:
        """Write an output to the state folder in a thread (a 4K image is megabytes), then let
        go of its bytes; until then it is served from memory."""
        made = self.outputs[key][2]
        loop = asyncio.get_running_loop()
        write = loop.run_in_executor(None, store.save_output, key, data, content_type, self.unix())
        self._writes.add(write)

        def written(done: asyncio.Future[None]) -> None:
            self._writes.discard(done)
            if done.cancelled() or done.exception() is not None:
                return  # kept in memory: served until evicted, lost on restart
            if key in self.outputs:
                self.outputs[key] = (None, content_type, made)
            else:
                store.delete_output(key)  # evicted while being written

        write.add_done_callback(written)

    async def put_file_async(self, key: str, data: bytes, content_type: str) -> None:
        """``put_file`` with the state folder's write in a thread (training photos are large)."""
        if self.store is None:
            self.put_file(key, data, content_type)
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.store.save_file, key, data, content_type)
        self.files[key] = (None, content_type)

    def signed_output(self, key: str, expires: str, sig: str) -> tuple[bytes | Path, str]:
        """The output a download URL names (its bytes, or the file that holds them), once its
        signature and expiry are checked."""
        try:
            moment = int(expires)
        except ValueError:
            raise APIFailure(403, "INVALID_SIGNATURE", "the download URL is not signed") from None
        if not hmac.compare_digest(self._url_signature(key, moment), sig):
            raise APIFailure(403, "INVALID_SIGNATURE", "the download URL signature does not match")
        if self.unix() > moment:
            raise APIFailure(403, "URL_EXPIRED", "the download URL has expired")
        self.prune()
        entry = self.outputs.get(key)
        if entry is None:
            raise APIFailure(
                404, "NOT_FOUND", "no such output (outputs are kept for output_ttl, max_outputs)"
            )
        data, content_type, _ = entry
        if data is None:
            assert self.store is not None
            return self.store.outputs / key, content_type
        return data, content_type

    def _url_signature(self, key: str, expires: int) -> str:
        return hmac.new(self._url_key, f"{key}:{expires}".encode(), hashlib.sha256).hexdigest()

    async def fetch(self, url: str, field_name: str) -> bytes:
        """Download an input or training URL (the emulator's own file store is read directly)."""
        store_prefix = f"{self.origin}{FILES}"
        if url.startswith(store_prefix):
            entry = self.file(url[len(store_prefix) :])
            if entry is None:
                raise APIFailure(400, "IMAGE_DOWNLOAD_FAILED", f"{field_name}: 404 from {url}")
            data = entry[0]
            if isinstance(data, Path):
                return await asyncio.get_running_loop().run_in_executor(None, data.read_bytes)
            return data
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
            urls = [self.store_output(b, fmt) for b in blobs]
            # A URL is announced only once its file is in the state folder: a process killed
            # after the answer (or the job's SUCCEEDED) must not leave a URL that answers 404.
            await self.outputs_written()
            return {"known_subjects": {"counts": counts}, "images": [], "download_urls": urls}
        return {
            "known_subjects": {"counts": counts},
            "images": [base64.b64encode(b).decode("ascii") for b in blobs],
            "download_urls": [],
        }

    def job_json(self, job: JobRecord) -> dict[str, Any]:
        """A job as ``GET /jobs/{id}`` shows it now."""
        now = self.now()
        result = job.result
        if result is not None and any(not u.startswith("http") for u in result["download_urls"]):
            # Read back from a state folder: the URLs are relative to whatever origin serves now.
            urls = [u if u.startswith("http") else self.origin + u for u in result["download_urls"]]
            result = {**result, "download_urls": urls}
        return {
            "job_id": job.id,
            "status": job.status(now),
            "created_at": self.timestamp(job.submitted),
            "updated_at": self.timestamp(job.updated(now)),
            "result": result,
            "error": job.error,
        }

    # -- profiles ----------------------------------------------------------------------------

    def add_ready_profile(
        self,
        tag: str | None,
        tier: str,
        training_seconds: float = 0.0,
        profile_id: str | None = None,
    ) -> str:
        """A validated profile with a synthetic face, READY after ``training_seconds``; with
        the given id, or a new one."""
        if profile_id is not None and (
            not profile_id.startswith("prof_") or not ID_PATTERN.fullmatch(profile_id)
        ):
            raise ValueError(f"profile_id: {profile_id!r} is not a profile id (prof_ + letters)")
        if profile_id is not None and profile_id in self.profiles:
            raise ValueError(f"profile_id: {profile_id!r} exists already")
        now = self.now()
        record = ProfileRecord(
            id=profile_id or self.new_id("prof_"),
            tier=tier,
            tag=tag,
            image_urls=[],
            created=now,
            training_seconds=training_seconds,
            validated_at=now,
            face_seed=len(self.profiles) + 1,
        )
        self.profiles[record.id] = record
        self.save_profile(record)
        return record.id

    def get_profile(self, profile_id: str) -> ProfileRecord:
        if not ID_PATTERN.fullmatch(profile_id) or profile_id not in self.profiles:
            raise APIFailure(404, "PROFILE_NOT_FOUND", f"profile {profile_id[:80]} does not exist")
        return self.profiles[profile_id]

    def profile_json(self, record: ProfileRecord) -> dict[str, Any]:
        status, message = record.status(self.now())
        return {"profile_id": record.id, "status": status, "message": message, "tag": record.tag}


# -- records as JSON rows (times in Unix seconds) ----------------------------------------------

_PROFILE_TIMES = ("created", "validated_at")
_JOB_TIMES = ("submitted", "starts", "finished")


Shift = Callable[[float], float]


def _profile_json(record: ProfileRecord, unix: Shift) -> dict[str, Any]:
    row = {f.name: getattr(record, f.name) for f in fields(record)}
    del row["picture"], row["face"]  # kept in their own columns
    for name in _PROFILE_TIMES:
        if row[name] is not None:
            row[name] = unix(row[name])
    return row


def _known(row: dict[str, Any], kind: type[Any]) -> dict[str, Any]:
    """The fields of ``row`` that ``kind`` has (a newer version may have written more)."""
    names = {f.name for f in fields(kind)}
    return {k: v for k, v in row.items() if k in names}


def _profile_from_json(row: dict[str, Any], reading: Shift) -> ProfileRecord:
    row = _known(row, ProfileRecord)
    for name in _PROFILE_TIMES:
        if row.get(name) is not None:
            row[name] = reading(row[name])
    return ProfileRecord(**row)


def _job_json(job: JobRecord, unix: Shift, origin: str) -> dict[str, Any]:
    row = {f.name: getattr(job, f.name) for f in fields(job)}
    for name in _JOB_TIMES:
        if row[name] is not None:
            row[name] = unix(row[name])
    if job.result is not None and origin:
        urls = [u.removeprefix(origin) for u in job.result["download_urls"]]
        row["result"] = {**job.result, "download_urls": urls}
    return row


def _job_from_json(row: dict[str, Any], reading: Shift) -> JobRecord:
    row = _known(row, JobRecord)
    for name in _JOB_TIMES:
        if row.get(name) is not None:
            row[name] = reading(row[name])
    return JobRecord(**row)
