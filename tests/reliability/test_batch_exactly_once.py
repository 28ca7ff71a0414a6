"""The real CLI, killed or interrupted at random moments on a slow server, pays each input once.

Each scenario drives ``python -m phota_async enhance DIR --out OUT --manifest M`` in a
subprocess against an emulator in this process's thread that holds every answer 0.3 s *after*
charging, so a kill often lands between the charge and the answer. Inputs differ in size (and
enhance keeps the size), so every output maps back to exactly one input; their names include
the shapes that used to collide (dots, equal stems in two folders, a stem ending in ``-2``).
The four 300-input scenarios are played once per module, side by side; each test checks one
promise on a recorded outcome.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes, png_bytes

# Every scenario here runs the real CLI in subprocesses against a slow server and kills or
# interrupts it: wide windows on purpose, so the module runs with `pytest -m slow` (CI does).
# The four 300-input scenarios are played once per module (a module-scoped fixture), so this
# module runs on one pytest-xdist worker: `.ci/run` passes `--dist loadfile` to the slow step.
pytestmark = pytest.mark.slow

INPUTS = 300
LATENCY = 0.3
CONCURRENCY = 16
KILLS = 10
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
STUDIO_PATHS = ("/enhance", "/edit", "/generate", "/remix")


def input_name(i: int) -> str:
    """The i-th input's path inside the photos folder, cycling through colliding shapes."""
    group = i // 6
    return [
        f"plain/{i:03d}.jpg",
        f"dots/2024.05.{i:03d} beach.jpg",
        f"a/same{group:02d}.jpg",
        f"b/same{group:02d}.jpg",
        f"dash/shot{group:02d}-2.jpg",
        f"dash/shot{group:02d}.png",
    ][i % 6]


def make_inputs(photos: Path, count: int, seed: int) -> dict[tuple[int, int], Path]:
    """Write ``count`` small images of pairwise different sizes; map each size to its file."""
    rng = random.Random(seed)
    sizes = rng.sample([(w, h) for w in range(16, 65) for h in range(16, 65)], count)
    by_size = {}
    for i, size in enumerate(sizes):
        path = photos / input_name(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        colour = (i % 256, (i * 7) % 256, (i * 13) % 256)
        path.write_bytes(png_bytes(colour, size) if path.suffix == ".png" else jpeg_bytes(i, size))
        by_size[size] = path
    return by_size


@dataclass
class Batch:
    """One batch directory (photos, outputs, manifest) served by one emulator."""

    emu: PhotaEmulator
    root: Path
    inputs: dict[tuple[int, int], Path]
    runs: list[int | None] = field(default_factory=list)  # exit codes; None when killed
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def photos(self) -> Path:
        return self.root / "photos"

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def manifest(self) -> Path:
        return self.root / "run.manifest"

    def start(
        self, *extra: str, cwd: Path | None = None, paths: tuple[str, str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``phota enhance`` (stderr to a fresh log file); ``paths`` overrides the three."""
        photos, out, manifest = paths or (str(self.photos), str(self.out), str(self.manifest))
        argv = [sys.executable, "-m", "phota_async", "enhance", photos, "--out", out,
                "--manifest", manifest, "--concurrency", str(CONCURRENCY), *extra]  # fmt: skip
        env = {**os.environ, "PHOTA_API_KEY": self.emu.api_key, "PHOTA_BASE_URL": self.emu.base_url}
        env.pop("PHOTA_KEY", None)
        run = len(self.runs)
        with (
            self.log("stdout", run).open("wb") as stdout,
            self.log("stderr", run).open("wb") as stderr,
        ):
            proc = subprocess.Popen(
                argv, cwd=cwd or self.root, env=env, stdout=stdout, stderr=stderr
            )
        self.procs.append(proc)
        return proc

    def log(self, stream: str, run: int) -> Path:
        """Where run number ``run`` wrote ``stream`` (``"stdout"`` or ``"stderr"``)."""
        return self.root / f"{stream}-{run}.txt"

    def said(self, run: int) -> str:
        """Everything run number ``run`` printed, stdout then stderr."""
        return "".join(self.log(s, run).read_text(errors="replace") for s in ("stdout", "stderr"))

    def finish(self, proc: subprocess.Popen[bytes], timeout: float = 150) -> int:
        """Wait for a run to end by itself; record and return its exit code."""
        try:
            code = proc.wait(timeout=timeout)
        finally:
            proc.kill()
            proc.wait()
        self.runs.append(code)
        return code

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.kill()
        proc.wait()
        self.runs.append(None)

    def charges(self) -> int:
        return len(self.emu.charges())

    def wait_for_charges(self, count: int, proc: subprocess.Popen[bytes]) -> None:
        """Wait (bounded) until the ledger holds ``count`` charges or the run has ended."""
        deadline = time.monotonic() + 120
        while self.charges() < count and proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the batch never reached {count} charges")
            time.sleep(0.005)

    def wait_for_stderr(self, text: str, proc: subprocess.Popen[bytes]) -> None:
        """Wait (bounded) until the current run has written ``text`` on stderr, or ended."""
        log = self.log("stderr", len(self.runs))
        deadline = time.monotonic() + 60
        while text not in log.read_text(errors="replace") and proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the batch never printed {text!r}")
            time.sleep(0.005)

    def outputs(self) -> list[Path]:
        """Every image file under the output folder."""
        return sorted(
            p for p in self.out.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )


@contextlib.contextmanager
def new_batch(factory: pytest.TempPathFactory, name: str, count: int = INPUTS) -> Iterator[Batch]:
    """A fresh batch directory with ``count`` inputs and its own slow emulator."""
    root = factory.mktemp(name)
    inputs = make_inputs(root / "photos", count, seed=count)
    with PhotaEmulator(latency=LATENCY, max_output_side=64, balance=1e6) as emu:
        batch = Batch(emu, root, inputs)
        try:
            yield batch
        finally:
            for proc in batch.procs:  # a failed scenario leaves no CLI behind
                proc.kill()
                proc.wait()


def output_sizes(batch: Batch) -> list[tuple[int, int]]:
    """The size of every output, each decoded in full (a torn file fails here)."""
    sizes = []
    for path in batch.outputs():
        with Image.open(path) as image:
            image.load()
            sizes.append(image.size)
    return sizes


# -- scenarios (played once per module, side by side) -----------------------------------------


def kill_repeatedly(batch: Batch, *extra: str) -> Batch:
    """SIGKILL the CLI 10 times at random moments spread over the run, then run it to the end.

    Each kill comes once the ledger reaches a random charge count (spread over the whole batch),
    plus a random part of the latency, so kills land between charging and answering.
    """
    rng = random.Random(2026 + len(extra))
    for threshold in sorted(rng.sample(range(8, INPUTS - 8), KILLS)):
        proc = batch.start(*extra)
        batch.wait_for_charges(threshold, proc)
        time.sleep(rng.uniform(0, 2 * LATENCY))  # a random moment, not an assertion
        batch.kill(proc)
    batch.finish(batch.start(*extra))
    return batch


@dataclass
class Interrupted:
    """A batch stopped by Ctrl-C, what the interrupted run said, and the state it left."""

    batch: Batch
    code: int
    stderr: str
    charged_at_exit: int
    outputs_at_exit: int


def interrupt_then_resume(batch: Batch, presses: int) -> Interrupted:
    """Press Ctrl-C ``presses`` times once a third is paid, record the exit, then run to the end."""
    proc = batch.start()
    batch.wait_for_charges(INPUTS // 3, proc)
    proc.send_signal(signal.SIGINT)
    if presses == 2:
        batch.wait_for_stderr("in flight", proc)
        proc.send_signal(signal.SIGINT)
    run = len(batch.runs)
    code = batch.finish(proc, timeout=60)
    stderr = batch.log("stderr", run).read_text(errors="replace")
    state = Interrupted(batch, code, stderr, batch.charges(), len(batch.outputs()))
    batch.finish(batch.start())
    return state


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Any]]]:
    """The four 300-input scenarios, each on its own server, played side by side.

    Each one mostly waits on its server's latency, so playing them together keeps the module
    short; kills and presses are placed by each ledger's progress, not by the clock.
    """
    with contextlib.ExitStack() as stack:
        names = ("killed", "killed-jobs", "ctrl-c-once", "ctrl-c-twice")
        batches = {name: stack.enter_context(new_batch(tmp_path_factory, name)) for name in names}
        plays: dict[str, Callable[[], Any]] = {
            "killed": partial(kill_repeatedly, batches["killed"]),
            "killed-jobs": partial(kill_repeatedly, batches["killed-jobs"], "--jobs"),
            "ctrl-c-once": partial(interrupt_then_resume, batches["ctrl-c-once"], 1),
            "ctrl-c-twice": partial(interrupt_then_resume, batches["ctrl-c-twice"], 2),
        }
        with ThreadPoolExecutor(len(plays)) as pool:
            futures = {name: pool.submit(play) for name, play in plays.items()}
        # Each scenario's own failure surfaces in its own tests, through .result().
        yield futures


@pytest.fixture(params=["killed", "killed-jobs"], ids=["keyed by the manifest", "--jobs"])
def killed(request: pytest.FixtureRequest, played: dict[str, Future[Any]]) -> Batch:
    """300 inputs, 10 SIGKILLs at random moments, then a run to the end (with and without --jobs)."""
    batch: Batch = played[request.param].result()
    return batch


@pytest.fixture
def ctrl_c_once(played: dict[str, Future[Any]]) -> Interrupted:
    """300 inputs; one Ctrl-C a third of the way in; then a resumed run to the end."""
    state: Interrupted = played["ctrl-c-once"].result()
    return state


@pytest.fixture
def ctrl_c_twice(played: dict[str, Future[Any]]) -> Interrupted:
    """300 inputs; Ctrl-C twice a third of the way in (abandon); then a resumed run to the end."""
    state: Interrupted = played["ctrl-c-twice"].result()
    return state


# -- SIGKILL ----------------------------------------------------------------------------------


def test_kills_then_resume_charge_each_input_once(killed: Batch) -> None:
    """After 10 SIGKILLs and a final run, the ledger holds exactly one charge per input."""
    assert killed.runs.count(None) == KILLS
    assert killed.runs[-1] == 0
    assert killed.charges() == INPUTS


def test_kills_then_resume_leave_one_whole_output_per_input(killed: Batch) -> None:
    """After 10 SIGKILLs and a final run, each input has one whole output and none was overwritten."""
    sizes = output_sizes(killed)
    assert len(sizes) == INPUTS
    assert sorted(sizes) == sorted(killed.inputs)


def test_rerun_of_a_finished_manifest_sends_nothing(killed: Batch) -> None:
    """Running a finished manifest again exits 0 without a single request to the API."""
    before = len(killed.emu.requests)
    assert killed.finish(killed.start()) == 0
    assert killed.emu.requests[before:] == []


# -- Ctrl-C -----------------------------------------------------------------------------------


def test_first_ctrl_c_exits_130_with_a_resume_hint(ctrl_c_once: Interrupted) -> None:
    """One Ctrl-C says it is finishing the items in flight, exits 130 and names the manifest."""
    assert ctrl_c_once.code == 130
    assert "Ctrl-C again to abandon" in ctrl_c_once.stderr
    assert ctrl_c_once.batch.manifest.name in ctrl_c_once.stderr


def test_first_ctrl_c_saves_every_item_already_paid(ctrl_c_once: Interrupted) -> None:
    """After one Ctrl-C the run has waited for its paid items: one output per charge so far."""
    assert 0 < ctrl_c_once.charged_at_exit < INPUTS
    assert ctrl_c_once.outputs_at_exit == ctrl_c_once.charged_at_exit


def test_resume_after_one_ctrl_c_charges_each_input_once(ctrl_c_once: Interrupted) -> None:
    """A run resumed after one Ctrl-C ends with one charge and one whole output per input."""
    batch = ctrl_c_once.batch
    assert batch.runs[-1] == 0
    assert batch.charges() == INPUTS
    assert sorted(output_sizes(batch)) == sorted(batch.inputs)


def test_second_ctrl_c_abandons_with_exit_130(ctrl_c_twice: Interrupted) -> None:
    """A second Ctrl-C abandons the items in flight and still exits 130 naming the manifest."""
    assert ctrl_c_twice.code == 130
    assert "Ctrl-C again to abandon" in ctrl_c_twice.stderr
    assert ctrl_c_twice.outputs_at_exit < ctrl_c_twice.charged_at_exit
    assert ctrl_c_twice.batch.manifest.name in ctrl_c_twice.stderr


def test_resume_after_abandoning_charges_each_input_once(ctrl_c_twice: Interrupted) -> None:
    """Items abandoned in flight are resumed by their key: one charge and output per input."""
    batch = ctrl_c_twice.batch
    assert batch.runs[-1] == 0
    assert batch.charges() == INPUTS
    assert sorted(output_sizes(batch)) == sorted(batch.inputs)


# -- another working directory ----------------------------------------------------------------


def test_resume_from_another_directory_pays_nothing_twice(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A run started with relative paths and resumed from a sibling directory pays each input once."""
    count = 60
    with new_batch(tmp_path_factory, "elsewhere", count) as batch:
        first = batch.start(paths=("photos", "out", "run.manifest"), cwd=batch.root)
        batch.wait_for_charges(count // 2, first)
        batch.kill(first)
        elsewhere = batch.root / "elsewhere"
        elsewhere.mkdir()
        resumed = batch.start(paths=("../photos", "../out", "../run.manifest"), cwd=elsewhere)
        assert batch.finish(resumed) == 0
        assert batch.charges() == count
        assert sorted(output_sizes(batch)) == sorted(batch.inputs)


# -- unknown outcomes -------------------------------------------------------------------------

UNKNOWN_INPUTS = 20


def test_lost_submit_answers_stay_pending_and_are_not_paid_again(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Submits whose every answer is lost end pending (exit 1); the rerun pays nothing more."""
    with new_batch(tmp_path_factory, "lost-answers", UNKNOWN_INPUTS) as batch:
        batch.emu.add_fault("/enhance", drop="after", times=100_000)
        assert batch.finish(batch.start()) == 1
        assert "pending" in batch.said(0)
        batch.emu.clear_faults()
        assert batch.finish(batch.start()) == 0
        assert batch.charges() == UNKNOWN_INPUTS
        assert sorted(output_sizes(batch)) == sorted(batch.inputs)


def test_poll_404s_stay_pending_and_are_not_paid_again(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Jobs whose polls answer 404 end pending (exit 1); the rerun pays nothing more."""
    with new_batch(tmp_path_factory, "poll-404", UNKNOWN_INPUTS) as batch:
        batch.emu.add_fault("/jobs/*", status=404, times=100_000)
        assert batch.finish(batch.start()) == 1
        assert "pending" in batch.said(0)
        batch.emu.clear_faults()
        assert batch.finish(batch.start()) == 0
        assert batch.charges() == UNKNOWN_INPUTS
        assert sorted(output_sizes(batch)) == sorted(batch.inputs)


def test_sigterm_stops_like_a_first_ctrl_c(tmp_path_factory: pytest.TempPathFactory) -> None:
    """SIGTERM lets paid items finish and exits 130; the resumed run pays each input once."""
    count = 60
    with new_batch(tmp_path_factory, "sigterm", count) as batch:
        proc = batch.start()
        batch.wait_for_charges(count // 3, proc)
        proc.send_signal(signal.SIGTERM)
        assert batch.finish(proc, timeout=60) == 130
        assert len(batch.outputs()) == batch.charges() < count
        assert batch.finish(batch.start()) == 0
        assert batch.charges() == count
        assert sorted(output_sizes(batch)) == sorted(batch.inputs)
