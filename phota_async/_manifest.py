"""The batch manifest: a write-ahead log of intents, one JSON object per line.

Theory of operation. The first line names the run (``run_id``, made once). Before an item's
submit is sent, an ``intent`` line records the absolute input, the idempotency key derived
from the run id and the item's identity, and the planned absolute output base; it is on disk
(fsynced) before a byte goes to the server. Then come, as they happen, ``job`` (the job the
key created), and one outcome: ``done`` (outputs on disk), ``failed`` (refused: retried on a
rerun) or ``pending`` (outcome unknown: resumed on a rerun by the same key or job id, never
paid again). A kill at any moment leaves at most a torn last line, which is ignored.

Writers that arrive together share one fsync (group commit): whoever holds the write lock
flushes every line queued so far, so N items starting at once cost one fsync, not N.

JSONL rather than SQLite: measured in ``benchmarks/manifest.py`` (group commit keeps the
write-ahead cost a few percent of batch time; a 1M-item manifest loads in a few seconds).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import anyio
import attrs

from ._files import off_loop

FORMAT = 2

# Record states, as data. ``intent`` and ``job`` without an outcome mean "in flight when the
# run stopped": the same as ``pending``.
RESUMABLE = frozenset({"intent", "job", "pending"})
OUTCOMES = frozenset({"done", "failed", "pending"})


@attrs.define
class Record:
    """What the manifest says about one input (the latest line wins, field by field)."""

    state: str
    key: str | None = None
    attempt: int = 0
    identity: str | None = None
    base: str | None = None
    job: dict[str, Any] | None = None
    outputs: tuple[str, ...] = ()
    request_id: str | None = None
    reason: str | None = None
    new_key: bool = False


def _apply(records: dict[str, Record], entry: dict[str, Any]) -> None:
    name = entry.get("input")
    if not isinstance(name, str):
        return
    op = entry.get("op")
    if op is None:  # format 1: {"input", "status": done|failed|submitted, ...}
        op = {"submitted": "job"}.get(entry.get("status", ""), entry.get("status"))
    record = records.get(name)
    if op == "intent":
        records[name] = Record(
            "intent",
            key=entry.get("key"),
            attempt=int(entry.get("attempt") or 1),
            identity=entry.get("identity"),
            base=entry.get("base"),
        )
        return
    if record is None:
        record = records[name] = Record(str(op))
    record.state = str(op)
    if op == "job" and isinstance(entry.get("job"), dict):
        record.job = entry["job"]
    elif op == "done":
        record.outputs = tuple(str(p) for p in entry.get("outputs") or ())
        record.request_id = entry.get("request_id")
    elif op == "failed":
        record.reason = entry.get("error")
        record.new_key = bool(entry.get("new_key", True))
    elif op == "pending":
        record.reason = entry.get("reason")


class Manifest:
    """A batch's write-ahead log (JSONL). Load it with ``await Manifest.open(path)``.

    Attributes:
        path: the file.
        run_id: the run's identity, made when the file was created and kept forever after.
        records: the latest ``Record`` per absolute input.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()
        self.run_id: str | None = None
        self.records: dict[str, Record] = {}
        self.torn = 0
        self._loaded = False
        self._buffer: list[str] = []
        self._queued = 0
        self._flushed = 0
        self._lock = anyio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Manifest:
        """Load (or create) the manifest at ``path`` off the event loop."""
        manifest = cls(path)
        await manifest.load()
        return manifest

    async def load(self) -> None:
        """Read the file once (off the loop); create it with a fresh run id if needed."""
        if self._loaded:
            return
        await off_loop(self._load)
        self._loaded = True
        if self.run_id is None:
            self.run_id = secrets.token_hex(16)
            await self.write(
                [{"op": "run", "phota_manifest": FORMAT, "run_id": self.run_id, "t": time.time()}]
            )

    def _load(self) -> None:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return
        loads, records = json.loads, self.records
        with handle:
            for line in handle:
                try:
                    entry = loads(line)
                except ValueError:
                    self.torn += 1  # a line cut short by a kill: that step did not happen
                    continue
                if not isinstance(entry, dict):
                    continue
                if entry.get("op") == "run":
                    self.run_id = self.run_id or str(entry.get("run_id"))
                else:
                    _apply(records, entry)

    def bases(self) -> dict[str, str]:
        """Planned output bases of earlier runs: ``{base casefolded: input}``."""
        return {Path(r.base).name.casefold(): name for name, r in self.records.items() if r.base}

    async def write(self, entries: Iterable[dict[str, Any]]) -> None:
        """Append ``entries`` and return once they are on disk (fsynced).

        Concurrent writers share fsyncs: the one holding the lock writes everything queued.
        The flush is shielded from cancellation, so a cancelled writer still leaves whole lines.
        """
        dumps = json.dumps
        for entry in entries:
            _apply(self.records, entry)
            self._buffer.append(dumps(entry, separators=(",", ":")) + "\n")
        self._queued += 1
        mine = self._queued
        async with self._lock:
            if self._flushed >= mine:
                return
            chunk, upto = "".join(self._buffer), self._queued
            self._buffer.clear()
            with anyio.CancelScope(shield=True):
                await off_loop(self._append, chunk)
            self._flushed = upto

    async def flush(self) -> None:
        """Write whatever is still queued (lines of a writer cancelled while it waited)."""
        if self._buffer:
            await self.write([])

    def _append(self, chunk: str) -> None:
        new = not self.path.exists()
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        if new:  # the file's name must survive a crash too
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
