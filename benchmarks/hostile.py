"""Loop lag under large bodies, and memory under hostile answers.

    python benchmarks/run.py --only hostile [--quick]

The server (``_hostile_server.py``) runs in its own process; each case runs in a fresh client
process (``python benchmarks/hostile.py CASE ORIGIN``) that prints one JSON line:

- ``lag_ms``: the worst lag of the event loop during the case, seen by a ticker task that
  sleeps 1 ms at a time (how much later than asked it woke, the worst of all its wake-ups);
- ``held_ms``: the most CPU time the loop's thread spent between two ticks: the part of the
  lag that is work on the loop, without the time the machine gave to other processes (on a
  shared machine the wall-clock lag also counts every time this process was not scheduled);
- ``rss_mib``: the growth of the process's peak resident memory (``VmHWM``) over its
  resident memory just before the case, after imports and a warm-up call;
- ``outcome``: ``ok`` or the name of the error the call raised.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
MIB = 1024 * 1024


def _status(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


async def _measure(work: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    worst = held = 0.0
    done = False

    async def ticker() -> None:
        nonlocal worst, held
        last, last_cpu = loop.time(), time.thread_time()
        while not done:
            await asyncio.sleep(0.001)
            now, cpu = loop.time(), time.thread_time()
            worst = max(worst, now - last - 0.001)
            held = max(held, cpu - last_cpu)
            last, last_cpu = now, cpu

    before = _status("VmRSS")
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.monotonic()
    try:
        await work()
        outcome = "ok"
    except Exception as exc:
        outcome = type(exc).__name__
    seconds = time.monotonic() - started
    done = True
    await tick
    return {
        "lag_ms": worst * 1000,
        "held_ms": held * 1000,
        "rss_mib": _status("VmHWM") - before,
        "outcome": outcome,
        "seconds": seconds,
    }


def _photo(path: Path, size: int) -> None:
    """A file of ``size`` bytes that passes the SDK's input checks (a JPEG's first and last
    bytes around random ones: base64 cannot shrink it)."""
    with path.open("wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0")
        left = size - 6
        while left:
            piece = min(left, 4 * MIB)
            handle.write(os.urandom(piece))
            left -= piece
        handle.write(b"\xff\xd9")


async def run_case(case: str, origin: str, quick: bool) -> dict[str, Any]:
    from phota_async import PhotaClient

    def client(root: str, **options: Any) -> PhotaClient:
        return PhotaClient(api_key="bench", base_url=f"{origin}/{root}", **options)

    with tempfile.TemporaryDirectory() as tmp:
        scale = 10 if quick else 1
        if case == "idle":
            phota = client("ok")

            async def work() -> None:
                await asyncio.sleep(0.5 if quick else 3)

        elif case.startswith("upload"):
            photo = Path(tmp) / "big.jpg"
            _photo(photo, 50_000_000 // scale)
            count = 10 if case == "upload10" else 1
            phota = client("ok")
            await phota.enhance(Path(tmp) / "big.jpg", timeout=120)  # warm-up: page cache, pool

            async def work() -> None:
                await asyncio.gather(*(phota.enhance(photo, timeout=300) for _ in range(count)))

        elif case in ("result4x25", "image200"):
            mib, n = (25 // scale, 4) if case == "result4x25" else (150 // scale, 1)
            phota = client(f"big/{mib}/{n}", max_image_bytes=256 * MIB)
            warm = client("big/1/1")
            try:
                await (await warm.generate("warm-up")).aclose()
            finally:
                await warm.aclose()

            async def work() -> None:
                async with await phota.generate("large", timeout=300) as result:
                    assert len(result) == n

        else:
            root, options = {
                "endless_get": ("endless", {}),
                "endless_paid": ("endless", {}),
                "gzip_bomb": ("bomb", {}),
                # Quick mode sends a 15 MiB image: a smaller cap keeps the refusal in the run.
                "image200_refused": (
                    f"big/{150 // scale}/1",
                    {"max_image_bytes": 8 * MIB} if quick else {},
                ),
                "endless_download": ("urls", {}),
            }[case]
            phota = client(root, **options)

            async def work() -> None:
                if case in ("endless_get", "gzip_bomb"):
                    await phota.profiles.get("x", timeout=300)
                elif case == "endless_paid":
                    await phota.enhance(b"\xff\xd8\xff\xe0" + bytes(60) + b"\xff\xd9")
                elif case == "image200_refused":
                    await phota.generate("large", timeout=300)
                else:
                    result = await phota.enhance(b"\xff\xd8\xff\xe0" + bytes(60) + b"\xff\xd9")
                    await result.save(Path(tmp) / "out")

        try:
            return await _measure(work)
        finally:
            await phota.aclose()


LAG_CASES = {
    "idle": "nothing but the ticker (this machine's noise floor)",
    "upload1": "one 50 MB enhance(Path) upload",
    "upload10": "ten 50 MB uploads at once",
    "result4x25": "a result of 4 x 25 MiB images",
    "image200": "one 150 MiB image (200 MiB of base64), max_image_bytes=256 MiB",
}
MEMORY_CASES = {
    "endless_get": "endless chunked body, GET",
    "endless_paid": "endless chunked body, paid POST",
    "gzip_bomb": "endless gzip bomb (KiB on the wire per GiB)",
    "image200_refused": "200 MiB base64 image, default 64 MiB cap",
    "endless_download": "endless download into a file",
}


def figures(quick: bool) -> dict[str, dict[str, Any]]:
    """Run every case (three rounds, one in quick mode), each in a fresh process, against one
    server process; per case the median round by worst lag (RSS: the largest growth)."""
    rounds = 1 if quick else 3
    server = subprocess.Popen(
        [sys.executable, str(HERE / "_hostile_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdin is not None
    assert server.stdout is not None
    try:
        origin = json.loads(server.stdout.readline())["origin"]
        runs: dict[str, list[dict[str, Any]]] = {case: [] for case in [*LAG_CASES, *MEMORY_CASES]}
        for _ in range(rounds):
            for case, results in runs.items():
                argv = [sys.executable, __file__, case, origin] + (["--quick"] if quick else [])
                out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
                results.append(json.loads(out.strip().splitlines()[-1]))
        summary = {}
        for case, results in runs.items():
            results.sort(key=lambda r: float(r["lag_ms"]))
            summary[case] = {
                **results[len(results) // 2],
                "rss_mib": max(float(r["rss_mib"]) for r in results),
                "lag_ms_all": [round(float(r["lag_ms"]), 1) for r in results],
            }
        return summary
    finally:
        server.stdin.close()
        server.wait(timeout=30)


if __name__ == "__main__":
    name, address = sys.argv[1], sys.argv[2]
    print(json.dumps(asyncio.run(run_case(name, address, "--quick" in sys.argv))))
