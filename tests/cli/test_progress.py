"""Progress as plain lines, for logs, CI and pipes."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from phota_async import BatchProgress, Spend
from phota_async._cli import main
from phota_async._cli.progress import Progress, batch_status
from phota_async.testing import PhotaEmulator
from tests.cli.conftest import FAST_POLLS


def test_plain_lines_say_each_change_once() -> None:
    """Off a terminal, an update that changes nothing (a poll of a profile still training)
    prints no new line; every change prints one."""
    stream = io.StringIO()
    with Progress(stream) as progress:
        training = progress.task("train", None)
        for done, status in [(0, "QUEUING"), (0, "QUEUING"), (0, "IN_PROGRESS"),
                             (0, "IN_PROGRESS"), (1, "READY")]:  # fmt: skip
            training.update(done, status=status)
    assert stream.getvalue().splitlines() == [
        "train: 0 QUEUING",
        "train: 0 IN_PROGRESS",
        "train: 1 READY",
    ]


def test_disabled_progress_prints_nothing() -> None:
    """With --json the progress display stays silent."""
    stream = io.StringIO()
    with Progress(stream, enabled=False) as progress:
        progress.note("hello")
        progress.task("enhance", 3).update(1)
    assert stream.getvalue() == ""


def test_batch_status_names_failures_throttling_and_spend() -> None:
    """A batch bar's status says what is not done, how the server throttles, what was spent."""
    spend = Spend(limit=5.0, spent=1.2, pending=0.15)
    progress = BatchProgress(total=9, done=6, failed=1, pending=1, throttled=12, pace=19.6,
                             spend=spend)  # fmt: skip
    assert batch_status(progress) == (
        "2 not done, throttled 12 (429/503), pacing 19.6/s, $1.20 spent of $5.00, $0.15 pending"
    )


def test_batch_status_is_empty_when_there_is_nothing_to_say() -> None:
    """No failures, no throttling and no budget: no status text."""
    assert batch_status(BatchProgress(total=3, done=3)) == ""


def test_the_batch_progress_lines_show_the_spend(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Off a terminal, `phota enhance --budget` prints one progress line per photo with the
    run's spend so far."""
    argv = ["enhance", str(photos), "--out", str(tmp_path / "out"), "--concurrency", "1",
            "--budget", "1", *FAST_POLLS]  # fmt: skip
    assert main(argv) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("enhance:")]
    assert len(lines) == 5
    for n, line in enumerate(lines, 1):  # a rate shows once a second has passed
        assert re.fullmatch(rf"enhance: {n}/5 ([0-9.]+/s )?\${0.12 * n:.2f} spent of \$1\.00", line)
