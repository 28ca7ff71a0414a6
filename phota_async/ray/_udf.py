"""Callable classes for ``ray.data.Dataset.map_batches``: one ``PhotaClient`` per actor.

Theory of operation. Ray Data builds each class once per actor with ``fn_constructor_kwargs``
and calls it on batches; ``__call__`` is an async generator, so Ray runs it on an event loop of
the actor's own, where the client is opened at the first batch and kept for the actor's life
(closed when Ray lets the actor go, or by ``close()``). The rows of a batch run concurrently,
``concurrency`` at a time.

Exactly once. Every row is a keyed job: its ``client_request_id`` is ``derive_key(run_id,
identity, attempt)`` with the identity ``_batch`` gives a batch item (a digest of the call's
kind and options and of the row's input), so the key is the same on whichever worker, in
whichever retry of a task, in whichever rerun of the pipeline: the server answers a resubmit
with the original job and does not charge it again. A FAILED job (refunded) is tried again at
once under the next attempt's key, up to ``attempts``. The server is the only store: past its
key retention (Phota documents none; the emulator keeps keys 24 hours) a rerun pays again for
rows whose outputs it cannot find; with ``out_dir``, a row whose outputs are all on disk is
skipped without any request, however old they are.

Ending. The package closes nothing from ``__del__`` (design rule), save here: Ray Data gives a
callable class no other end hook. Its map actor's ``__ray_shutdown__`` (Ray 2.60,
``actor_pool_map_operator.py``) drops the one reference to the instance "to trigger
``UDF.__del__``" after the actor's last task, on a graceful exit only; so ``__del__`` calls
``close()``, which hands ``aclose()`` to the actor's own loop (the unspent budget lease goes
back to the governor). A killed actor runs nothing: its lease stays counted (see
``_governor``) and its connections die with the process.

Governor gone. The governor is not restarted (``max_restarts=0``: restarted empty it would
forget what it leased). If it dies or ``close_governor`` ends it mid-run, every row that still
needs a permit or a lease ends as a row with an ``error`` (no request sent, nothing charged);
rerun with the same run id to finish them (done rows cost nothing). An actor built after that
point (Ray replacing a dead one) creates a fresh governor with the budget it is given, which
counts nothing of what was spent before it.

Shared limits: see ``_governor``. No exception of one row escapes: a failed row is a row with
``error``; only a wrong configuration (refused when the class is built) stops the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from .._batch import derive_key, estimate_cost, item_identity, options_digest
from .._budget import Budget, Prices, reserved_price
from .._client import PhotaClient, _identity_options
from .._files import off_loop
from .._validate import BATCH_ARGUMENTS, edit_fields, enhance_fields, generate_call, remix_fields
from ..errors import BudgetExceededError, InvalidRequestError, JobFailedError
from ..models import ImageResult, Job
from ._governor import Governor, governor_name

NAMESPACE = "phota_async"
_IMAGE_COLUMNS = ("bytes", "image", "path")
_OFF_LOOP_BYTES = 1 << 20
# Constructor arguments of the classes themselves (never sent to the API).
_OWN = (*BATCH_ARGUMENTS, "attempts", "client_options", "column", "keep_inputs", "lease")


class SecretRef:
    """An API key kept in Ray's object store: only a reference to it is pickled into the task
    specs of ``map_batches`` (a plain string would be stored there in clear text).

    Make one with ``secret(key)`` in the driver; pass it as ``api_key=``.
    """

    def __init__(self, ref: Any) -> None:
        self._ref = ref

    def __repr__(self) -> str:
        return "<SecretRef ***>"

    def reveal(self) -> str:
        """The key itself (fetched from the object store)."""
        import ray

        value = ray.get(self._ref)
        if not isinstance(value, str):
            raise InvalidRequestError("api_key", "the secret reference does not hold a string")
        return value


def secret(value: str) -> SecretRef:
    """Put an API key in Ray's object store and return a reference to pass as ``api_key=``.

    Args:
        value: the API key.

    Returns:
        A ``SecretRef`` (its pickled form carries no key).

    Raises:
        InvalidRequestError: ``value`` is not a non-empty string.
    """
    import ray

    if not isinstance(value, str) or not value:
        raise InvalidRequestError("api_key", "must be a non-empty string")
    return SecretRef(ray.put(value))


def governor(run_id: str, *, budget: float | None = None) -> Any:
    """The run's governor actor (created on first use): shared pace and budget of every actor.

    Create it from the driver before the pipeline to set the budget, read ``stats`` from it
    during or after the run, and end it with ``close_governor``. It is a detached actor in the
    ``phota_async`` namespace: it outlives the actors that use it (a killed actor's task is
    retried under the same governor); the first creation's budget is the one that holds.

    Args:
        run_id: the run id the pipeline's classes are given.
        budget: the run's cluster-wide limit in dollars (``None``: no cap).

    Returns:
        The Ray actor handle (``await handle.stats.remote()`` or ``ray.get``).
    """
    import ray

    remote = ray.remote(Governor).options(
        name=governor_name(run_id),
        namespace=NAMESPACE,
        lifetime="detached",
        get_if_exists=True,
        num_cpus=0,
        max_restarts=0,  # a governor restarted empty would forget what it leased
    )
    return remote.remote(budget)


def governor_stats(run_id: str) -> dict[str, Any]:
    """The run's governor figures (budget pool, permits, throttling, pace).

    Raises:
        ValueError: the run has no governor.
    """
    import ray

    handle = ray.get_actor(governor_name(run_id), namespace=NAMESPACE)
    return dict(ray.get(handle.stats.remote()))


def close_governor(run_id: str) -> None:
    """End the run's governor (a later pipeline with this run id starts a fresh one)."""
    import ray

    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(governor_name(run_id), namespace=NAMESPACE))


class _Pace:
    """This actor's permits from the governor, taken in leases of ``size``."""

    def __init__(self, handle: Any, size: int) -> None:
        self._handle = handle
        self._size = size
        self._left = 0
        self._epoch = 0
        self._ok = 0
        self._seen = 0
        self._unused = 0
        self._waiting = False
        self._lock = asyncio.Lock()

    async def take(self, phota: PhotaClient) -> None:
        async with self._lock:
            studio = phota.throttle.lanes["studio"]
            if self._left == 0 or studio.throttled > self._seen:
                # A throttled answer is reported at once (the permits left of this lease are
                # dropped), so that the governor slows every actor within one round trip.
                throttled, self._seen = studio.throttled - self._seen, studio.throttled
                ok, self._ok = self._ok, 0
                unused, self._unused, self._left = self._unused + self._left, 0, 0
                self._waiting = True
                try:
                    granted, self._epoch = await _ask(
                        self._handle.permits.remote(
                            self._size, ok, throttled, studio.pause_left, self._epoch, unused
                        )
                    )
                finally:
                    self._waiting = False
                self._left = granted
            self._left -= 1

    def admitted(self) -> None:
        """One submit was admitted; reported with the next lease, or at once when a lease is
        being waited for (during slow start it frees the governor's window)."""
        self._ok += 1
        if self._waiting:
            self.flush()

    def unused(self) -> None:
        """A permit taken for a submit that was not sent (or failed): it is given back."""
        self._unused += 1
        if self._waiting:
            self.flush()

    def flush(self, *, leftover: bool = False) -> None:
        """Report the admitted submits and unused permits not reported yet (without waiting
        for an answer); with ``leftover``, give back the permits left of the lease too."""
        if leftover and not self._lock.locked():
            self._unused, self._left = self._unused + self._left, 0
        if self._ok or self._unused:
            ok, unused, self._ok, self._unused = self._ok, self._unused, 0, 0
            self._handle.report.remote(ok, 0, 0.0, self._epoch, unused)


class _GovernorGone(Exception):
    """The run's governor died or was ended: no permit nor lease can be had."""


async def _ask(ref: Any) -> Any:
    """The answer of a governor call; its death as ``_GovernorGone`` (one line, not Ray's
    multi-line report), so the row's error says what to do."""
    from ray.exceptions import RayActorError

    try:
        return await ref
    except RayActorError as exc:
        raise _GovernorGone(
            "the run's governor is gone (ended or died); rerun with the same run id to finish "
            "(rows already done cost nothing)"
        ) from exc


class _Purse:
    """This actor's budget: a local ``Budget`` of the dollars leased from the governor."""

    def __init__(self, handle: Any, price: float, lease: int) -> None:
        self._handle = handle
        self._price = price
        self._lease = lease
        self.budget = Budget(0.0, name="leased")
        self._lock = asyncio.Lock()

    async def refill(self) -> bool:
        """Lease more when this actor cannot reserve one more row; whether it now can."""
        async with self._lock:
            if self.budget.spend.left >= self._price:
                return True  # another row leased meanwhile
            granted = await _ask(self._handle.lease.remote(self._price * self._lease))
            self.budget.extend(granted)
            return self.budget.spend.left >= self._price

    def refused(self, endpoint: str) -> BudgetExceededError:
        """The error for a row this actor's lease cannot cover, the pool being dry."""
        spend = self.budget.spend
        return BudgetExceededError(
            endpoint,
            estimate=self._price,
            spent=spend.spent,
            reserved=spend.pending,
            limit=spend.limit,
            scope="leased",
        )

    async def give_back(self) -> None:
        unused = self.budget.give_back()
        if unused > 0:
            await self._handle.give_back.remote(unused)


class _Row:
    """One row's outcome (its output columns)."""

    __slots__ = ("cost", "error", "job_id", "key", "output", "paths", "request_id", "skipped")

    def __init__(self, key: str | None = None) -> None:
        self.key = key
        self.job_id: str | None = None
        self.request_id: str | None = None
        self.cost: float | None = None
        self.error: str | None = None
        self.output: list[bytes] = []
        self.paths: list[str] = []
        self.skipped = False


def _rows(batch: Any) -> list[dict[str, Any]]:
    """A batch in any of Ray Data's formats (numpy dict, pandas, pyarrow) as row dicts."""
    if hasattr(batch, "to_pylist"):
        rows: list[dict[str, Any]] = batch.to_pylist()
        return rows
    if hasattr(batch, "to_dict") and hasattr(batch, "columns"):
        records: list[dict[str, Any]] = batch.to_dict("records")
        return records
    columns = {name: list(values) for name, values in dict(batch).items()}
    size = len(next(iter(columns.values()), []))
    return [{name: values[i] for name, values in columns.items()} for i in range(size)]


def _scalar(value: Any) -> Any:
    """A numpy scalar as the plain Python value pyarrow takes."""
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) == ():
        return item()
    return value


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _array_digest(array: Any) -> str:
    """A digest of a decoded image's pixels, shape and type (the same on every worker)."""
    head = f"array\0{tuple(array.shape)}\0{array.dtype.str}\0".encode()
    return hashlib.sha256(head + array.tobytes()).hexdigest()


def _png(array: Any) -> bytes:
    """A decoded image (``read_images``) as PNG bytes (lossless)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


class _Studio:
    """What the four classes share (see the module docstring)."""

    kind: ClassVar[str]

    def __init__(
        self,
        *,
        run_id: str,
        api_key: SecretRef | None = None,
        base_url: str | None = None,
        out_dir: str | Path | None = None,
        column: str | None = None,
        keep_inputs: bool = False,
        budget: float | None = None,
        concurrency: int = 16,
        lease: int = 4,
        attempts: int = 3,
        timeout: float = 900.0,
        client_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(run_id, str) or not run_id:
            raise InvalidRequestError("run_id", "must be a non-empty string")
        if api_key is not None and not isinstance(api_key, SecretRef):
            raise InvalidRequestError(
                "api_key",
                "a plain key would be pickled into Ray's task specs in clear text: set "
                "PHOTA_API_KEY on the workers, or pass phota_async.ray.secret(key)",
            )
        for name, value, least in (("concurrency", concurrency, 1), ("lease", lease, 1),
                                   ("attempts", attempts, 1)):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise InvalidRequestError(name, f"must be a whole number >= {least}")
        client_options = dict(client_options or {})
        for name in ("api_key", "base_url", "budget"):
            if name in client_options:
                raise InvalidRequestError("client_options", f"pass {name}= itself, not in here")
        self.run_id = run_id
        self._column = column
        self._keep_inputs = keep_inputs
        self._out_dir = Path(out_dir).absolute() if out_dir is not None else None
        self._attempts = attempts
        self._timeout = timeout
        self._options = options
        fields = self._fields(options)
        prices = client_options.get("prices")
        if prices is not None and not isinstance(prices, Prices):
            prices = Prices().extended(prices)
        # Leased by what the actor's client reserves per row (an enhance or remix at the
        # recognised-subject price), not the expected price: a lease in smaller units
        # could leave an actor with room to lease but none to reserve.
        price = reserved_price(prices or Prices(), self.kind, fields)
        self._n = int(fields.get("num_output_images") or 1)
        handle = governor(run_id, budget=budget)
        self._pace = _Pace(handle, lease)
        self._purse: _Purse | None = None
        if budget is not None:
            if price is None:
                raise InvalidRequestError(
                    "budget",
                    f"the price of {self.kind} with these options is unknown: pass "
                    "client_options={'prices': {...}} (see PhotaClient(prices=...))",
                )
            self._purse = _Purse(handle, price, lease)
        self._secret = api_key
        self._base_url = base_url
        self._client_options = client_options
        self._slots = asyncio.Semaphore(concurrency)
        self._phota: PhotaClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opening = asyncio.Lock()
        self._options_digest: str | None = None

    # -- per class -------------------------------------------------------------------------

    def _fields(self, options: Mapping[str, Any]) -> Mapping[str, Any]:
        raise NotImplementedError

    def _identity_options(self) -> Mapping[str, Any]:
        return _identity_options(self._options)

    async def _value(self, row: Mapping[str, Any]) -> tuple[Any, str]:
        """The row's input as the call takes it, and a digest of its content."""
        column = self._column or next((c for c in _IMAGE_COLUMNS if c in row), None)
        if column is None or column not in row:
            raise InvalidRequestError(
                "column", f"no image column (tried {column or ', '.join(_IMAGE_COLUMNS)})"
            )
        value = row[column]
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
        elif isinstance(value, str) and column == "path":
            data = await off_loop(Path(value).read_bytes)
        elif hasattr(value, "tobytes") and hasattr(value, "shape"):
            # Keyed by the pixels, not the PNG bytes: another worker's Pillow or zlib may
            # encode them differently, and a retried task must find the same key.
            return await off_loop(_png, value), await off_loop(_array_digest, value)
        else:
            raise InvalidRequestError(column, f"not an image: {type(value).__name__}")
        digest = await off_loop(_sha256, data) if len(data) > _OFF_LOOP_BYTES else _sha256(data)
        return data, digest

    async def _submit(self, phota: PhotaClient, value: Any, key: str) -> Job:
        raise NotImplementedError

    # -- running -------------------------------------------------------------------------

    async def __call__(self, batch: Any) -> AsyncIterator[Any]:
        """Run one batch: every row a keyed job; yields the batch with its output columns.

        Args:
            batch: a batch in any Ray Data format, with an image column (``bytes`` from
                ``read_binary_files``, ``image`` from ``read_images``, or ``path``), or a
                ``prompt`` column for ``PhotaGenerate``.

        Returns:
            An async iterator of one ``pyarrow.Table``: the input columns (but the image data,
            unless ``keep_inputs``) plus ``output`` (image bytes, empty with ``out_dir``),
            ``output_paths``, ``client_request_id``, ``job_id``, ``request_id``, ``cost``
            (dollars, ``None`` when unpriced), ``error`` (``None`` when it worked) and
            ``skipped`` (outputs already in ``out_dir``).
        """
        phota = await self._open()
        rows = _rows(batch)
        try:
            outcomes = await asyncio.gather(*(self._one(phota, row) for row in rows))
        finally:
            # An actor left without rows must hold no permit of the governor's window.
            self._pace.flush(leftover=True)
        yield self._table(rows, outcomes)

    async def _open(self) -> PhotaClient:
        async with self._opening:
            if self._phota is None:
                key = await off_loop(self._secret.reveal) if self._secret is not None else None
                budget = self._purse.budget if self._purse is not None else None
                phota = PhotaClient(
                    key, self._base_url, budget=budget, **self._client_options
                )  # fmt: skip
                self._options_digest = await options_digest(self.kind, self._identity_options())
                self._loop = asyncio.get_running_loop()
                self._phota = await phota.__aenter__()
            return self._phota

    async def _one(self, phota: PhotaClient, row: Mapping[str, Any]) -> _Row:
        async with self._slots:
            out = _Row()
            try:
                value, digest = await self._value(row)
            except Exception as exc:
                out.error = f"input: {type(exc).__name__}: {exc}"
                return out
            assert self._options_digest is not None
            identity = item_identity(self._options_digest, digest)
            out.key = derive_key(self.run_id, identity, 1)
            stem = self._stem(row, out.key)
            if stem is not None and (done := await off_loop(self._done, stem)):
                out.paths, out.skipped = done, True
                return out
            try:
                await self._run(phota, value, identity, stem, out)
            except (BudgetExceededError, _GovernorGone) as exc:
                out.error = f"not started: {exc}"
            except Exception as exc:
                out.error = f"{type(exc).__name__}: {exc}"
            return out

    async def _run(
        self, phota: PhotaClient, value: Any, identity: str, stem: str | None, out: _Row
    ) -> None:
        for attempt in range(1, self._attempts + 1):
            out.key = derive_key(self.run_id, identity, attempt)
            job = await self._paid_submit(phota, value, out.key)
            out.job_id = job.id
            try:
                result = await job.wait(timeout=self._timeout)
            except JobFailedError:
                if attempt == self._attempts:
                    raise
                continue  # refunded: the next attempt's key, as a batch rerun would
            async with result:
                await self._outputs(result, stem, out)
            return

    async def _paid_submit(self, phota: PhotaClient, value: Any, key: str) -> Job:
        """Submit under ``key`` with a permit from the governor, leasing money as needed."""
        purse = self._purse
        if (
            purse is not None
            and purse.budget.spend.left < purse._price
            and not await purse.refill()
        ):
            # The pool is dry: refused here, without a permit (a governor round trip).
            raise purse.refused(self.kind)
        while True:
            await self._pace.take(phota)
            try:
                job = await self._submit(phota, value, key)
            except BudgetExceededError:
                self._pace.unused()
                # Refused locally, never sent: lease more, or give up when the pool is dry.
                if purse is None or not await purse.refill():
                    raise
                continue
            except BaseException:
                self._pace.unused()  # every permit is accounted for, or the window shrinks
                raise
            self._pace.admitted()
            return job

    async def _outputs(self, result: ImageResult, stem: str | None, out: _Row) -> None:
        out.request_id = result.request_id
        out.cost = estimate_cost(self.kind, result)
        if stem is not None:
            assert self._out_dir is not None
            out.paths = [str(p) for p in await result.save(self._out_dir, stem=stem)]
        else:
            out.output = [await result.read(i) for i in range(len(result))]

    def _stem(self, row: Mapping[str, Any], key: str) -> str | None:
        """Output files' stem: the input's name and the key (a rerun finds them again)."""
        if self._out_dir is None:
            return None
        path = row.get("path")
        name = Path(str(path)).stem if isinstance(path, str) and path else self.kind
        return f"{name}.{key[3:19]}"

    def _done(self, stem: str) -> list[str] | None:
        """Every output of a row already on disk (written atomically), or ``None``."""
        assert self._out_dir is not None
        found: list[str] = []
        for index in range(self._n):
            match = sorted(self._out_dir.glob(f"{_glob_escape(stem)}-{index}.*"))
            match = [p for p in match if not p.name.endswith(".part")]
            if not match:
                return None
            found.append(str(match[0]))
        return found

    def _table(self, rows: Sequence[Mapping[str, Any]], outcomes: Sequence[_Row]) -> Any:
        import pyarrow as pa

        dropped = set() if self._keep_inputs else {"bytes", "image"}
        names = [n for n in (rows[0] if rows else {}) if n not in dropped]
        columns: dict[str, Any] = {n: pa.array([_scalar(r[n]) for r in rows]) for n in names}
        columns["output"] = pa.array([o.output for o in outcomes], pa.list_(pa.binary()))
        columns["output_paths"] = pa.array([o.paths for o in outcomes], pa.list_(pa.string()))
        for name, kind in (("client_request_id", pa.string()), ("job_id", pa.string()),
                           ("request_id", pa.string()), ("cost", pa.float64()),
                           ("error", pa.string()), ("skipped", pa.bool_())):  # fmt: skip
            columns[name] = pa.array([getattr(o, _ATTR.get(name, name)) for o in outcomes], kind)
        return pa.table(columns)

    # -- ending ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Give the unspent budget lease back to the governor and close the client."""
        phota, self._phota = self._phota, None
        try:
            if self._purse is not None:
                await self._purse.give_back()
        finally:
            if phota is not None:
                await phota.aclose()

    def close(self, timeout: float = 30.0) -> None:
        """``aclose()`` from outside the actor's loop (Ray Data ends an actor by dropping the
        instance, which calls this); nothing when the client was never opened."""
        # ``__del__`` also runs on an instance whose ``__init__`` refused its arguments.
        loop: asyncio.AbstractEventLoop | None = getattr(self, "_loop", None)
        if (
            getattr(self, "_phota", None) is None
            or loop is None
            or loop.is_closed()
            or not loop.is_running()
        ):
            return
        with contextlib.suppress(Exception):
            if _running_loop() is loop:
                loop.create_task(self.aclose())
            else:
                asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(timeout)

    def __del__(self) -> None:
        # Ray Data's only signal that an actor is done with the instance (a graceful exit).
        self.close()


_ATTR = {"client_request_id": "key"}


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _glob_escape(text: str) -> str:
    import glob

    return glob.escape(text)


class PhotaEnhance(_Studio):
    """Enhance every photo of a dataset, paying once per photo across the cluster:

    ```python
    ds = ray.data.read_binary_files("photos/", include_paths=True)
    out = ds.map_batches(
        PhotaEnhance,
        fn_constructor_kwargs={"run_id": "nightly-1127"},
        concurrency=8,
        batch_size=16,
        num_cpus=0.25,
    )
    ```

    Args:
        run_id: names the run; rows are keyed by it (rerun with it to pay nothing twice).
        api_key: a ``secret(key)`` reference; by default ``PHOTA_API_KEY`` on the worker.
        base_url: the API root; by default ``PHOTA_BASE_URL`` on the worker, or production.
        out_dir: write outputs there as ``{name}.{key}-{index}.{ext}`` rather than into the
            ``output`` column; rows whose outputs are there are skipped on a rerun.
        column: the image column (default: ``bytes``, ``image`` or ``path``, the first found).
        keep_inputs: keep the image data columns in the output rows.
        budget: the run's cluster-wide limit in dollars (the governor's, set once per run).
        concurrency: rows of a batch in flight at once in one actor.
        lease: permits and dollars (in rows' prices) an actor takes from the governor at once.
        attempts: keys tried for a row whose job FAILED (refunded) before it is an error.
        timeout: seconds for each submit and each wait.
        client_options: more ``PhotaClient`` arguments (``max_concurrency``, ``poll``,
            ``prices``...).
        **options: the call's options (``EnhanceOptions``: ``profile_ids``, ``prompt``, ``n``...).

    Raises:
        InvalidRequestError: a wrong option (the pipeline stops before any row is sent).
    """

    kind = "enhance"

    def _fields(self, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return enhance_fields(options, type(self).__name__, _OWN)

    async def _submit(self, phota: PhotaClient, value: Any, key: str) -> Job:
        return await phota.jobs.submit_enhance(
            value, client_request_id=key, timeout=self._timeout, **self._options
        )


class PhotaEdit(_Studio):
    """Apply one edit prompt to every photo of a dataset; arguments as ``PhotaEnhance``, plus
    ``prompt`` (the instruction) and ``EditOptions``.

    Raises:
        InvalidRequestError: a wrong option or prompt.
    """

    kind = "edit"

    def __init__(self, *, prompt: str, **kwargs: Any) -> None:
        self._prompt = prompt
        super().__init__(**kwargs)

    def _fields(self, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return edit_fields(self._prompt, options, type(self).__name__, _OWN)

    def _identity_options(self) -> Mapping[str, Any]:
        return _identity_options({**self._options, "prompt": self._prompt})

    async def _submit(self, phota: PhotaClient, value: Any, key: str) -> Job:
        return await phota.jobs.submit_edit(
            self._prompt, images=[value], client_request_id=key, timeout=self._timeout,
            **self._options,
        )  # fmt: skip


class PhotaRemix(_Studio):
    """Restyle every photo of a dataset after one reference; arguments as ``PhotaEnhance``,
    plus ``reference`` (the style image: bytes, or a path readable on every worker).

    Raises:
        InvalidRequestError: a wrong option, or a reference that is not bytes or a path.
    """

    kind = "remix"

    def __init__(self, *, reference: bytes | str | Path, **kwargs: Any) -> None:
        if isinstance(reference, (str, Path)):
            reference = Path(reference).read_bytes()
        if not isinstance(reference, bytes):
            raise InvalidRequestError("reference", "must be bytes or a path")
        self._reference = reference
        super().__init__(**kwargs)

    def _fields(self, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return remix_fields(options, type(self).__name__, _OWN)

    def _identity_options(self) -> Mapping[str, Any]:
        # The digest ``remix_many`` gives a reference Path: the same bytes, the same key.
        return _identity_options({**self._options, "reference": _sha256(self._reference)})

    async def _submit(self, phota: PhotaClient, value: Any, key: str) -> Job:
        return await phota.jobs.submit_remix(
            value, reference=self._reference, client_request_id=key, timeout=self._timeout,
            **self._options,
        )  # fmt: skip


class PhotaGenerate(_Studio):
    """Generate images from a dataset of prompts (a ``prompt`` column, or ``column=``);
    arguments as ``PhotaEnhance`` with ``GenerateOptions``. Edit and generate prices are not
    published: under a ``budget`` pass ``client_options={"prices": {"generate/nb2": ...}}``.

    Raises:
        InvalidRequestError: a wrong option.
    """

    kind = "generate"

    def _fields(self, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return generate_call("[prompt]", options, type(self).__name__, _OWN).fields

    async def _value(self, row: Mapping[str, Any]) -> tuple[Any, str]:
        column = self._column or "prompt"
        prompt = row.get(column)
        if not isinstance(prompt, str):
            raise InvalidRequestError(column, "each row needs a prompt string")
        return prompt, _sha256(b"prompt\0" + prompt.encode())

    async def _submit(self, phota: PhotaClient, value: Any, key: str) -> Job:
        return await phota.jobs.submit_generate(
            value, client_request_id=key, timeout=self._timeout, **self._options
        )


__all__ = [
    "PhotaEdit",
    "PhotaEnhance",
    "PhotaGenerate",
    "PhotaRemix",
    "SecretRef",
    "close_governor",
    "governor",
    "governor_stats",
    "secret",
]
