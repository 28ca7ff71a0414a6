"""Webhook endpoints: the same receiver core under aiohttp.web, Starlette and FastAPI.

    python benchmarks/run.py --only webhooks           # 3,000 deliveries per framework
    python benchmarks/run.py --only webhooks --quick   # 300

Each framework serves ``webhook_endpoint``/``webhook_handler`` (secret known, no client) on
loopback, in a process of its own (uvicorn for the ASGI two); an aiohttp client in this process
sends signed, distinct job deliveries at concurrency 16. Figures:

- deliveries per second, as a ratio of the aiohttp handler's (the receiver is shared, so the
  ratio is the framework's own cost);
- the server's RSS growth while 64 deliveries of 8 MiB each (chunked, no ``Content-Length``) are
  refused with 413: the cap bounds what is read, so memory must not grow by the bodies' size.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

Row = tuple[str, float, str, bool, str]
SECRET = "whsec_bench"
FRAMEWORKS = ("aiohttp", "starlette", "fastapi")

SERVE = """
import sys
from phota_async.webhooks import webhook_handler
from phota_async.starlette import webhook_endpoint

framework, port = sys.argv[1], int(sys.argv[2])
async def on_job(job):
    pass
if framework == "aiohttp":
    from aiohttp import web
    app = web.Application()
    app.router.add_post("/hook", webhook_handler("whsec_bench", on_job, remember=100_000))
    web.run_app(app, host="127.0.0.1", port=port, print=None)
else:
    import uvicorn
    endpoint = webhook_endpoint("whsec_bench", on_job, remember=100_000)
    if framework == "starlette":
        from starlette.applications import Starlette
        from starlette.routing import Route
        app = Starlette(routes=[Route("/hook", endpoint, methods=["POST"])])
    else:
        from fastapi import FastAPI
        app = FastAPI()
        app.add_api_route("/hook", endpoint, methods=["POST"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(500):
            try:
                async with session.post(url, data=b"{}") as resp:
                    if resp.status == 401:
                        return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        raise RuntimeError("the webhook server did not start")


async def _deliveries(url: str, count: int) -> float:
    from phota_async.webhooks import sign

    bodies = [
        json.dumps({"job_id": f"job_{i}", "status": "SUCCEEDED", "error": None}).encode()
        for i in range(count)
    ]
    queue = iter(bodies)
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            for body in queue:
                headers = {"X-Phota-Signature": sign(body, SECRET)}
                async with session.post(url, data=body, headers=headers) as resp:
                    assert resp.status == 204, resp.status

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(16)))
        return count / (time.perf_counter() - started)


async def _oversized(url: str, count: int) -> None:
    async def body() -> AsyncIterator[bytes]:
        chunk = b"x" * (1 << 20)
        for _ in range(8):
            yield chunk

    async with aiohttp.ClientSession() as session:
        for _ in range(count):
            try:
                async with session.post(url, data=body()) as resp:
                    assert resp.status == 413, resp.status
            except aiohttp.ClientConnectionError:
                pass  # a server may close the connection after refusing: refused all the same


def figures(quick: bool) -> dict[str, dict[str, float]]:
    count = 300 if quick else 3000
    found: dict[str, dict[str, float]] = {}
    for framework in FRAMEWORKS:
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-c", SERVE, framework, str(port)])
        try:
            url = f"http://127.0.0.1:{port}/hook"
            asyncio.run(_wait_up(url))
            rate = asyncio.run(_deliveries(url, count))
            before = _rss_mib(proc.pid)
            asyncio.run(_oversized(url, 64))
            found[framework] = {"rate": rate, "rss_mib": _rss_mib(proc.pid) - before}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return found


def bench_webhooks(quick: bool) -> list[Row]:
    """The webhook figures: throughput ratios and RSS growth while refusing big bodies."""
    found = figures(quick)
    base = found["aiohttp"]["rate"]
    rows: list[Row] = []
    for framework, f in found.items():
        print(
            f"  {framework}: {f['rate']:.0f} deliveries/s, "
            f"RSS +{f['rss_mib']:.1f} MiB refusing 64 x 8 MiB"
        )
        if framework != "aiohttp":
            ratio = f["rate"] / base
            rows.append(
                (f"webhook deliveries/s, {framework} vs aiohttp", ratio, ">= 0.5", ratio >= 0.5, "")
            )
        limit = 16.0
        rows.append(
            (
                f"RSS growth refusing 64 x 8 MiB deliveries: {framework}",
                f["rss_mib"],
                f"<= {limit:.0f} MiB",
                f["rss_mib"] <= limit,
                " MiB",
            )
        )
    return rows
