"""MkDocs hook: the CLI reference is generated from the ``phota`` parser itself.

The marker ``<!-- phota-cli-reference -->``, on a line of its own, is replaced by every
command's ``--help`` text, walked from ``build_parser()``, so the page cannot drift from the
flags the CLI reads.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from phota_async._cli._parser import build_parser

MARKER = "<!-- phota-cli-reference -->"
# Only a line that is the marker alone: a page may name the marker in prose or code.
_MARKER_LINE = re.compile(rf"^{re.escape(MARKER)}[ \t]*$", re.MULTILINE)
WIDTH = "80"  # argparse wraps to $COLUMNS: fixed, so the page is the same on every machine


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and every sub-command parser under it, depth first, in declaration order."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _commands(sub)
    return found


def reference() -> str:
    """Markdown: one section per command, its help text in a code block."""
    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parts = []
        for command in _commands(build_parser()):
            parts.append(
                f"### `{command.prog}`\n\n```text\n{command.format_help().rstrip()}\n```\n"
            )
        return "\n".join(parts)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    """Replace the marker line with the generated reference on the page that has it."""
    return _MARKER_LINE.sub(lambda _: reference(), markdown)
