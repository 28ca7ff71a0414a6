"""The blocking facade ``phota_async.sync.PhotaClient`` against an emulator on its own thread:
every method family, batch iteration, closing, Ctrl-C, and use where a loop already runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio.to_thread
import pytest

from phota_async import PollPolicy, Spend, ThrottleStats
from phota_async.errors import InvalidRequestError, PhotaError
from phota_async.models import Job as AsyncJob
from phota_async.models import Profile
from phota_async.sync import BatchRun, ImageResult, Job, PhotaClient
from phota_async.testing import PhotaEmulator
from tests.helpers import b64, decode, jpeg_bytes, until

FAST = PollPolicy().scaled(0.01)


def portal_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "phota-sync"]


@pytest.fixture
def phota(threaded_emu: PhotaEmulator) -> Iterator[PhotaClient]:
    """A blocking client of the threaded emulator, polling a hundred times faster."""
    with PhotaClient(api_key=threaded_emu.api_key, base_url=threaded_emu.base_url, poll=FAST) as c:
        yield c


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Six small photos on disk."""
    paths = []
    for i in range(6):
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(jpeg_bytes(i, (48, 48)))
        paths.append(path)
    return paths


def paid(emu: PhotaEmulator, path: str) -> int:
    return sum(1 for r in emu.requests if r["method"] == "POST" and r["path"] == path)


def test_the_readme_quickstart_runs_synchronously(
    threaded_emu: PhotaEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README's quickstart, written without async: the key and URL from the environment, an
    enhance, its outputs saved, its subjects and request id."""
    monkeypatch.setenv("PHOTA_API_KEY", threaded_emu.api_key)
    monkeypatch.setenv("PHOTA_BASE_URL", threaded_emu.base_url)
    monkeypatch.chdir(tmp_path)
    Path("dark.jpg").write_bytes(jpeg_bytes())

    with PhotaClient() as phota:
        result = phota.enhance(Path("dark.jpg"))
        saved = result.save("out/")

    assert [p.name for p in saved] == ["image-0.jpg"]
    assert decode(saved[0].read_bytes()).format == "JPEG"
    assert result.known_subjects == {}
    assert result.request_id
    assert not portal_threads()


def test_studio_calls_return_blocking_results(phota: PhotaClient) -> None:
    """generate, edit and remix block and return results whose read() blocks too."""
    generated = phota.generate("a fox", n=2, output_format="png")
    edited = phota.edit("brighter", images=[jpeg_bytes()])
    remixed = phota.remix(jpeg_bytes(1), reference=jpeg_bytes(2))
    assert isinstance(generated, ImageResult)
    assert len(generated) == 2
    assert decode(generated.read(1)).format == "PNG"
    assert decode(edited.read()).format == "JPEG"
    assert decode(remixed.read()).format == "JPEG"


def test_profiles_forward_every_call(phota: PhotaClient, threaded_emu: PhotaEmulator) -> None:
    """create, wait_ready (with on_update), get, list, picture and delete, blocking."""
    urls = [threaded_emu.store_file(jpeg_bytes(i), "image/jpeg") for i in range(5)]
    created = phota.profiles.create(urls, tier="fast", tag="sync-test")
    seen: list[Profile] = []
    ready = phota.profiles.wait_ready(created.id, timeout=30, on_update=seen.append)
    assert (ready.id, ready.status) == (created.id, "READY")
    assert seen[-1].status == "READY"
    assert phota.profiles.get(created.id).status == "READY"
    assert [p.id for p in phota.profiles.list(tag="sync-test")] == [created.id]
    assert phota.profiles.picture(created.id)[:3] == b"\xff\xd8\xff"
    phota.profiles.delete(created.id)
    assert phota.profiles.list(tag="sync-test") == []


def test_jobs_submit_wait_get_and_resume(phota: PhotaClient) -> None:
    """A submitted job is a blocking Job: wait() reports statuses and returns the result;
    jobs.get, jobs.wait and jobs.resume forward too."""
    job = phota.jobs.submit_generate("a fox")
    assert isinstance(job, Job)
    statuses: list[str] = []
    result = job.wait(timeout=30, on_update=lambda j: statuses.append(j.status))
    assert statuses[-1] == "SUCCEEDED"
    assert decode(result.read()).format == "JPEG"
    assert phota.jobs.get(job.id).status == "SUCCEEDED"
    assert len(phota.jobs.wait(job.id, timeout=30)) == 1
    assert len(phota.jobs.resume(job.to_json()).wait(timeout=30)) == 1
    assert phota.jobs.submit_enhance(jpeg_bytes()).refresh().id


def test_errors_are_the_async_clients_own(phota: PhotaClient, threaded_emu: PhotaEmulator) -> None:
    """A refused input raises the same InvalidRequestError, before anything is sent."""
    with pytest.raises(InvalidRequestError, match="image"):
        phota.enhance(b"not an image")
    assert paid(threaded_emu, "/enhance") == 0


def test_a_batch_iterates_synchronously(
    phota: PhotaClient, photos: list[Path], tmp_path: Path
) -> None:
    """enhance_many is iterated with a plain for loop; every photo's outputs are written."""
    out = tmp_path / "out"
    with phota.enhance_many(photos, out_dir=out, concurrency=3) as run:
        assert isinstance(run, BatchRun)
        items = list(run)
    assert sorted(item.index for item in items) == list(range(6))
    assert all(item.ok and item.paths[0].exists() for item in items)
    assert run.summary.done == 6
    assert phota.wrap(items[0].result).read()[:3] == b"\xff\xd8\xff"  # type: ignore[arg-type]


def test_breaking_out_of_a_batch_closes_the_run(
    phota: PhotaClient, photos: list[Path], threaded_emu: PhotaEmulator
) -> None:
    """A break cancels what is in flight at once: nothing runs on, nothing more is paid."""
    run = phota.enhance_many(photos, concurrency=2)
    for _ in run:
        break
    supervisor = run.aio._supervisor
    assert supervisor is not None
    assert supervisor.done()
    assert run.aio.in_flight == 0
    later = jpeg_bytes(7, (40, 40))  # told apart from the batch's photos by its size
    assert phota.enhance(later) is not None  # the client goes on
    # A request sent just before the break may reach the server's thread only now: count
    # the batch's requests once the server has answered everything it received.
    asyncio.run(
        until(lambda: all(r["status"] is not None for r in threaded_emu.requests), "answers")
    )
    sent = [
        (r["json"] or {}).get("image") for r in threaded_emu.requests if r["path"] == "/enhance"
    ]
    assert sent.count(f"<{len(b64(later))} chars>") == 1
    assert 2 <= len(sent) <= 1 + 3  # it, the one taken, and at most `concurrency` started ahead


def test_an_exception_in_the_loop_closes_the_run(phota: PhotaClient, photos: list[Path]) -> None:
    """An exception raised in the loop body closes the run: its tasks have ended."""
    run = phota.enhance_many(photos, concurrency=2)

    def consume() -> None:
        for _ in run:
            raise LookupError("stop here")

    with pytest.raises(LookupError):
        consume()
    supervisor = run.aio._supervisor
    assert supervisor is not None
    assert supervisor.done()
    assert run.aio.in_flight == 0


def test_close_is_idempotent_and_later_use_says_closed(threaded_emu: PhotaEmulator) -> None:
    """close() twice is fine; a call after it raises a PhotaError saying the client is
    closed; its loop thread is gone."""
    phota = PhotaClient(api_key=threaded_emu.api_key, base_url=threaded_emu.base_url)
    assert len(portal_threads()) == 1
    phota.close()
    phota.close()
    assert phota.closed
    assert not portal_threads()
    with pytest.raises(PhotaError, match="closed"):
        phota.enhance(jpeg_bytes())
    with pytest.raises(PhotaError, match="closed"):
        phota.profiles.list()
    with pytest.raises(PhotaError, match="closed"), phota:
        pass


def test_a_refused_option_leaves_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A constructor that refuses its arguments stops the loop thread it started."""
    monkeypatch.delenv("PHOTA_API_KEY", raising=False)
    monkeypatch.delenv("PHOTA_KEY", raising=False)
    with pytest.raises(InvalidRequestError, match="api_key"):
        PhotaClient()
    assert not portal_threads()


@contextlib.contextmanager
def ctrl_c_on(event: threading.Event) -> Iterator[None]:
    """Send SIGINT to the main thread (as Ctrl-C does) once ``event`` is set."""
    assert threading.current_thread() is threading.main_thread()

    over = threading.Event()

    def press() -> None:
        if event.wait(10) and not over.is_set():
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    presser = threading.Thread(target=press)
    presser.start()
    try:
        yield
    finally:
        over.set()  # a presser that has not pressed yet never will
        event.set()
        presser.join()
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_cancels_the_blocked_call_and_the_client_goes_on(
    phota: PhotaClient, threaded_emu: PhotaEmulator
) -> None:
    """SIGINT in the main thread while a wait blocks raises KeyboardInterrupt there, after the
    wait's polling has stopped; the client stays usable."""
    profile_id = threaded_emu.add_profile(training_seconds=600)
    polled = threading.Event()  # set on the portal's thread once a poll is in

    with ctrl_c_on(polled), pytest.raises(KeyboardInterrupt):
        phota.profiles.wait_ready(profile_id, timeout=600, on_update=lambda _: polled.set())
    watches = phota.aio._session.poller._watches
    assert phota._portal.run_sync(lambda: len(watches)) == 0  # no poll loop left running
    assert phota.profiles.get(profile_id).status in {"QUEUING", "IN_PROGRESS"}


def test_ctrl_c_while_iterating_a_batch_closes_the_run(
    phota: PhotaClient, photos: list[Path]
) -> None:
    """Ctrl-C while a for loop waits for the next item cancels the run: its tasks have ended
    when KeyboardInterrupt reaches the caller."""
    first = threading.Event()
    run = phota.enhance_many(photos, concurrency=2, on_progress=lambda *_: first.set())

    def consume() -> None:
        for _ in run:
            first.wait(10)  # the interrupt lands here or while the loop waits: either way

    with ctrl_c_on(first), pytest.raises(KeyboardInterrupt):
        consume()
    supervisor = run.aio._supervisor
    assert supervisor is not None
    assert supervisor.done()
    assert run.aio.in_flight == 0


def test_it_works_where_an_event_loop_already_runs(threaded_emu: PhotaEmulator) -> None:
    """Called from synchronous code inside a running asyncio loop (as in Jupyter), the
    facade runs on its own loop and works."""

    def notebook_cell() -> int:
        with PhotaClient(api_key=threaded_emu.api_key, base_url=threaded_emu.base_url) as phota:
            return len(phota.enhance(jpeg_bytes()))

    async def kernel() -> int:
        return notebook_cell()

    assert asyncio.run(kernel()) == 1
    assert not portal_threads()


def test_job_snapshots_passed_to_on_update_are_async_jobs(phota: PhotaClient) -> None:
    """jobs.wait accepts a blocking Job and hands on_update the async snapshots."""
    job = phota.jobs.submit_generate("a fox")
    seen: list[object] = []
    phota.jobs.wait(job, timeout=30, on_update=seen.append)
    assert seen
    assert all(isinstance(s, AsyncJob) for s in seen)


def test_the_ledger_limiter_and_webhook_secret_forward(threaded_emu: PhotaEmulator) -> None:
    """spend, throttle and webhook_secret read the async client's own."""
    with PhotaClient(
        api_key=threaded_emu.api_key, base_url=threaded_emu.base_url, budget=1.0
    ) as phota:
        phota.enhance(jpeg_bytes())
        spend = phota.spend
        assert isinstance(spend, Spend)
        assert round(spend.spent, 2) == 0.12
        assert isinstance(phota.throttle, ThrottleStats)
        assert phota.webhook_secret() == phota.webhook_secret()
        assert "api_key=***" in repr(phota)
        assert threaded_emu.api_key not in repr(phota)


def test_ctrl_c_during_close_still_closes_the_connections(threaded_emu: PhotaEmulator) -> None:
    """SIGINT while close() waits for the async client to close lets that close finish before
    KeyboardInterrupt reaches the caller, so no connection outlives the loop."""
    phota = PhotaClient(api_key=threaded_emu.api_key, base_url=threaded_emu.base_url)
    phota.enhance(jpeg_bytes())
    closing, interrupted = threading.Event(), threading.Event()
    finished: list[bool] = []
    original = phota.aio.aclose

    async def aclose() -> None:
        closing.set()
        await anyio.to_thread.run_sync(interrupted.wait, 10)
        await original()
        finished.append(True)

    def on_sigint(signum: int, frame: object) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    phota.aio.aclose = aclose  # type: ignore[method-assign]
    previous = signal.signal(signal.SIGINT, on_sigint)
    presser = threading.Thread(
        target=lambda: (
            closing.wait(10)
            and signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        )
    )
    presser.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            phota.close()
    finally:
        presser.join()
        signal.signal(signal.SIGINT, previous)
    assert finished == [True]
    assert phota.closed
    assert not portal_threads()


def test_a_result_is_saved_and_closed_after_its_client_closed(
    threaded_emu: PhotaEmulator, tmp_path: Path
) -> None:
    """A bytes-mode result read and saved after its client's with block (the paid images are
    in hand) works, and closing it then is fine too; no loop thread is left."""
    with PhotaClient(api_key=threaded_emu.api_key, base_url=threaded_emu.base_url) as phota:
        result = phota.enhance(jpeg_bytes())
    saved = result.save(tmp_path)
    assert decode(saved[0].read_bytes()).format == "JPEG"
    assert result.read(0) == saved[0].read_bytes()
    result.close()
    assert not portal_threads()


def test_map_runs_an_async_call_per_input(phota: PhotaClient) -> None:
    """map() forwards: the async call runs on the facade's loop for every input."""
    items = phota.map(lambda image: phota.aio.enhance(image), [jpeg_bytes(1), jpeg_bytes(2)])
    collected = items.collect()
    assert [item.ok for item in collected] == [True, True]
    assert items.remaining == 2
    assert items.in_flight == 0


def test_a_call_from_inside_a_callback_says_why_it_cannot_block(phota: PhotaClient) -> None:
    """A facade call made from an on_update callback (on the facade's own loop) raises a
    PhotaError that names the callback problem, and the wait ends with it."""
    job = phota.jobs.submit_generate("a fox")
    with pytest.raises(PhotaError, match="from a callback"):
        phota.jobs.wait(job, timeout=30, on_update=lambda snapshot: phota.jobs.get(snapshot.id))
    assert phota.jobs.get(job.id).id == job.id  # the client goes on
