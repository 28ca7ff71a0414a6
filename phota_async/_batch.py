"""Many studio calls at once: bounded, results as they complete, resumable from a manifest.

``BatchRun`` is an async iterator of ``BatchItem`` and an async context manager. Inside, one
supervisor task runs an anyio task group; a capacity limiter bounds the calls in flight; each
finished item goes through a memory stream to the consumer in completion order. One failure is
one failed item, never the end of the batch. Leaving the ``async with`` block (or ``aclose()``)
cancels whatever is still running and waits for it, so nothing outlives the run.

With a ``Manifest`` (a JSONL file), each finished input is recorded as soon as its outputs are
on disk, and a job's id as soon as it is submitted; a rerun skips what is done, resumes jobs
already paid for, and retries what failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._files import off_loop
from .errors import PhotaError
from .models import ImageResult

if TYPE_CHECKING:
    from ._client import PhotaClient

I = TypeVar("I")  # noqa: E741 - the conventional name for an input type

# Prices per output image (Phota's documentation); edit and generate depend on the base model,
# which the documentation does not list, so their cost is reported as unknown.
PER_IMAGE_PRICES = {"enhance": (0.12, 0.15), "remix": (0.12, 0.15)}


def estimate_cost(kind: str, result: ImageResult) -> float | None:
    """The documented price of one call's outputs, or ``None`` where it is not documented."""
    prices = PER_IMAGE_PRICES.get(kind)
    if prices is None:
        return None
    plain, with_subject = prices
    return round(len(result) * (with_subject if result.known_subjects else plain), 4)


@attrs.frozen
class BatchItem(Generic[I]):
    """One input's outcome.

    Attributes:
        input: the input as given.
        index: its position in the inputs.
        result: the ``ImageResult`` when it succeeded (``None`` when skipped from a manifest).
        error: the ``PhotaError`` when it failed.
        paths: output files written (batch runs with ``out_dir``).
        skipped: already done in an earlier run, per the manifest.
    """

    input: I
    index: int
    result: ImageResult | None = None
    error: PhotaError | None = None
    paths: tuple[Path, ...] = ()
    skipped: bool = False
    request_id: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@attrs.define
class BatchSummary:
    """Counts and cost of a run so far."""

    total: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    images: int = 0
    cost: float = 0.0
    cost_unknown: int = 0
    started: float = attrs.Factory(time.monotonic)

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped

    @property
    def rate(self) -> float:
        """Items finished per second."""
        elapsed = time.monotonic() - self.started
        return (self.done + self.failed) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        cost = f"${self.cost:.2f}" + (" + model-priced calls" if self.cost_unknown else "")
        return (
            f"{self.done} done, {self.failed} failed, {self.skipped} skipped of {self.total}; "
            f"{self.images} images; estimated cost {cost}"
        )


class Manifest:
    """A JSONL record of a batch: one line per finished input (and per submitted job).

    Lines are appended and flushed to disk one by one, so a run killed at any moment keeps every
    line written before. Later lines for an input override earlier ones.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.entries: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill: that input simply is not done
                if isinstance(entry, dict) and isinstance(entry.get("input"), str):
                    self.entries[entry["input"]] = entry
        self._lock = anyio.Lock()

    def done(self, key: str) -> dict[str, Any] | None:
        """The entry of an input finished earlier whose outputs all still exist."""
        entry = self.entries.get(key)
        if entry is None or entry.get("status") != "done":
            return None
        if not all(Path(p).exists() for p in entry.get("outputs", [])):
            return None
        return entry

    def submitted_job(self, key: str) -> dict[str, Any] | None:
        """The saved job of an input submitted but not finished in an earlier run."""
        entry = self.entries.get(key)
        return entry.get("job") if entry and entry.get("status") == "submitted" else None

    async def record(self, key: str, **fields: Any) -> None:
        entry = {"input": key, **fields, "time": time.time()}
        line = json.dumps(entry) + "\n"
        async with self._lock:
            self.entries[key] = entry
            await off_loop(self._append, line)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())


Call = Callable[[I], Awaitable[ImageResult]]
Submit = Callable[[I], Awaitable[Any]]
Progress = Callable[[BatchSummary, BatchItem[Any]], None]


def input_key(value: object) -> str:
    """A stable manifest key for an input."""
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, str):
        return value
    raise TypeError("resumable batches need Path or URL inputs")


def output_stems(inputs: list[Any]) -> list[str]:
    """A distinct file stem per input (``photo``, ``photo-2`` ... when names repeat)."""
    seen: dict[str, int] = {}
    stems = []
    for index, value in enumerate(inputs):
        base = value.stem if isinstance(value, Path) else f"item-{index}"
        count = seen.get(base, 0) + 1
        seen[base] = count
        stems.append(base if count == 1 else f"{base}-{count}")
    return stems


class BatchRun(Generic[I]):
    """The running batch: iterate it for items as they complete; close it to cancel the rest.

    Use it as ``async with phota.enhance_many(paths) as run: async for item in run: ...``;
    plain ``async for`` works too and closes the run when exhausted.
    """

    def __init__(
        self,
        client: PhotaClient,
        kind: str,
        inputs: Iterable[I],
        call: Call[I],
        *,
        concurrency: int,
        out_dir: str | Path | None,
        manifest: str | Path | Manifest | None,
        submit: Submit[I] | None,
        on_progress: Progress | None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._client = client
        self._kind = kind
        self._inputs = list(inputs)
        self._call = call
        self._submit = submit
        self._concurrency = concurrency
        self._out_dir = Path(out_dir) if out_dir is not None else None
        self._manifest = Manifest(manifest) if isinstance(manifest, (str, Path)) else manifest
        if self._manifest is not None:
            if self._out_dir is None:
                raise ValueError("a manifest needs out_dir: done means written to disk")
            for value in self._inputs:
                input_key(value)
        self._on_progress = on_progress
        self.summary = BatchSummary(total=len(self._inputs))
        self._send: MemoryObjectSendStream[BatchItem[I]]
        self._receive: MemoryObjectReceiveStream[BatchItem[I]]
        self._send, self._receive = anyio.create_memory_object_stream[BatchItem[I]](concurrency)
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False

    def __aiter__(self) -> AsyncIterator[BatchItem[I]]:
        return self

    async def __anext__(self) -> BatchItem[I]:
        if self._closed:
            raise StopAsyncIteration
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(self._run())
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            await self.aclose()
            raise StopAsyncIteration from None

    async def __aenter__(self) -> BatchRun[I]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel every call still running and wait until they have stopped. Idempotent.

        Raises:
            Exception: a bug inside the run itself (never a per-item ``PhotaError``).
        """
        self._closed = True
        task = self._supervisor
        if task is not None and not task.done():
            task.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({task})
        self._receive.close()
        if task is not None and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]

    async def collect(self) -> list[BatchItem[I]]:
        """Run to the end; every item, in input order."""
        async with self:
            items = [item async for item in self]
        return sorted(items, key=lambda item: item.index)

    async def _run(self) -> None:
        # A semaphore, not a CapacityLimiter: the slot is taken here and released by the worker.
        slots = anyio.Semaphore(self._concurrency)
        stems = output_stems(self._inputs)
        async with self._send, anyio.create_task_group() as group:
            for index, value in enumerate(self._inputs):
                await slots.acquire()
                group.start_soon(self._one, slots, index, value, stems[index])

    async def _one(self, slots: anyio.Semaphore, index: int, value: I, stem: str) -> None:
        try:
            item = await self._process(index, value, stem)
        finally:
            slots.release()
        summary = self.summary
        if item.skipped:
            summary.skipped += 1
        elif item.error is not None:
            summary.failed += 1
        else:
            summary.done += 1
            assert item.result is not None
            summary.images += len(item.result)
            cost = estimate_cost(self._kind, item.result)
            if cost is None:
                summary.cost_unknown += 1
            else:
                summary.cost += cost
        if self._on_progress is not None:
            self._on_progress(summary, item)
        await self._send.send(item)

    async def _process(self, index: int, value: I, stem: str) -> BatchItem[I]:
        manifest = self._manifest
        key = input_key(value) if manifest is not None else ""
        if manifest is not None:
            entry = manifest.done(key)
            if entry is not None:
                earlier = tuple(Path(p) for p in entry.get("outputs", []))
                return BatchItem(
                    value, index, paths=earlier, skipped=True, request_id=entry.get("request_id")
                )
        try:
            result = await self._result(value, key)
            paths: tuple[Path, ...] = ()
            if self._out_dir is not None:
                paths = tuple(await result.save(self._out_dir, stem=stem))
        except PhotaError as error:
            if manifest is not None:
                await manifest.record(key, status="failed", error=str(error))
            return BatchItem(value, index, error=error, request_id=error.request_id)
        if manifest is not None:
            await manifest.record(
                key, status="done", outputs=[str(p) for p in paths], request_id=result.request_id
            )
        return BatchItem(value, index, result=result, paths=paths, request_id=result.request_id)

    async def _result(self, value: I, key: str) -> ImageResult:
        manifest = self._manifest
        if self._submit is None:
            return await self._call(value)
        saved = manifest.submitted_job(key) if manifest is not None else None
        if saved is not None:
            job = self._client.jobs.resume(saved)
        else:
            job = await self._submit(value)
            if manifest is not None:
                await manifest.record(key, status="submitted", job=job.to_json())
        result: ImageResult = await job.wait()
        return result
