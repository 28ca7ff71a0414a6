"""Benchmark helper: run an emulator in this process and print its address as one JSON line.

It serves until its standard input closes, so the parent controls its lifetime.
"""

from __future__ import annotations

import asyncio
import json
import sys

from phota_async.testing import PhotaEmulator


async def main() -> None:
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    async with PhotaEmulator(**options) as emulator:
        print(json.dumps({"base_url": emulator.base_url, "api_key": emulator.api_key}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
