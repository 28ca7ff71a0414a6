"""The ``phota`` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="phota", description="Command line for the Phota API.")
    commands = parser.add_subparsers(dest="command", required=True)
    emulator = commands.add_parser("emulator", help="run the local Phota API emulator")
    emulator.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    emulator.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    emulator.add_argument("--api-key", default=None, help="key to accept (random by default)")
    emulator.add_argument(
        "--training-seconds", type=float, default=20.0, help="training time after validation"
    )
    return parser


async def _serve_emulator(args: argparse.Namespace) -> None:
    from .testing import PhotaEmulator

    emulator = PhotaEmulator(
        host=args.host, port=args.port, api_key=args.api_key, training_seconds=args.training_seconds
    )
    async with emulator:
        print(f"Phota emulator listening on {emulator.base_url}", flush=True)
        print(f"export PHOTA_BASE_URL={emulator.base_url}", flush=True)
        print(f"export PHOTA_API_KEY={emulator.api_key}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``phota`` command; return its exit code."""
    args = _build_parser().parse_args(argv)
    if args.command == "emulator":
        try:
            asyncio.run(_serve_emulator(args))
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands
