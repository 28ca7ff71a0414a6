"""A blocking facade for scripts and notebooks: ``phota_async.sync.PhotaClient``.

```python
from pathlib import Path

from phota_async.sync import PhotaClient

# The API key comes from PHOTA_API_KEY in the environment.
with PhotaClient() as phota:
    result = phota.enhance(Path("dark.jpg"))
    result.save("out/")
```

Theory of operation. Each facade starts one event loop on a thread of its own (an anyio
blocking portal) and builds the ordinary asyncio ``phota_async.PhotaClient`` inside it. Every
method forwards to the async method of the same name and blocks until its task in the portal
finishes: nothing is implemented twice, so arguments, checks, retries, errors and deadlines are
the async client's own. Results that hold async methods (``ImageResult``, ``Job``, batch runs)
come back wrapped in twins whose methods block through the same portal.

Because the loop is the portal's own, the facade works where a loop already runs in the
calling thread (Jupyter, or a synchronous function called from async code). Ctrl-C while a call
blocks cancels that call's task and waits for it to unwind (connections returned, temporary
files removed) before ``KeyboardInterrupt`` reaches the caller; the facade stays usable.
``close()`` (or leaving ``with``) closes the client, stops the loop and joins its thread.

Callbacks (``on_update``, ``on_progress``, ``on_upload``) run on the portal's thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

import anyio.from_thread

from . import _batch, _budget, _client, _limiter, models
from ._batch import BatchItem
from ._jobs import Jobs as _AsyncJobs
from ._profiles import Profiles as _AsyncProfiles
from .errors import PhotaError

__all__ = ["BatchRun", "ImageResult", "Job", "Jobs", "PhotaClient", "Profiles"]

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R")
I = TypeVar("I")  # noqa: E741 - an input type

# Seconds a call cancelled by Ctrl-C gets to unwind (close its connection, remove a temporary
# file) before KeyboardInterrupt is raised to the caller anyway.
CANCEL_GRACE = 10.0
CLOSED = "this phota_async.sync.PhotaClient is closed; create a new one"
ON_LOOP = (
    "a blocking call from a callback (on_update, on_progress, on_upload) would wait for the "
    "loop that runs the callback: record what it needs and make the call after it returns"
)


class _Portal:
    """The facade's event loop thread, and the one way calls cross into it."""

    def __init__(self) -> None:
        self._manager: AbstractContextManager[anyio.from_thread.BlockingPortal] = (
            anyio.from_thread.start_blocking_portal(name="phota-sync")
        )
        self.portal: anyio.from_thread.BlockingPortal | None = self._manager.__enter__()
        self._lock = threading.Lock()
        self._loop_thread = self.portal.call(threading.get_ident)

    def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call()`` in the loop and block until it is done; Ctrl-C cancels it."""
        portal = self._live()
        finished = threading.Event()

        async def task() -> T:
            try:
                return await call()
            finally:
                finished.set()

        future: Future[T] = portal.start_task_soon(task)
        try:
            return future.result()
        except BaseException:
            # KeyboardInterrupt (or another exception raised in this thread by a signal
            # handler) while the call runs: cancel it and let it unwind before raising.
            if not future.done():
                future.cancel()
                finished.wait(CANCEL_GRACE)
            raise

    def run_shielded(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call()`` in the loop to its end: Ctrl-C waits for it (up to the grace period)
        rather than cancelling it, for clean-ups that must not stop half-way."""

        async def shielded() -> T:
            with anyio.CancelScope(shield=True):
                result = await call()
            return result

        return self.run(shielded)

    def run_anyway(self, call: Callable[[], Awaitable[T]]) -> T:
        """Run ``call()`` in the loop; once the facade is closed, on a loop of its own for this
        one call (a result's images outlive the client that fetched them)."""
        if self.portal is not None:
            return self.run(call)
        with anyio.from_thread.start_blocking_portal(name="phota-sync") as portal:
            return portal.call(call)

    def run_sync(self, call: Callable[[], T]) -> T:
        """Run the plain function ``call()`` on the loop's thread (for loop-bound state)."""
        return self._live().call(call)

    def _live(self) -> anyio.from_thread.BlockingPortal:
        portal = self.portal
        if portal is None:
            raise PhotaError(CLOSED)
        if threading.get_ident() == self._loop_thread:
            raise PhotaError(ON_LOOP)
        return portal

    def stop(self) -> None:
        """Cancel whatever still runs in the loop, stop it and join its thread. Idempotent."""
        with self._lock:
            portal, self.portal = self.portal, None
        if portal is None:
            return
        try:
            portal.call(portal.stop, True)
        finally:
            self._manager.__exit__(None, None, None)


class _Forwarder:
    """What a forwarded method needs: the portal, and the async object it forwards to."""

    _portal: _Portal
    _target: Any


def _as_is(_: _Portal, value: T) -> T:
    return value


def _forward(
    method: Callable[Concatenate[Any, P], Awaitable[T]],
    wrap: Callable[[_Portal, T], R],
) -> Callable[Concatenate[_Forwarder, P], R]:
    """The blocking twin of an async method: the same signature and docstring, a sync return
    (``wrap`` turns an async result into its blocking twin)."""
    name = method.__name__

    def forwarded(self: _Forwarder, /, *args: P.args, **kwargs: P.kwargs) -> R:
        bound = getattr(self._target, name)
        return wrap(self._portal, self._portal.run(lambda: bound(*args, **kwargs)))

    functools.update_wrapper(forwarded, method)
    return forwarded


# -- results ---------------------------------------------------------------------------------


class ImageResult:
    """The blocking twin of ``phota_async.ImageResult``: the same data, blocking methods.

    Use ``with result:`` (or ``close()``) to release the temporary files of large images.
    Its images can still be read and saved after the client is closed (URL outputs excepted:
    downloading them needs the client).

    Attributes:
        aio: the async ``ImageResult`` it wraps.
    """

    def __init__(self, portal: _Portal, result: models.ImageResult) -> None:
        self._portal = portal
        self.aio = result

    def __repr__(self) -> str:
        return f"<sync {self.aio!r}>"

    @property
    def outputs(self) -> tuple[models.OutputImage, ...]:
        """Every output image, in order."""
        return self.aio.outputs

    @property
    def known_subjects(self) -> Mapping[str, int]:
        """``{profile_id: count}`` of trained subjects recognised in the outputs."""
        return self.aio.known_subjects

    @property
    def request_id(self) -> str | None:
        """The ``X-Request-Id`` of the call that produced it."""
        return self.aio.request_id

    def __len__(self) -> int:
        return len(self.aio)

    def read(self, index: int = 0) -> bytes:
        """The bytes of one output image, downloading it when it is a URL.

        Args:
            index: which output.

        Returns:
            The image bytes.

        Raises:
            IndexError, ValueError, PhotaError: as ``phota_async.ImageResult.read``.
        """
        return self._portal.run_anyway(lambda: self.aio.read(index))

    def save(self, directory: str | Path, *, stem: str = "image") -> list[Path]:
        """Write every output into ``directory``, atomically; return the paths.

        Args:
            directory: the folder to write into (created if needed).
            stem: the name every output's file name starts with.

        Returns:
            The paths written, in output order.

        Raises:
            PhotaError, OSError: as ``phota_async.ImageResult.save``.
        """
        return self._portal.run_anyway(lambda: self.aio.save(directory, stem=stem))

    def close(self) -> None:
        """Release the temporary files of large bytes-mode images. Idempotent."""
        self._portal.run_anyway(self.aio.aclose)

    def __enter__(self) -> ImageResult:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _result(portal: _Portal, result: models.ImageResult) -> ImageResult:
    return ImageResult(portal, result)


class Job:
    """The blocking twin of a ``phota_async.Job`` snapshot: the same data, blocking ``wait``.

    Attributes:
        aio: the async ``Job`` snapshot it wraps.
    """

    def __init__(self, portal: _Portal, job: models.Job) -> None:
        self._portal = portal
        self.aio = job

    def __repr__(self) -> str:
        return f"<sync {self.aio!r}>"

    @property
    def id(self) -> str:
        """The job id."""
        return self.aio.id

    @property
    def status(self) -> str:
        """One of ``JobStatus``, or a newer status string kept as is."""
        return self.aio.status

    @property
    def client_request_id(self) -> str | None:
        """The idempotency key it was submitted with, when known."""
        return self.aio.client_request_id

    @property
    def created_at(self) -> datetime | None:
        """Server time of creation, when known."""
        return self.aio.created_at

    @property
    def updated_at(self) -> datetime | None:
        """Server time of the last change, when known."""
        return self.aio.updated_at

    @property
    def error(self) -> models.JobError | None:
        """Why it failed, once ``FAILED``."""
        return self.aio.error

    @property
    def output_format(self) -> str:
        """The image format the job was asked for."""
        return self.aio.output_format

    @property
    def request_id(self) -> str | None:
        """The ``X-Request-Id`` of the answer this snapshot came from."""
        return self.aio.request_id

    @property
    def is_finished(self) -> bool:
        """Whether the job ended, either way."""
        return self.aio.is_finished

    def to_json(self) -> dict[str, str | None]:
        """What a restarted worker needs to resume this job (``phota.jobs.resume``)."""
        return self.aio.to_json()

    def refresh(self) -> Job:
        """A new snapshot of this job from the API (this one does not change)."""
        return Job(self._portal, self._portal.run(self.aio.refresh))

    def wait(
        self,
        timeout: float | None = 900.0,
        *,
        on_update: Callable[[models.Job], None] | None = None,
    ) -> ImageResult:
        """Block until the job finishes; return its result.

        Args:
            timeout: deadline in seconds (``None``: the default 900 s).
            on_update: called (on the facade's loop thread) with each new async ``Job``
                snapshot, once per observed status change.

        Returns:
            The finished job's ``ImageResult``.

        Raises:
            JobFailedError, WaitTimeoutError: as ``phota_async.Job.wait``.
        """
        return ImageResult(
            self._portal, self._portal.run(lambda: self.aio.wait(timeout, on_update=on_update))
        )


def _job(portal: _Portal, job: models.Job) -> Job:
    return Job(portal, job)


class BatchRun(Generic[I]):
    """The blocking twin of ``phota_async.BatchRun``: iterate it for items as they finish.

    ```python
    with phota.enhance_many(paths, out_dir="out") as run:
        for item in run:
            ...
    ```

    Leaving the loop (``break``, an exception) or the ``with`` block closes the run: what is
    still in flight is cancelled and waited for. Items are ``phota_async.BatchItem``; an
    item's ``result`` is the async ``ImageResult`` (use ``out_dir`` and ``item.paths``, or
    ``phota.wrap(item.result)`` for blocking ``read``/``save``).

    Attributes:
        aio: the async ``BatchRun`` it wraps.
    """

    def __init__(self, portal: _Portal, run: _batch.BatchRun[I]) -> None:
        self._portal = portal
        self.aio = run
        self._items: Any = None  # the async iterator, made on the loop at the first item

    @property
    def summary(self) -> _batch.BatchSummary:
        """Counts and cost of the run so far."""
        return self.aio.summary

    @property
    def remaining(self) -> int:
        """Items this run has to work on: all but those a manifest records as done."""
        return self.aio.remaining

    @property
    def in_flight(self) -> int:
        """Items started and not finished yet."""
        return self.aio.in_flight

    def __iter__(self) -> Iterator[BatchItem[I]]:
        self._items = self._portal.run_sync(self.aio.__aiter__)
        try:
            while True:
                item = self._portal.run(self._next)
                if item is None:
                    return
                yield item
        finally:
            self.close()

    async def _next(self) -> BatchItem[I] | None:
        try:
            item: BatchItem[I] = await anext(self._items)
        except StopAsyncIteration:
            return None
        return item

    def collect(self) -> list[BatchItem[I]]:
        """Run to the end; every item, in input order."""
        return self._portal.run(self.aio.collect)

    def estimate(self) -> _budget.Estimate:
        """What this run would cost, before paying (see ``phota_async.BatchRun.estimate``)."""
        return self._portal.run(self.aio.estimate)

    def stop(self) -> None:
        """Start no new items; those in flight finish and are delivered."""
        self._portal.run_sync(self.aio.stop)

    def abandon(self) -> None:
        """Cancel every item in flight now (a manifest keeps them pending, resumed by key);
        the iteration ends."""
        self._portal.run_sync(self.aio.abandon)

    def close(self) -> None:
        """Cancel every call still running and wait until they have stopped. Idempotent.

        Raises:
            Exception: a failure of the run itself (never one input's error).
        """
        if self._portal.portal is None:  # the client was closed, and the run with its loop
            return
        self._portal.run(self.aio.aclose)

    def __enter__(self) -> BatchRun[I]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _run(
    method: Callable[Concatenate[Any, P], _batch.BatchRun[I]],
) -> Callable[Concatenate[_Forwarder, P], BatchRun[I]]:
    """The blocking twin of a method that makes a batch run (built on the loop's thread)."""
    name = method.__name__

    def forwarded(self: _Forwarder, /, *args: P.args, **kwargs: P.kwargs) -> BatchRun[I]:
        bound = getattr(self._target, name)
        return BatchRun(self._portal, self._portal.run_sync(lambda: bound(*args, **kwargs)))

    functools.update_wrapper(forwarded, method)
    return forwarded


# -- resources -------------------------------------------------------------------------------


class Profiles(_Forwarder):
    """The blocking twin of ``phota.profiles``: each method as the async one, blocking.

    Callbacks (``on_upload``, ``on_update``) run on the facade's loop thread.
    """

    def __init__(self, portal: _Portal, profiles: Any) -> None:
        self._portal = portal
        self._target = profiles

    create = _forward(_AsyncProfiles.create, _as_is)
    wait_ready = _forward(_AsyncProfiles.wait_ready, _as_is)
    list = _forward(_AsyncProfiles.list, _as_is)
    get = _forward(_AsyncProfiles.get, _as_is)
    picture = _forward(_AsyncProfiles.picture, _as_is)
    delete = _forward(_AsyncProfiles.delete, _as_is)


class Jobs(_Forwarder):
    """The blocking twin of ``phota.jobs``: submits return blocking ``Job`` twins."""

    def __init__(self, portal: _Portal, jobs: Any) -> None:
        self._portal = portal
        self._target = jobs

    submit_generate = _forward(_AsyncJobs.submit_generate, _job)
    submit_edit = _forward(_AsyncJobs.submit_edit, _job)
    submit_enhance = _forward(_AsyncJobs.submit_enhance, _job)
    submit_remix = _forward(_AsyncJobs.submit_remix, _job)
    get = _forward(_AsyncJobs.get, _job)

    def wait(
        self,
        job: Job | models.Job | str,
        *,
        timeout: float | None = 900.0,
        on_update: Callable[[models.Job], None] | None = None,
    ) -> ImageResult:
        """Block until a job (or job id) finishes; return its result.

        Args:
            job: the ``Job`` (either twin) or its id.
            timeout: deadline in seconds (``None``: the default 900 s).
            on_update: called (on the facade's loop thread) with each new async ``Job``
                snapshot, once per observed status change.

        Returns:
            The finished job's ``ImageResult``.

        Raises:
            InvalidRequestError, JobFailedError, WaitTimeoutError: as ``phota.jobs.wait``.
        """
        target = job.aio if isinstance(job, Job) else job
        result = self._portal.run(
            lambda: self._target.wait(target, timeout=timeout, on_update=on_update)
        )
        return ImageResult(self._portal, result)

    def resume(self, data: dict[str, Any]) -> Job:
        """A ``Job`` from ``Job.to_json()`` output, bound to this client, ready to ``wait()``.

        Raises:
            InvalidRequestError: ``data`` is not a saved job.
        """
        return Job(self._portal, self._target.resume(data))

    def notify(self, job_id: str) -> bool:
        """Poll ``job_id`` now (a verified webhook said it changed); ``False`` if nobody waits."""
        return bool(self._portal.run_sync(lambda: self._target.notify(job_id)))


class PhotaClient(_Forwarder):
    """A blocking Phota client for scripts and notebooks, forwarding to the async one.

    Takes exactly the arguments of ``phota_async.PhotaClient`` and has its methods, each
    blocking until done and returning blocking twins of results (``ImageResult.save()``,
    ``Job.wait()``, batch runs iterated with ``for``):

    ```python
    with PhotaClient() as phota:
        phota.enhance(Path("dark.jpg")).save("out/")
    ```

    One event loop thread per client; close it with ``close()`` or a ``with`` block. Ctrl-C
    while a call blocks cancels that call (the client stays usable).

    Args:
        api_key: as for ``phota_async.PhotaClient``.
        base_url: as for ``phota_async.PhotaClient``.
        **options: every other argument of ``phota_async.PhotaClient`` (``budget``,
            ``timeout``, ``poll``, ``max_concurrency``, ...).

    Raises:
        InvalidRequestError: as ``phota_async.PhotaClient`` (the loop thread is stopped again).

    Attributes:
        aio: the async ``phota_async.PhotaClient`` (it belongs to the facade's loop).
        profiles: trained subjects (``Profiles``).
        jobs: asynchronous jobs (``Jobs``).
    """

    def __init__(
        self, api_key: str | None = None, base_url: str | None = None, **options: Any
    ) -> None:
        portal = _Portal()
        try:
            client = portal.run_sync(lambda: _client.PhotaClient(api_key, base_url, **options))
        except BaseException:
            portal.stop()
            raise
        self._portal = portal
        self._target = client
        self.aio: _client.PhotaClient = client
        self.profiles = Profiles(portal, client.profiles)
        self.jobs = Jobs(portal, client.jobs)

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<phota_async.sync.PhotaClient base_url={self.aio.base_url!r} api_key=***{state}>"

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._portal.portal is None

    def close(self) -> None:
        """Close the client's connections, stop its loop and join its thread. Idempotent."""
        if self.closed:
            return
        try:
            # Shielded: a Ctrl-C must not leave the connections open once the loop is gone.
            self._portal.run_shielded(self.aio.aclose)
        finally:
            self._portal.stop()

    def __enter__(self) -> PhotaClient:
        if self.closed:
            raise PhotaError(CLOSED)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        """The API's base URL this client calls."""
        return self.aio.base_url

    @property
    def spend(self) -> _budget.Spend | None:
        """The client's budget ledger now; ``None`` without a budget."""
        return self.aio.spend

    @property
    def throttle(self) -> _limiter.ThrottleStats:
        """The adaptive limiter now (see ``phota_async.PhotaClient.throttle``)."""
        return self._portal.run_sync(lambda: self.aio.throttle)

    @property
    def timeout(self) -> float:
        """The default deadline of a call, in seconds (see ``phota_async.PhotaClient``).

        Raises:
            InvalidRequestError: on assignment, a value that is not a number of seconds >= 0.
        """
        return self.aio.timeout

    @timeout.setter
    def timeout(self, value: float) -> None:
        self._portal.run_sync(lambda: setattr(self.aio, "timeout", value))

    def wrap(self, result: models.ImageResult) -> ImageResult:
        """The blocking twin of an async ``ImageResult`` of this client (a batch item's).

        Args:
            result: the async result.

        Returns:
            Its blocking twin.
        """
        return ImageResult(self._portal, result)

    generate = _forward(_client.PhotaClient.generate, _result)
    edit = _forward(_client.PhotaClient.edit, _result)
    enhance = _forward(_client.PhotaClient.enhance, _result)
    remix = _forward(_client.PhotaClient.remix, _result)
    webhook_secret = _forward(_client.PhotaClient.webhook_secret, _as_is)
    map = _run(_client.PhotaClient.map)
    enhance_many = _run(_client.PhotaClient.enhance_many)
    edit_many = _run(_client.PhotaClient.edit_many)
    remix_many = _run(_client.PhotaClient.remix_many)
