"""An emulator in a process of its own, for the Ray pipelines (and benchmarks/ray_pipeline.py).

``python -m tests.ray.emulator_process OPTIONS_JSON`` prints ``{"base_url", "api_key"}`` as one
JSON line, then answers one JSON line per command read on standard input, and stops when its
standard input closes (so it never outlives its parent):

- ``ledger``: ``{"charges": n, "spent": dollars, "keys": {client_request_id: charges}}``.
- ``refused PATH``: ``{"requests": n, "refused": n}`` of the requests to PATH (``/enhance``).
- ``limit JSON``: set the rate limit (``RateLimit`` fields, or ``null``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from phota_async.testing import PhotaEmulator

ROOT = Path(__file__).resolve().parents[2]


def _ledger(emulator: PhotaEmulator) -> dict[str, Any]:
    charges = emulator.charges()
    keys = Counter(str(c.get("client_request_id")) for c in charges)
    return {"charges": len(charges), "spent": emulator.net_spent(), "keys": dict(keys)}


async def main() -> None:
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    async with PhotaEmulator(**options) as emulator:
        print(json.dumps({"base_url": emulator.base_url, "api_key": emulator.api_key}), flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command, _, rest = line.strip().partition(" ")
            answer: Any
            if command == "ledger":
                answer = _ledger(emulator)
            elif command == "refused":
                seen = [r for r in emulator.requests if r["path"].endswith(rest)]
                answer = {"requests": len(seen), "refused": sum(r["status"] == 429 for r in seen)}
            elif command == "log":
                answer = [
                    [r["time"], r["status"]] for r in emulator.requests if r["path"].endswith(rest)
                ]
            elif command == "limit":
                emulator.rate_limit = json.loads(rest)
                answer = {"rate_limit": str(emulator.rate_limit)}
            else:
                answer = {"error": f"unknown command {command!r}"}
            print(json.dumps(answer), flush=True)


class EmulatorProcess:
    """The emulator process from a test: start, ask, stop."""

    def __init__(self, **options: Any) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.ray.emulator_process", json.dumps(options)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        hello = json.loads(self._proc.stdout.readline())
        self.base_url: str = hello["base_url"]
        self.api_key: str = hello["api_key"]

    def ask(self, command: str) -> Any:
        assert self._proc.stdin is not None
        assert self._proc.stdout is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return json.loads(self._proc.stdout.readline())

    def ledger(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.ask("ledger")
        return answer

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()


if __name__ == "__main__":
    asyncio.run(main())
