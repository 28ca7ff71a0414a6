"""Progress as plain lines, for logs, CI and pipes."""

from __future__ import annotations

import io

from phota_async._cli.progress import Progress


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
