"""Benchmark helper: run an emulator in this process and print its address as one JSON line.

It serves until its standard input closes, so the parent controls its lifetime. Commands on
standard input, each answered with one JSON line:

- ``train COUNT SECONDS SPREAD``: add COUNT validated profiles, created evenly over SPREAD
  seconds, each READY after SECONDS of training; answers their ids.
- ``stats``: the number of profile-status polls received and each profile's ``ready_at``
  (``time.monotonic()``, which every process on the machine shares).
- ``limit JSON``: set the emulator's rate limit (``RateLimit`` fields, or ``null``), live.
- ``log PATH``: ``[unix time, status]`` of every request to PATH (``/enhance``) so far.
"""

from __future__ import annotations

import asyncio
import json
import sys

from phota_async.testing import PhotaEmulator


def stats(emulator: PhotaEmulator) -> dict[str, object]:
    polls = sum(1 for r in emulator.requests if r["path"].endswith("/status"))
    ready_at = {p["profile_id"]: p["ready_at"] for p in emulator.profiles()}
    return {"status_polls": polls, "ready_at": ready_at}


async def main() -> None:
    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    # The figures count requests in the log: keep all of them (10,000 by default).
    options.setdefault("max_log", 1_000_000)
    async with PhotaEmulator(**options) as emulator:
        print(json.dumps({"base_url": emulator.base_url, "api_key": emulator.api_key}), flush=True)
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command, *args = line.split()
            if command == "stats":
                print(json.dumps(stats(emulator)), flush=True)
            elif command == "limit":
                emulator.rate_limit = json.loads(line.split(None, 1)[1])
                print(json.dumps({"rate_limit": str(emulator.rate_limit)}), flush=True)
            elif command == "log":
                log = [[r["time"], r["status"]] for r in emulator.requests if r["path"] == args[0]]
                print(json.dumps(log), flush=True)
            elif command == "train":
                count, seconds, spread = int(args[0]), float(args[1]), float(args[2])
                ids = []
                for i in range(count):
                    ids.append(emulator.add_profile(training_seconds=seconds))
                    if (i + 1) % 10 == 0:  # creations spread evenly over ``spread`` seconds
                        await asyncio.sleep(spread * 10 / count)
                print(json.dumps(ids), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
