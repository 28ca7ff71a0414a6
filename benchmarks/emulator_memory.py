"""RSS of an emulator process after many calls: does a long-running emulator stay bounded?

    python benchmarks/emulator_memory.py                 # 10,000 calls against this checkout
    python benchmarks/emulator_memory.py --quick         # 500 calls: checks the script works
    python benchmarks/emulator_memory.py --source DIR    # the emulator of another checkout
                                                         # (e.g. a `git worktree` of main)

The emulator runs in its own process with its default retention settings and 64 px outputs;
this process sends the calls (16 at a time): 70% synchronous enhances in URL mode (an output
kept per call), 10% in bytes mode, 20% asynchronous jobs with a client_request_id. Figures are
the emulator's VmRSS after a warm-up of 200 calls and after all of them, and the growth per
1,000 calls over the whole run and over its second half (once the caps are reached only the
ledger grows); absolute MiB, since no ratio applies. Nothing passes or fails here; ``run.py``
reports the growth against a target.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
WARM_UP = 200

# The server: one emulator, its address on the first line; then "rss" on stdin answers VmRSS
# (MiB) after a garbage collection, and the end of stdin stops it.
SERVER = """
import asyncio, gc, json, sys
from phota_async.testing import PhotaEmulator

def rss():
    gc.collect()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

async def main():
    async with PhotaEmulator(**json.loads(sys.argv[1])) as emu:
        where = __import__("phota_async").__file__
        print(json.dumps({"base_url": emu.base_url, "api_key": emu.api_key, "from": where}),
              flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            await asyncio.sleep(0.5)  # let jobs still in flight finish
            print(json.dumps({"rss_mib": rss(), "log": len(emu.requests)}), flush=True)

asyncio.run(main())
"""


def small_jpeg() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.effect_noise((64, 64), 40).convert("RGB").save(buf, format="JPEG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


async def send(base_url: str, key: str, start: int, count: int) -> None:
    import aiohttp

    image = small_jpeg()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(start, start + count):
        queue.put_nowait(i)

    async def worker(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            kind = i % 10
            body: dict[str, Any] = {"image": image, "response_mode": "urls"}
            if kind == 0:
                body["response_mode"] = "bytes"
            elif kind in (1, 2):
                body.update({"async": True, "client_request_id": f"bench-{i}"})
            async with session.post(f"{base_url}/enhance", json=body) as resp:
                await resp.read()
                assert resp.status in (200, 202), resp.status

    async with aiohttp.ClientSession(headers={"X-API-Key": key}) as session:
        await asyncio.gather(*(worker(session) for _ in range(16)))


def measure(calls: int, source: Path | None = None) -> dict[str, Any]:
    """Run the emulator (from ``source`` if given), send ``calls`` calls, return RSS figures."""
    # ``python -c`` imports from its working directory first: run it in the checkout wanted.
    cwd = source if source is not None else HERE.parent
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    options = {"max_output_side": 64, "balance": 1e9}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, json.dumps(options)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    def ask() -> dict[str, float]:
        stdin.write("rss\n")
        stdin.flush()
        answer: dict[str, float] = json.loads(stdout.readline())
        return answer

    try:
        srv = json.loads(stdout.readline())
        asyncio.run(send(srv["base_url"], srv["api_key"], 0, WARM_UP))
        warm = ask()
        half = calls // 2
        asyncio.run(send(srv["base_url"], srv["api_key"], WARM_UP, half - WARM_UP))
        middle = ask()
        asyncio.run(send(srv["base_url"], srv["api_key"], half, calls - half))
        end = ask()
    finally:
        stdin.close()
        proc.wait(timeout=60)
    growth = end["rss_mib"] - warm["rss_mib"]
    return {
        "calls": calls,
        "warm_rss_mib": warm["rss_mib"],
        "end_rss_mib": end["rss_mib"],
        "growth_mib": growth,
        "growth_per_1000_mib": growth / (calls - WARM_UP) * 1000,
        "half_rss_mib": middle["rss_mib"],
        "second_half_per_1000_mib": (end["rss_mib"] - middle["rss_mib"]) / (calls - half) * 1000,
        "log_entries": end["log"],
        "from": srv["from"],
    }


def show(f: dict[str, Any]) -> None:
    print(
        f"  {Path(f['from']).parent.parent}: RSS {f['warm_rss_mib']:.1f} MiB after {WARM_UP} calls, "
        f"{f['end_rss_mib']:.1f} MiB after {f['calls']:,.0f} "
        f"(+{f['growth_mib']:.1f} MiB, {f['growth_per_1000_mib']:.2f} MiB per 1,000 calls, "
        f"{f['second_half_per_1000_mib']:.2f} in the second half; "
        f"request log {f['log_entries']:,.0f} entries)"
    )


def bench_emulator_memory(quick: bool) -> list[tuple[str, float, str, bool, str]]:
    """``run.py``'s rows: RSS growth from call 200 to the last, against 25 MiB (the request
    log's 10,000 entries and the ledger; main grew 56 MiB)."""
    figures = measure(500 if quick else 10_000)
    show(figures)
    growth = figures["growth_mib"]
    what = f"emulator RSS growth over {figures['calls']:,} calls (default retention)"
    return [(what, growth, "<= 25 MiB", growth <= 25, " MiB")]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="500 calls instead of 10,000")
    parser.add_argument("--calls", type=int, help="number of calls (overrides --quick)")
    parser.add_argument("--source", type=Path, help="import phota_async from this checkout")
    args = parser.parse_args()
    calls = args.calls or (500 if args.quick else 10_000)
    show(measure(calls, args.source))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
