"""Progress for the command line: a rich progress bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from .._batch import BatchProgress


class Progress:
    """One progress display for a command; ``task()`` adds a bar (or a plain-line counter).

    A bar shows counts, rate and ETA. When the stream is not a terminal (a log file, CI, a pipe),
    each update is one plain line instead, so nothing is lost or garbled.
    """

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._rich: Any = None
        if enabled and self.stream.isatty():
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )
                from rich.progress import Progress as RichProgress
            except ImportError:  # the cli extra is not installed: plain lines it is
                pass
            else:
                self._rich = RichProgress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    console=Console(file=self.stream),
                )

    def __enter__(self) -> Progress:
        if self._rich is not None:
            self._rich.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._rich is not None:
            self._rich.stop()

    def task(self, description: str, total: int | None) -> Task:
        """A new bar (``total=None`` for work of unknown length, such as training)."""
        return Task(self, description, total)

    def note(self, message: str) -> None:
        """A line of text above the bars."""
        if not self.enabled:
            return
        if self._rich is not None:
            self._rich.console.print(message)
        else:
            print(message, file=self.stream, flush=True)


class Task:
    """One bar of a ``Progress``."""

    def __init__(self, progress: Progress, description: str, total: int | None) -> None:
        self._progress = progress
        self._description = description
        self._total = total
        self._done = 0
        self._said: tuple[int, str] | None = None  # the last plain line's (done, status)
        self._started = time.monotonic()
        self._id = (
            progress._rich.add_task(description, total=total, rate="")
            if progress._rich is not None
            else None
        )

    def update(self, done: int, *, status: str = "") -> None:
        """Set how many units are done; ``status`` is extra text (failures, a profile status)."""
        self._done = done
        elapsed = time.monotonic() - self._started
        # Under a second the rate says more about the clock than about the work.
        rate = f"{done / elapsed:.1f}/s" if elapsed >= 1.0 and self._total else ""
        text = " ".join(t for t in (rate, status) if t)
        progress = self._progress
        if progress._rich is not None:
            progress._rich.update(self._id, completed=done, rate=text)
        elif progress.enabled and self._said != (done, status):
            # A poll that saw no change is not news in a log: one line per change.
            self._said = (done, status)
            of = f"/{self._total}" if self._total is not None else ""
            print(
                f"{self._description}: {done}{of} {text}".rstrip(), file=progress.stream, flush=True
            )


def batch_status(progress: BatchProgress) -> str:
    """A batch bar's status text: items not done, the server's throttling, the run's spend.

    Such as ``2 not done, throttled 12 (429/503), pacing 19.6/s, $1.20 spent of $5.00``;
    each part only when there is something to say.
    """
    bad = progress.failed + progress.pending
    parts = (f"{bad} not done" if bad else "", progress.throttle_line(), progress.spend_line())
    return ", ".join(p for p in parts if p)
