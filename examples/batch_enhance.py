"""Enhance a folder of photos, resumably: rerun it after a crash and it picks up where it was,
paying for each photo once.

    python examples/batch_enhance.py photos/ enhanced/ --concurrency 16

Needs PHOTA_API_KEY (and PHOTA_BASE_URL for the emulator).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from pathlib import Path

from phota_async import PhotaClient

SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic"}


async def enhance_all(photos: list[Path], target: Path, concurrency: int) -> tuple[int, int]:
    """Enhance ``photos`` into ``target``; return (done, not done)."""
    async with PhotaClient() as phota:
        # The manifest is a write-ahead log: each photo's idempotency key is on disk before it
        # is paid for, so a rerun after a crash resumes instead of paying again.
        run = phota.enhance_many(
            photos, concurrency=concurrency, out_dir=target, manifest=target / "run.manifest"
        )
        async for item in run:  # breaking out of the loop cancels the rest
            if item.pending is not None:
                print(f"pending ({item.pending}): {item.input.name}: rerun to resume")
            elif item.error is not None:
                print(f"failed: {item.input.name}: {item.error}")
            else:
                print(f"{run.summary.finished}/{run.summary.total} {item.input.name}")
        print(run.summary.line())
        return run.summary.done + run.summary.skipped, run.summary.failed + run.summary.pending


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    photos = sorted(p for p in args.source.rglob("*") if p.suffix.lower() in SUFFIXES)
    _done, not_done = asyncio.run(enhance_all(photos, args.target, args.concurrency))
    return 1 if not_done else 0


if __name__ == "__main__":
    raise SystemExit(main())
