"""The batch manifest: a write-ahead log of intents, kept in a stdlib SQLite file (WAL mode).

Theory of operation. The ``run`` table names the run (``run_id``, made once, kept forever).
The ``items`` table holds one row per absolute input, moved through these states:

    (none) --intent--> intent --job--> job --done--> done
                         |              |--pending--> pending (outcome unknown)
                         |--failed--> failed (refused: a rerun tries again)

Before an item's submit is sent, its ``intent`` row (the idempotency key derived from the run
id and the item's identity, the planned absolute output base) is committed with
``synchronous=FULL``: on disk before a byte goes to the server. ``intent``, ``job`` and
``pending`` rows are resumed on a rerun by the same key or job id, never paid again.

Writers that arrive together share one commit (group commit): whoever holds the write lock
commits every change queued so far, so N items starting at once cost one fsync, not N. Only
intents are waited for; job ids and outcomes are queued (``note``) and ride along with the
next commit (or the final flush): losing them to a crash costs a resume by key, not money.

Why SQLite rather than JSONL: measured in ``benchmarks/manifest.py``. Appending JSON lines is
as cheap to write, but a resume must parse three lines per item; on this project's shared
2-core machine that alone took ~20 s for a million items, against ~3 s for one SQLite query.
A manifest written as JSONL by an earlier version is imported on first open.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs

from ._files import off_loop
from .errors import InvalidRequestError

FORMAT = 2
_SQLITE_MAGIC = b"SQLite format 3\x00"

# States, as data: ``intent`` and ``job`` without an outcome mean "in flight when the run
# stopped", the same as ``pending``.
RESUMABLE = frozenset({"intent", "job", "pending"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS run (
    id INTEGER PRIMARY KEY CHECK (id = 1), run_id TEXT NOT NULL, format INTEGER, created REAL
);
CREATE TABLE IF NOT EXISTS items (
    input TEXT PRIMARY KEY, state TEXT NOT NULL, key TEXT, attempt INTEGER NOT NULL DEFAULT 0,
    identity TEXT, options TEXT, base TEXT, job_id TEXT, job_format TEXT, outputs TEXT,
    request_id TEXT, reason TEXT, error TEXT, new_key INTEGER NOT NULL DEFAULT 0, updated REAL
) WITHOUT ROWID;
"""
# What planning a resume needs for every input: few, short columns (a million-row resume
# reads these in seconds). The whole record is read only for the items that run.
_PLAN = "SELECT input, state, base, outputs, request_id FROM items"
_PLAN_STATE, _PLAN_BASE, _PLAN_OUTPUTS, _PLAN_REQUEST_ID = 1, 2, 3, 4
_LOAD = (
    "SELECT input, state, key, attempt, base, job_id, job_format, outputs, request_id, "
    "reason, new_key, identity FROM items"
)
_UPSERT = (
    "INSERT INTO items (input, state, {cols}, updated) VALUES (?, ?, {marks}, ?) "
    "ON CONFLICT(input) DO UPDATE SET state = excluded.state, {sets}, updated = excluded.updated"
)


def _upsert(*columns: str) -> str:
    return _UPSERT.format(
        cols=", ".join(columns),
        marks=", ".join("?" for _ in columns),
        sets=", ".join(f"{c} = excluded.{c}" for c in columns),
    )


_SQL = {
    # A new attempt replaces the whole row: no job, no outputs from an earlier attempt.
    "intent": "INSERT OR REPLACE INTO items (input, state, key, attempt, identity, options, "
    "base, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "job": _upsert("job_id", "job_format"),
    "done": _upsert("outputs", "request_id"),
    "failed": _upsert("error", "new_key"),
    "pending": _upsert("reason", "error"),
}


def _params(entry: dict[str, Any]) -> tuple[Any, ...]:
    op, name, now = entry["op"], entry["input"], time.time()
    if op == "intent":
        return (name, op, entry["key"], entry["attempt"], entry.get("identity"),
                entry.get("options"), entry.get("base"), now)  # fmt: skip
    if op == "job":
        job = entry["job"]
        return name, op, job["job_id"], job.get("output_format"), now
    if op == "done":
        return name, op, "\0".join(entry["outputs"]), entry.get("request_id"), now
    if op == "failed":
        return name, op, entry.get("error"), int(bool(entry.get("new_key", True))), now
    return name, op, entry.get("reason"), entry.get("error"), now


@attrs.define
class Record:
    """What the manifest says about one input."""

    state: str
    key: str | None = None
    attempt: int = 0
    base: str | None = None
    job: dict[str, Any] | None = None
    outputs: tuple[str, ...] = ()
    request_id: str | None = None
    reason: str | None = None
    new_key: bool = False
    identity: str | None = None

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Record:
        """A record from a ``_LOAD`` row."""
        *head, ident = row
        _, state, key, attempt, base, job_id, job_format, outputs, request_id, reason, new = head
        job = None
        if job_id is not None:
            job = {"job_id": job_id, "status": "QUEUED", "client_request_id": key,
                   "output_format": job_format or "jpg"}  # fmt: skip
        return cls(
            state, key=key, attempt=attempt or 0, base=base, job=job,
            outputs=tuple(outputs.split("\0")) if outputs else (), request_id=request_id,
            reason=reason, new_key=bool(new), identity=ident,
        )  # fmt: skip


class Manifest:
    """A batch's write-ahead log. Load it with ``await Manifest.open(path)``.

    Attributes:
        path: the file (absolute).
        run_id: the run's identity, made when the file was created and kept forever after.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).absolute()
        self.run_id: str | None = None
        self._rows: dict[str, tuple[Any, ...]] = {}
        self._loaded = False
        self._conn: sqlite3.Connection | None = None
        self._thread_lock = threading.Lock()
        self._buffer: list[dict[str, Any]] = []
        self._queued = 0
        self._flushed = 0
        self._lock = anyio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> Manifest:
        """Load (or create) the manifest at ``path``, off the event loop."""
        manifest = cls(path)
        await manifest.load()
        return manifest

    # -- reading -------------------------------------------------------------------------

    async def load(self) -> None:
        """Open the file once (off the loop), creating it with a fresh run id if needed."""
        if not self._loaded:
            await off_loop(self._load)
            self._loaded = True

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            new = not self.path.exists()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")  # each commit is fsynced
                conn.executescript(_SCHEMA)
            except BaseException:
                conn.close()  # a damaged file: leave no connection open on it
                raise
            self._conn = conn
            if new:  # the file's name must survive a crash too
                fd = os.open(self.path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return self._conn

    def _load(self) -> None:
        with self._thread_lock:
            try:
                self._load_locked()
            except sqlite3.DatabaseError as exc:
                self._close_locked()
                raise InvalidRequestError(
                    "manifest", f"{self.path} is not a readable batch manifest ({exc})"
                ) from exc

    def _load_locked(self) -> None:
        if self.path.exists():
            with self.path.open("rb") as handle:
                head = handle.read(len(_SQLITE_MAGIC))
            if head.startswith(b"{"):
                _import_jsonl(self.path)
            elif head and head != _SQLITE_MAGIC:
                # Never "import" (replace) a file that is no manifest: a photo or a document
                # given by mistake must stay as it was.
                raise InvalidRequestError(
                    "manifest", f"{self.path} is not a batch manifest (SQLite or JSON lines)"
                )
        conn = self._connect()
        row = conn.execute("SELECT run_id FROM run").fetchone()
        if row is None:
            run_id = secrets.token_hex(16)
            conn.execute("INSERT INTO run VALUES (1, ?, ?, ?)", (run_id, FORMAT, time.time()))
        else:
            run_id = row[0]
        self.run_id = run_id
        self._rows = {row[0]: row for row in conn.execute(_PLAN)}

    async def record(self, name: str) -> Record | None:
        """What the manifest says about the input ``name`` (read off the loop)."""
        if name not in self._rows:
            return None  # nothing about it when loaded, and only this run writes it since
        return await off_loop(self._record, name)

    def _record(self, name: str) -> Record | None:
        with self._thread_lock:
            row = self._connect().execute(_LOAD + " WHERE input = ?", (name,)).fetchone()
        return Record.from_row(row) if row is not None else None

    def done_item(self, name: str) -> tuple[tuple[str, ...], str | None]:
        """The outputs and request id recorded for an input loaded as done."""
        row = self._rows[name]
        outputs = row[_PLAN_OUTPUTS]
        return (tuple(outputs.split("\0")) if outputs else ()), row[_PLAN_REQUEST_ID]

    @staticmethod
    def read(path: str | Path) -> dict[str, Record]:
        """Every input's record as committed now, read through a separate read-only
        connection (for tools and tests; safe while a run is writing).

        Raises:
            sqlite3.Error: the file is missing or is not a manifest (yet).
        """
        conn = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute(_LOAD).fetchall()
        finally:
            conn.close()
        return {row[0]: Record.from_row(row) for row in rows}

    def done(self, names: Iterable[str]) -> list[bool]:
        """Which of ``names`` were loaded as done with every output still on disk: one
        listing per output folder, not one ``stat`` per file."""
        existing: set[str] = set()
        listed: set[str] = set()

        def exists(path: str) -> bool:
            if path in existing:
                return True
            folder = os.path.dirname(path)
            if folder in listed:
                return False
            listed.add(folder)
            with contextlib.suppress(OSError):
                existing.update(os.path.join(folder, n) for n in os.listdir(folder))
            return path in existing

        flags = []
        rows = self._rows
        for name in names:
            row = rows.get(name)
            outputs = row[_PLAN_OUTPUTS] if row is not None and row[_PLAN_STATE] == "done" else None
            # An answer with no images is done with nothing to check (not redone and re-paid).
            flags.append(
                outputs == "" or (outputs is not None and all(map(exists, outputs.split("\0"))))
            )
        return flags

    def planned(self, names: Iterable[str]) -> list[str | None]:
        """The output base planned for each of ``names`` (``None`` where there is none)."""
        rows = self._rows
        base = _PLAN_BASE
        return [row[base] if (row := rows.get(name)) is not None else None for name in names]

    def other_options(self, digest: str) -> bool:
        """Whether any input was planned under options other than ``digest`` (another call
        kind, format or prompt): its key and outputs belong to those options."""
        with self._thread_lock:
            row = (
                self._connect()
                .execute(
                    "SELECT 1 FROM items WHERE options IS NOT NULL AND options != ? LIMIT 1",
                    (digest,),
                )
                .fetchone()
            )
        return row is not None

    def bases(self) -> set[str]:
        """Output bases planned by earlier runs, casefolded (new names must avoid them)."""
        basename = os.path.basename
        base = _PLAN_BASE
        return {basename(row[base]).casefold() for row in self._rows.values() if row[base]}

    # -- writing -------------------------------------------------------------------------

    async def write(self, entries: Iterable[dict[str, Any]]) -> None:
        """Record ``entries`` and return once they are committed (fsynced).

        Concurrent writers share commits: the one holding the lock commits everything queued.
        The commit is shielded from cancellation, so a cancelled writer never leaves it half
        done, and a writer cancelled while queued has its entries committed by the next one.
        """
        self._buffer.extend(entries)
        self._queued += 1
        mine = self._queued
        async with self._lock:
            if self._flushed >= mine:
                return
            batch, upto = list(self._buffer), self._queued
            self._buffer.clear()
            with anyio.CancelScope(shield=True):
                await off_loop(self._commit, batch)
            self._flushed = upto

    def note(self, entries: Iterable[dict[str, Any]]) -> None:
        """Queue ``entries`` without waiting: they are committed with the next ``write`` or
        ``flush``. For what a crash may lose safely (a job id, an outcome): the item is then
        resumed by its key, which the server answers with the same job, at no charge."""
        self._buffer.extend(entries)

    @property
    def backlog(self) -> int:
        """Entries queued and not committed yet."""
        return len(self._buffer)

    async def flush(self) -> None:
        """Commit whatever is still queued (entries of a writer cancelled while it waited)."""
        if self._buffer:
            await self.write([])

    def _commit(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        with self._thread_lock:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for entry in entries:
                    conn.execute(_SQL[entry["op"]], _params(entry))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    async def aclose(self) -> None:
        """Close the database (it reopens on the next use). Idempotent."""
        await off_loop(self._close)

    def _close(self) -> None:
        with self._thread_lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _jsonl_entries(path: Path) -> Iterator[dict[str, Any]]:
    """Entries of a format-1 JSONL manifest (``{"input", "status", ...}`` lines)."""
    with path.open("rb") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short by a kill: that step did not happen
            if not isinstance(entry, dict) or not isinstance(entry.get("input"), str):
                continue
            status = entry.get("status")
            if status == "done":
                yield {"op": "done", "input": entry["input"],
                       "outputs": [str(p) for p in entry.get("outputs") or ()],
                       "request_id": entry.get("request_id")}  # fmt: skip
            elif status == "submitted" and isinstance(entry.get("job"), dict):
                yield {"op": "job", "input": entry["input"], "job": entry["job"]}
            elif status == "failed":
                yield {"op": "failed", "input": entry["input"], "error": entry.get("error")}


def _import_jsonl(path: Path) -> None:
    """Convert a JSONL manifest of an earlier version in place (atomically)."""
    entries = list(_jsonl_entries(path))
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.import")
    imported = Manifest(tmp)
    try:
        imported._connect()  # a file whose every line was cut short still becomes a manifest
        imported._commit(entries)
        imported._close()
        os.replace(tmp, path)
    finally:
        imported._close()
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            leftover.unlink(missing_ok=True)
