"""Helpers shared by the test suites: small real images, loopback servers, virtual time.

Virtual time
------------
``run_virtual(main())`` runs a coroutine on a ``VirtualTimeLoop``: an ordinary selector event
loop whose clock (``loop.time()``, hence ``asyncio.sleep``, ``call_later``, ``asyncio.timeout``
and anyio's cancel scopes) jumps straight to the next timer whenever every task is blocked.
A 20-minute wait then takes as long as the work in it, and every interval the code asks for
is kept exactly, so tests can assert exact times instead of wall-clock windows.

The SDK needs nothing for this: its poller and poll budget read the running loop's clock,
which in production is ``time.monotonic()``. The price is a rule for the tests: time only
jumps when nothing else can happen, so everything the scenario waits on must live in this
loop (``MockTransport`` handlers, in-process fakes). Work handed to an executor thread keeps
the clock still until it is back (threads take no virtual time). A socket to another thread
or process would see the clock race past its deadlines, so such tests use real time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import selectors
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from aiohttp import web
from PIL import Image

from phota_async.testing._images import sample_photo

T = TypeVar("T")

# Real seconds a virtual-time loop with no timer waits for another thread before giving up.
STUCK_AFTER = 10.0


def jpeg_bytes(seed: int = 1, size: tuple[int, int] = (96, 96)) -> bytes:
    """A real JPEG of a synthetic portrait."""
    buf = io.BytesIO()
    sample_photo(seed, size).save(buf, format="JPEG")
    return buf.getvalue()


def png_bytes(
    colour: tuple[int, int, int] = (90, 120, 200), size: tuple[int, int] = (64, 48)
) -> bytes:
    """A real PNG of one flat colour."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    """``data`` as an ASCII base64 string."""
    return base64.b64encode(data).decode("ascii")


def decode(data: bytes) -> Image.Image:
    """An image's bytes, opened and fully loaded."""
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


@contextlib.asynccontextmanager
async def local_server(app: web.Application, **runner: float) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yield its origin; shut it down afterwards."""
    app_runner = web.AppRunner(app, **runner)
    await app_runner.setup()
    try:
        await web.TCPSite(app_runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{app_runner.addresses[0][1]}"
    finally:
        await app_runner.cleanup()


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, checking every few milliseconds; fail after
    ``timeout`` seconds. For state another task or thread changes without an event to await
    (an emulator's request log), instead of a fixed sleep that hopes it is long enough."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + timeout
    while not condition():
        if loop.time() > give_up:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


class _Selector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """A selector that, instead of blocking for ``timeout``, moves its loop's clock on."""

    loop: VirtualTimeLoop

    def select(self, timeout: float | None = None) -> list[Any]:
        ready: list[Any] = super().select(0)
        if ready or timeout == 0:
            return ready
        if self.loop.threads:
            # An executor job will wake the loop through its self-pipe: wait for it for real,
            # without moving the clock.
            return list(super().select(timeout))
        if timeout is None:
            # No timer at all: only another thread (such as the loop's own executor shutdown)
            # can still wake the loop. Give it a bounded real wait, then call the scenario stuck.
            ready = list(super().select(STUCK_AFTER))
            if not ready:
                raise RuntimeError("virtual time: every task waits and no timer is set")
            return ready
        self.loop.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps to the next timer whenever all its tasks wait."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.threads = 0
        selector = _Selector()
        selector.loop = self
        super().__init__(selector)

    def time(self) -> float:
        """The virtual clock, in seconds."""
        return self.now

    def run_in_executor(self, executor: Any, func: Callable[..., T], *args: Any) -> Any:
        """Run ``func`` in a thread; the clock stands still until it is back."""
        future = super().run_in_executor(executor, func, *args)
        self.threads += 1

        def back(_: asyncio.Future[T] | Future[T]) -> None:
            self.threads -= 1

        future.add_done_callback(back)
        return future


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh ``VirtualTimeLoop`` and close it."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)
