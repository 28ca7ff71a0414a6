"""Atomic file writes, done off the event loop."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# File reads that may wait for a disk, and file writes, run on a few dedicated threads rather
# than a large general pool: every thread that allocates gets its own malloc arena, and a dozen
# arenas holding freed chunks cost more resident memory than the streaming saves.
_IO_THREADS = 4
_pool: ThreadPoolExecutor | None = None


async def off_loop(fn: Callable[..., T], *args: object) -> T:
    """Run blocking file work on the SDK's small I/O pool, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_io_pool(), fn, *args)


def _io_pool() -> ThreadPoolExecutor:
    """The pool ``off_loop`` uses, for work that needs its ``concurrent.futures`` handle."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="phota-io")
    return _pool


async def settled(
    fn: Callable[..., T],
    *args: object,
    undo: Callable[[T], object] | None = None,
    dropped: Callable[[], object] | None = None,
) -> T:
    """Run ``fn`` like ``off_loop``, but let a cancellation through only once no thread is
    working on it any more.

    A running thread cannot be stopped: a cancelled ``off_loop`` returns while its file work
    goes on, so a clean-up that follows (a close, an unlink) would race it. Here work that has
    not started is dropped (and ``dropped()`` called instead, on the loop: the short form of a
    clean-up that must happen); work that has is waited for (file work is short), ``undo`` is
    applied to its result (closing a file opened for nobody, say); then the cancellation is
    raised.
    """
    work = _io_pool().submit(fn, *args)
    waiter = asyncio.wrap_future(work)
    cancelled: asyncio.CancelledError | None = None
    while not waiter.done():
        try:
            await asyncio.shield(waiter)
        except asyncio.CancelledError as exc:
            if cancelled is None:
                cancelled = exc
                if work.cancel():  # it never started: nothing to wait for, nothing to undo
                    if dropped is not None:
                        dropped()
                    raise
        except BaseException:
            break
    if cancelled is None:
        return waiter.result()
    if undo is not None and not waiter.cancelled() and waiter.exception() is None:
        undo(waiter.result())
    raise cancelled


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create a fresh, empty temporary file beside ``path``; return its descriptor and name.

    Created with mode 0o666 so that the user's umask decides the permissions, as for any file
    a program writes (``mkstemp`` would make every output 0600).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = path.parent / f".{path.name[:200]}.{secrets.token_hex(6)}.part"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def write_chunks(path: Path, chunks: Iterable[bytes]) -> Path:
    """Write ``chunks`` to a temporary file beside ``path``, fsync it, rename it into place
    (blocking: run it off the event loop). A failure leaves no temporary file."""
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.writelines(chunks)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def place(tmp: Path, path: Path) -> Path:
    """Flush a finished temporary file written by someone else to the disk, then rename it
    into place (blocking; one worker hop for both): a power loss never leaves an empty file
    under an image's name."""
    fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path


async def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    return await off_loop(write_chunks, path, (data,))


def temp_beside(path: Path) -> Path:
    """A fresh temporary file name in ``path``'s folder (created empty, umask permissions)."""
    fd, tmp = _create_temp(path)
    os.close(fd)
    return tmp
