"""``StateStore``: the emulated account kept in a folder, so that a restarted emulator keeps it.

Layout of a state folder:

```text
DIR/emulator.sqlite3     profiles, jobs, idempotency keys, the ledger, settings (WAL mode)
DIR/emulator.lock        locked while an emulator has the database open: one at a time
DIR/outputs/KEY          output images behind signed download URLs
DIR/files/KEY            the public file store (uploaded training photos)
```

Theory of operation: the in-memory records stay the truth while the emulator runs; every
change is written through here at once, as one small transaction (an upsert of one row, or an
append to the ledger). Rows are a few hundred bytes of JSON, the database is in WAL mode with
``synchronous=NORMAL``, so a commit is an append to the log with no fsync (about 0.1 ms on an
idle machine). These row writes run on the event loop, on purpose: a charge, a job or an
idempotency key is then durable before the answer that reveals it leaves, in the order it
happened, so a SIGKILL at any moment never forgets a charge or a key a client has seen (a
writer thread would need a queue, and whatever sat in it would be lost). Only an
operating-system crash may roll back the last transactions. Image files (megabytes at 4K) are
written in a thread instead, file before row, and served from memory until written; a row
never names a missing file, a file with no row is harmless and removed on load.

Times are stored as Unix seconds, never as clock readings: a clock's origin is lost with its
process, and a profile's training keeps running while the emulator is down, as it would on
the real service.

A threaded emulator is also driven from the test's thread (``add_profile``, ``balance = ...``),
so one lock serialises the connection.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one emulator per folder is then the user's job
    fcntl = None  # type: ignore[assignment]

# SQLite's application_id header field marks the file as ours ("PHOT"), so that a foreign
# database is refused before anything is read from or written to it.
APPLICATION_ID = 0x50484F54
SCHEMA_VERSION = 1
DB_NAME = "emulator.sqlite3"
LOCK_NAME = "emulator.lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS profiles (
    id TEXT PRIMARY KEY, record TEXT NOT NULL, picture BLOB, face BLOB
);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, job_id TEXT NOT NULL, at REAL NOT NULL, status TEXT
);
CREATE TABLE IF NOT EXISTS ledger (seq INTEGER PRIMARY KEY AUTOINCREMENT, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS outputs (
    key TEXT PRIMARY KEY, content_type TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS files (key TEXT PRIMARY KEY, content_type TEXT NOT NULL);
"""


class StateDirError(ValueError):
    """The state folder cannot be used: not a folder, another program's, corrupt or newer."""


class StateStore:
    """One state folder, opened (and checked) at construction.

    Args:
        folder: the state folder; created if missing. An empty folder becomes a new state.

    Raises:
        StateDirError: ``folder`` is a file, holds files that are not an emulator's state, or
            its database is corrupt, another application's, or of a newer schema.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._lock = threading.RLock()  # re-entered by the writes inside a transaction()
        self._depth = 0  # transactions open on this thread (under the lock)
        self._db: sqlite3.Connection | None = None
        self._lock_file: IO[bytes] | None = None
        if self.folder.exists() and not self.folder.is_dir():
            raise StateDirError(f"state dir {self.folder} is a file, not a folder")
        db_path = self.folder / DB_NAME
        if (
            self.folder.is_dir()
            and not db_path.exists()
            and any(p.name != LOCK_NAME for p in self.folder.iterdir())
        ):
            raise StateDirError(
                f"state dir {self.folder} is not empty and holds no emulator state "
                f"({DB_NAME}); pick a new or empty folder"
            )
        self.outputs = self.folder / "outputs"
        self.files = self.folder / "files"
        self._path = db_path
        try:
            self.outputs.mkdir(parents=True, exist_ok=True)
            self.files.mkdir(exist_ok=True)
        except OSError as exc:
            raise StateDirError(f"state dir {self.folder} cannot be used: {exc}") from exc
        self._db = self._connect()

    def _take_folder(self) -> None:
        """Hold the folder's lock while the database is open: two emulators on one folder
        would each keep their own truth in memory and write over each other's."""
        if fcntl is None or self._lock_file is not None:
            return
        handle = (self.folder / LOCK_NAME).open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise StateDirError(
                f"state dir {self.folder} is in use by another running emulator"
            ) from None
        self._lock_file = handle

    def _release_folder(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing the file releases the lock
            self._lock_file = None

    def open(self) -> None:
        """Open the database (and take the folder) now rather than on the first write.

        Raises:
            StateDirError: another emulator holds the folder.
        """
        with self._lock:
            self._conn  # noqa: B018 (opens it)

    def _connect(self) -> sqlite3.Connection:
        self._take_folder()
        try:
            return self._open_db()
        except BaseException:
            self._release_folder()
            raise

    def _open_db(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateDirError(f"state dir {self.folder} cannot be used: {exc}") from exc
        try:
            self._check(db)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise StateDirError(
                f"state dir {self.folder}: {DB_NAME} is not a readable emulator state ({exc})"
            ) from exc
        except StateDirError:
            db.close()
            raise
        return db

    def _check(self, db: sqlite3.Connection) -> None:
        (app_id,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id == 0 and version == 0 and tables == 0:
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif app_id != APPLICATION_ID:
            raise StateDirError(
                f"state dir {self.folder}: {DB_NAME} belongs to another application"
            )
        elif version > SCHEMA_VERSION:
            raise StateDirError(
                f"state dir {self.folder} was written by a newer phota_async "
                f"(schema {version}, this one reads {SCHEMA_VERSION})"
            )
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA)
        db.execute("PRAGMA quick_check").fetchone()

    def close(self) -> None:
        """Close the database (folding the write-ahead log back into it); the next use of the
        store opens it again, for an emulator started again after ``stop()``."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
            self._release_folder()

    @property
    def _conn(self) -> sqlite3.Connection:
        # Called with the lock held.
        if self._db is None:
            self._db = self._connect()
        return self._db

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Make every write inside one transaction: all of them survive a kill, or none."""
        with self._write():
            yield

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._conn
            if self._depth:  # inside a transaction(): its COMMIT covers this write
                yield db
                return
            db.execute("BEGIN")
            self._depth += 1
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            finally:
                self._depth -= 1
            db.execute("COMMIT")

    # -- settings --------------------------------------------------------------------------

    def setting(self, name: str) -> str | None:
        """A stored setting (API key, signing keys, balance), or ``None``."""
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM settings WHERE name = ?", (name,)
            ).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, name: str, value: str) -> None:
        """Store a setting."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (name, value))

    # -- records ---------------------------------------------------------------------------

    def save_profile(
        self, record: dict[str, Any], picture: bytes | None, face: bytes | None
    ) -> None:
        """Insert or replace one profile (``record`` is JSON-ready, times in Unix seconds)."""
        with self._write() as db:
            db.execute(
                # An upsert keeps the row's rowid, so rowid order is creation order.
                "INSERT INTO profiles VALUES (?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " record = excluded.record,"
                " picture = excluded.picture, face = excluded.face",
                (record["id"], json.dumps(record), picture, face),
            )

    def delete_profile(self, profile_id: str) -> None:
        """Forget one profile."""
        with self._write() as db:
            db.execute("DELETE FROM profiles WHERE id = ?", (profile_id,))

    def profiles(self) -> list[tuple[dict[str, Any], bytes | None, bytes | None]]:
        """Every profile, oldest first: (record, picture JPEG, face PNG)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT record, picture, face FROM profiles ORDER BY rowid"
            ).fetchall()
        return [(json.loads(r), p, f) for r, p, f in rows]

    def save_job(self, record: dict[str, Any]) -> None:
        """Insert or replace one job."""
        with self._write() as db:
            db.execute(
                "INSERT INTO jobs VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET"
                " record = excluded.record",
                (record["id"], json.dumps(record)),
            )

    def delete_job(self, job_id: str) -> None:
        """Forget one job (expired or evicted)."""
        with self._write() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def jobs(self) -> list[dict[str, Any]]:
        """Every job, in submit order."""
        with self._lock:
            rows = self._conn.execute("SELECT record FROM jobs ORDER BY rowid").fetchall()
        return [json.loads(r) for (r,) in rows]

    def save_key(self, key: str, job_id: str, at: float, status: str | None) -> None:
        """Remember an idempotency key (``at``: Unix seconds of its first submit)."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?)", (key, job_id, at, status)
            )

    def forget_keys_before(self, at: float) -> None:
        """Drop the idempotency keys first submitted before Unix time ``at``."""
        with self._write() as db:
            db.execute("DELETE FROM idempotency WHERE at < ?", (at,))

    def idempotency_keys(self) -> list[tuple[str, str, float, str | None]]:
        """Every idempotency key: (key, job id, Unix submit time, final status if evicted)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, job_id, at, status FROM idempotency ORDER BY at"
            ).fetchall()
        return [(str(k), str(j), float(a), s) for k, j, a, s in rows]

    def append_ledger(self, entry: dict[str, Any] | None, balance: float) -> None:
        """Append a ledger entry (if any) and store the balance, in one transaction."""
        with self._write() as db:
            if entry is not None:
                db.execute("INSERT INTO ledger (entry) VALUES (?)", (json.dumps(entry),))
            db.execute("INSERT OR REPLACE INTO settings VALUES ('balance', ?)", (repr(balance),))

    def ledger(self) -> list[dict[str, Any]]:
        """Every ledger entry, in order."""
        with self._lock:
            rows = self._conn.execute("SELECT entry FROM ledger ORDER BY seq").fetchall()
        return [json.loads(r) for (r,) in rows]

    # -- image files -----------------------------------------------------------------------

    def save_output(self, key: str, data: bytes, content_type: str, created: float) -> None:
        """Write an output image, then the row that names it."""
        _write_file(self.outputs / key, data)
        with self._write() as db:
            db.execute("INSERT INTO outputs VALUES (?, ?, ?)", (key, content_type, created))

    def delete_output(self, key: str) -> None:
        """Remove an output image and its row."""
        with self._write() as db:
            db.execute("DELETE FROM outputs WHERE key = ?", (key,))
        with contextlib.suppress(FileNotFoundError):
            (self.outputs / key).unlink()

    def output_rows(self) -> list[tuple[str, str, float]]:
        """Every kept output whose file exists, oldest first: (key, content type, Unix time).

        Files no row names (a process killed between the two writes) are removed.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, content_type, created FROM outputs ORDER BY created"
            ).fetchall()
        named = {str(k) for k, _, _ in rows}
        for path in self.outputs.iterdir():
            if path.name not in named:
                path.unlink(missing_ok=True)
        return [(str(k), str(c), float(t)) for k, c, t in rows if (self.outputs / k).exists()]

    def save_file(self, key: str, data: bytes, content_type: str) -> None:
        """Write a public file, then its row."""
        _write_file(self.files / key, data)
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO files VALUES (?, ?)", (key, content_type))

    def file_rows(self) -> list[tuple[str, str]]:
        """Every public file whose bytes exist: (key, content type)."""
        with self._lock:
            rows = self._conn.execute("SELECT key, content_type FROM files").fetchall()
        return [(str(k), str(c)) for k, c in rows if (self.files / k).exists()]


def _write_file(path: Path, data: bytes) -> None:
    # Written under a temporary name and renamed: a reader never sees half a file.
    partial = path.with_name(path.name + ".part")
    try:
        partial.write_bytes(data)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
