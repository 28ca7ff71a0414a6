"""``PhotaEmulator``: run the emulated Phota API on loopback, in this loop or in a thread."""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from aiohttp import web

from . import _service
from ._clock import Clock, MonotonicClock
from ._faults import DropWhen, Fault
from ._ratelimit import RateLimit
from ._records import EmulatorConfig
from ._render import Seeds
from ._routes import build_app
from ._state import API_PREFIX, EmulatorState
from ._store import StateStore


class PhotaEmulator:
    """A faithful local Phota API server with fault injection and a ledger of charges.

    Use it in one of three ways:

    ```python
    # served by the running event loop
    async with PhotaEmulator() as emu:
        ...

    # served by a background thread with its own loop
    with PhotaEmulator() as emu:
        ...

    # the pytest fixture (a threaded emulator)
    def test_x(phota_emulator): ...
    ```

    Either way ``emu.base_url`` and ``emu.api_key`` are what a client needs.

    Args:
        api_key: the key the server accepts; a random one by default.
        balance: prepaid credit in dollars; calls beyond it answer 402.
        training_seconds: how long training takes after validation, per tier, or one number
            for both. The real service takes about 20 minutes.
        validation_seconds: the least time a profile spends in ``VALIDATING``.
        job_queue_seconds: how long a job stays ``QUEUED``.
        job_run_seconds: how long a job stays ``RUNNING`` before its images are made.
        processing_seconds: extra time every image call takes (to provoke 504s and timeouts).
        sync_timeout: the synchronous time limit; past it the call answers 504 and refunds.
        url_ttl: validity of signed download URLs, in seconds (24 hours by default).
        max_body_bytes: request bodies above this answer 413.
        max_output_side: cap on the longer side of output images (keeps tests fast); ``None``
            gives the real sizes (1K = 1024 px and so on).
        blocked_words: prompt words refused with 400 ``CONTENT_MODERATION``.
        latency: seconds every answer on an API route is held *after* the request has been
            processed and charged and *before* it is sent (a far-away server); a
            ``(low, high)`` pair draws each delay uniformly from that range. A client killed
            in this window has been charged without learning it. Can be changed while running
            through the ``latency`` property.
        host: interface to listen on; loopback by default.
        port: port to listen on; 0 picks a free one.
        clock: what the simulated service reads time from and sleeps on (training, validation,
            job phases, processing time, latency, delay faults, callback back-off, download
            URL expiry, job timestamps). Real monotonic time by default; pass a
            ``ManualClock`` to move time yourself with ``advance()``.
        idempotency_ttl: how long, in seconds on the clock, a ``client_request_id`` keeps
            naming its job (24 hours by default); a later submit with it is a new job.
        rate_limit: a token bucket of the account, refusing what it cannot take with 429 (or
            503) before any work or charge: a ``RateLimit``, a number of requests per second,
            a mapping of ``RateLimit`` fields, or ``None`` (no limit, the default). Can be
            changed while running through the ``rate_limit`` property.
        output_ttl: how long, in seconds on the clock, an output image and a finished job's
            record are kept (by default ``url_ttl``: as long as the download URLs are valid). A URL whose
            output is gone answers 404 ``NOT_FOUND``; one past its expiry 403 ``URL_EXPIRED``.
            An evicted job answers 404 ``JOB_NOT_FOUND``; its ``client_request_id`` still
            returns it, uncharged, until the key expires.
        max_outputs: the most output images kept (1,000 by default); the oldest go first.
        max_jobs: the most job records kept (10,000 by default); the oldest finished go first,
            jobs still queued or running are never evicted.
        log_ttl: how long request log entries are kept, in seconds (1 hour by default).
        max_log: the most request log (and callback log) entries kept (10,000 by default);
            ``requests_dropped`` counts the entries let go. The ledger is always complete.
        state_dir: a folder that keeps the account across restarts (``None``: memory only):
            profiles (their training goes on while the emulator is down), jobs (unfinished
            ones run again), idempotency keys, the ledger and balance, output images and the
            file store, the API key (when none is given) and the signing secrets, in SQLite
            and files. Created if missing; its stored balance wins over ``balance``. Use a
            fixed ``port`` with it: URLs handed out earlier name the old port.
        seed: makes the emulator reproducible: the same sequence of calls then gives the same
            output bytes (each output is a variant drawn from this seed, the request and how
            often that request was seen). ``None`` (the default): every call differs.

    Raises:
        ValueError: a latency, ``idempotency_ttl`` or retention setting that is negative or
            not a number, a ``clock`` that is not a ``Clock``, or a ``rate_limit`` that is not
            one.
        StateDirError: (a ``ValueError``) ``state_dir`` is not a folder, holds files that are
            not an emulator's state, or its database is corrupt, foreign or newer.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        balance: float = 1000.0,
        training_seconds: float | Mapping[str, float] = 1.0,
        validation_seconds: float = 0.05,
        job_queue_seconds: float = 0.05,
        job_run_seconds: float = 0.1,
        processing_seconds: float = 0.0,
        sync_timeout: float = 600.0,
        url_ttl: float = 24 * 3600,
        max_body_bytes: int = 64 * 1024 * 1024,
        max_output_side: int | None = None,
        blocked_words: tuple[str, ...] = ("forbidden-content",),
        latency: float | tuple[float, float] = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        idempotency_ttl: float = 24 * 3600,
        rate_limit: RateLimit | float | Mapping[str, Any] | None = None,
        output_ttl: float | None = None,
        max_outputs: int = 1000,
        max_jobs: int = 10_000,
        log_ttl: float = 3600,
        max_log: int = 10_000,
        state_dir: str | os.PathLike[str] | None = None,
        seed: int | None = None,
    ) -> None:
        if clock is None:
            clock = MonotonicClock()
        elif not isinstance(clock, Clock):
            raise ValueError(f"clock must have now() and async sleep(seconds), not {clock!r}")
        if not (idempotency_ttl >= 0 and math.isfinite(idempotency_ttl)):
            raise ValueError(f"idempotency_ttl must be >= 0 seconds, not {idempotency_ttl!r}")
        if isinstance(training_seconds, Mapping):
            training = {
                "standard": float(training_seconds["standard"]),
                "fast": float(training_seconds["fast"]),
            }
        else:
            training = {"standard": float(training_seconds), "fast": float(training_seconds)}
        if output_ttl is None:
            output_ttl = url_ttl
        for name, seconds in (("output_ttl", output_ttl), ("log_ttl", log_ttl)):
            if not (seconds >= 0 and math.isfinite(seconds)):
                raise ValueError(f"{name} must be >= 0 seconds, not {seconds!r}")
        for name, count in (("max_outputs", max_outputs), ("max_jobs", max_jobs)):
            if not (isinstance(count, int) and count >= 0):
                raise ValueError(f"{name} must be a whole number >= 0, not {count!r}")
        if not (isinstance(max_log, int) and max_log >= 0):
            raise ValueError(f"max_log must be a whole number >= 0, not {max_log!r}")
        store = StateStore(state_dir) if state_dir is not None else None
        if store is not None:
            stored_key = store.setting("api_key")
            api_key = api_key or stored_key
            if api_key is None:
                api_key = "phota_emu_" + secrets.token_hex(12)
            if api_key != stored_key:
                store.set_setting("api_key", api_key)
        self._config = EmulatorConfig(
            api_key=api_key or "phota_emu_" + secrets.token_hex(12),
            balance=balance,
            training_seconds=training,
            validation_seconds=validation_seconds,
            job_queue_seconds=job_queue_seconds,
            job_run_seconds=job_run_seconds,
            processing_seconds=processing_seconds,
            sync_timeout=sync_timeout,
            url_ttl=url_ttl,
            max_body_bytes=max_body_bytes,
            max_output_side=max_output_side,
            blocked_words=tuple(w.lower() for w in blocked_words),
            latency=_latency_range(latency),
            idempotency_ttl=float(idempotency_ttl),
            output_ttl=float(output_ttl),
            max_outputs=max_outputs,
            max_jobs=max_jobs,
            log_ttl=float(log_ttl),
            max_log=max_log,
        )
        self._host = host
        self._port = port
        self._clock = clock
        self._state = EmulatorState(self._config, clock, store)
        if store is not None:
            store.close()  # read; opened again on the first write, so an unstarted one holds none
        self._state.limits.limit = RateLimit.of(rate_limit)
        self._state.seeds = Seeds(seed)
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        where = self._state.origin or "not started"
        return f"<PhotaEmulator {where}>"

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock the simulated service lives by (a ``ManualClock`` if one was given)."""
        return self._clock

    @property
    def api_key(self) -> str:
        """The API key this emulator accepts."""
        return self._config.api_key

    @property
    def origin(self) -> str:
        """``http://host:port`` of the running server."""
        if not self._state.origin:
            raise RuntimeError("the emulator is not running")
        return self._state.origin

    @property
    def base_url(self) -> str:
        """The API base URL, the emulator's counterpart of ``https://api.photalabs.com/v1/phota``."""
        return self.origin + API_PREFIX

    async def start(self) -> None:
        """Start serving from the running event loop."""
        if self._runner is not None:
            raise RuntimeError("the emulator is already running")
        if self._state.store is not None:
            self._state.store.open()  # refused while another emulator serves the same folder
        self._state.stopping = asyncio.Event()  # bound to this loop; a restart gets a new one
        runner = web.AppRunner(build_app(self._state), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        await site.start()
        host, port = runner.addresses[0][:2]
        self._state.origin = f"http://{host}:{port}"
        self._runner = runner
        _service.resume(self._state)  # work read back from a state folder, or cut by stop()

    async def stop(self) -> None:
        """Stop serving, cancel training and job tasks, close every connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            self._state.origin = ""
            if self._state.store is not None:
                self._state.store.close()  # opened again by a later start()

    async def __aenter__(self) -> PhotaEmulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start_in_thread(self) -> None:
        """Serve from a new background thread with its own event loop; returns once listening."""
        if self._thread is not None:
            raise RuntimeError("the emulator is already running")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # handed to the starting thread below
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="phota-emulator", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = self._loop = None
            raise failure[0]

    def stop_thread(self) -> None:
        """Stop a server started with ``start_in_thread`` and wait for its thread to end."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = self._loop = None

    def __enter__(self) -> PhotaEmulator:
        self.start_in_thread()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_thread()

    # -- fault injection -------------------------------------------------------------------

    def add_fault(
        self,
        path: str,
        *,
        times: int = 1,
        method: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        body: bytes | str | dict[str, Any] | None = None,
        delay: float | None = None,
        drop: DropWhen | None = None,
        truncate: bool = False,
        malformed: bool = False,
        content_type: str | None = None,
    ) -> Fault:
        """Script a fault for the next ``times`` requests whose path matches ``path``.

        ``path`` is a glob relative to the API base, such as ``"/enhance"`` or
        ``"/profiles/*/status"``. Exactly one effect must be chosen; see ``Fault``.
        """
        fault = Fault(
            path=path,
            times=times,
            method=method,
            status=status,
            retry_after=retry_after,
            body=body,
            delay=delay,
            drop=drop,
            truncate=truncate,
            malformed=malformed,
            content_type=content_type,
        )
        return self._state.faults.add(fault)

    def clear_faults(self) -> None:
        """Forget every fault not yet consumed."""
        self._state.faults.clear()

    def fail_next_jobs(
        self, times: int = 1, *, code: str = "PROCESSING_FAILED", detail: str = "the job failed"
    ) -> None:
        """Make the next ``times`` jobs end ``FAILED`` with this error (and be refunded)."""
        self._state.job_failures.extend([(code, detail)] * times)

    # -- account and introspection ---------------------------------------------------------

    @property
    def balance(self) -> float:
        """Prepaid credit left, in dollars."""
        return self._state.balance

    @balance.setter
    def balance(self, value: float) -> None:
        self._state.balance = value

    @property
    def latency(self) -> tuple[float, float]:
        """The ``(low, high)`` range, in seconds, of the delay before each API answer."""
        return self._config.latency

    @latency.setter
    def latency(self, value: float | tuple[float, float]) -> None:
        self._config.latency = _latency_range(value)

    @property
    def rate_limit(self) -> RateLimit | None:
        """The account's rate limit (``None``: none); settable while running, from any thread,
        as a ``RateLimit``, a number of requests per second, a mapping or ``None``.

        Raises:
            ValueError: on assignment, a value that is not a rate limit.
        """
        return self._state.limits.limit

    @rate_limit.setter
    def rate_limit(self, value: RateLimit | float | Mapping[str, Any] | None) -> None:
        self._state.limits.limit = RateLimit.of(value)

    @property
    def rate_limited(self) -> int:
        """How many requests the rate limit has refused (each is also in ``requests``)."""
        return self._state.limits.refused

    @property
    def webhook_secret(self) -> str:
        """The account's webhook signing secret."""
        return self._state.webhook_secret

    @property
    def requests(self) -> list[dict[str, Any]]:
        """The request log, oldest first: method, path, query, status, request_id, fault, json
        (image data shortened to its length). It keeps the last ``max_log`` requests of the
        last ``log_ttl`` seconds; also served as JSON by ``GET /_emulator/requests``."""
        self._state.prune_log()
        return list(self._state.requests.copy())

    @property
    def requests_dropped(self) -> int:
        """How many request log entries retention (``log_ttl``, ``max_log``) has let go."""
        return self._state.requests_dropped

    @property
    def state_dir(self) -> str | None:
        """The state folder the account is kept in, or ``None`` (memory only)."""
        store = self._state.store
        return None if store is None else str(store.folder)

    @property
    def ledger(self) -> list[dict[str, Any]]:
        """Every charge and refund, in order (complete; also ``GET /_emulator/ledger``)."""
        return list(self._state.billing.entries)

    @property
    def callbacks(self) -> list[dict[str, Any]]:
        """Every webhook delivery attempt."""
        return list(self._state.callbacks)

    def charges(self) -> list[dict[str, Any]]:
        """Ledger entries that are charges."""
        return [e for e in self._state.billing.entries if e["kind"] == "charge"]

    def net_spent(self) -> float:
        """Charges minus refunds, in dollars."""
        return self._state.billing.net_spent()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job as ``GET /jobs/{id}`` would show it, plus its client_request_id."""
        return [
            {**self._state.job_json(job), "client_request_id": job.client_request_id}
            for job in list(self._state.jobs.values())
        ]

    def profiles(self) -> list[dict[str, Any]]:
        """Every profile as its status call would show it, with tag, tier and ``ready_at``.

        ``ready_at`` is the clock reading (``time.monotonic()`` by default) at which the profile
        becomes (or became) READY, ``None`` while it is validating or when it failed.
        """
        return [
            {**self._state.profile_json(p), "tier": p.tier, "ready_at": p.ready_at()}
            for p in list(self._state.profiles.values())
        ]

    def add_profile(
        self,
        *,
        tag: str | None = None,
        tier: str = "fast",
        training_seconds: float = 0.0,
        profile_id: str | None = None,
    ) -> str:
        """Create a profile whose photos are already validated, without a charge; return its id.

        ``profile_id`` chooses the id (``prof_`` then letters, digits, ``_`` or ``-``; 64
        characters at most), for code and documentation that name a fixed one; by default a
        new id is made.

        It is READY at once by default, for tests that need a trained subject without waiting
        for one; with ``training_seconds`` it goes through ``QUEUING`` and ``IN_PROGRESS`` and
        is READY that many seconds from now on the emulator's clock, for tests of waiting that
        upload no photos.
        """
        if not self._state.origin:
            raise RuntimeError("the emulator is not running")
        if not training_seconds >= 0:
            raise ValueError("training_seconds must be >= 0")
        return self._state.add_ready_profile(tag, tier, training_seconds, profile_id)

    def set_profile_status(self, profile_id: str, status: str, message: str | None = None) -> None:
        """Force a profile into a status (``INACTIVE``, ``ERROR`` ...), overriding its clock."""
        record = self._state.profiles[profile_id]
        record.forced_status = status
        record.forced_message = message
        self._state.save_profile(record)

    def store_file(self, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Put bytes in the emulator's public file store; return their public URL."""
        if not self._state.origin:
            raise RuntimeError("the emulator is not running")
        return self._state.store_file(data, content_type)


def _latency_range(value: float | tuple[float, float]) -> tuple[float, float]:
    """``0.3`` -> ``(0.3, 0.3)``; ``(0.2, 0.4)`` stays; negative or reversed ranges are refused."""
    low, high = (value, value) if isinstance(value, (int, float)) else value
    low, high = float(low), float(high)
    if not (0 <= low <= high and math.isfinite(high)):
        raise ValueError(f"latency must be >= 0 seconds, low <= high; got {value!r}")
    return low, high
