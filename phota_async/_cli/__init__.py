"""The ``phota`` command line (also ``python -m phota_async``).

Exit codes: 0 when everything was done, 1 when some items (or the call) failed or are pending,
2 for a usage error, 130 when interrupted (Ctrl-C). Errors are one readable line that names
the flag at fault; ``--debug`` shows the traceback and debug logging.

Layout: ``_parser`` (flags, one parent parser per concern, and the table from SDK parameter to
flag), ``_commands`` (what each command does), ``demo`` (``phota demo``), ``progress`` (bars).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from .._redact import MIN_KEY, Secret
from ..errors import InvalidRequestError, PhotaError
from ._commands import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    RUNNERS,
    UsageError,
)
from ._parser import build_parser, cli_message

__all__ = ["build_parser", "cli_message", "main"]


def _scrubbed(line: str, args: argparse.Namespace) -> str:
    """``line`` with the key masked (the client that registered it may be gone)."""
    keys = [getattr(args, "api_key", None), getattr(args, "key", None)]
    keys += [os.environ.get("PHOTA_API_KEY"), os.environ.get("PHOTA_KEY")]
    for key in keys:
        if key and len(key) >= MIN_KEY:
            line = Secret(key).scrub(line)
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``phota`` command.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit code: 0 done, 1 failed or pending, 2 usage, 130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and EXIT_USAGE
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(RUNNERS[args.command](args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED if args.command != "emulator" else EXIT_OK
    except (UsageError, InvalidRequestError) as exc:
        if args.debug:
            raise
        line = _scrubbed(cli_message(exc, args.command), args)
        print(f"phota: error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except PhotaError as exc:
        if args.debug:
            raise
        print(f"phota: {type(exc).__name__}: {_scrubbed(str(exc), args)}", file=sys.stderr)
        return EXIT_FAILED
