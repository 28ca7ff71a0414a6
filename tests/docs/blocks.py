"""The fenced code blocks of a Markdown page, as the documentation tests run them.

A block is run according to its language and an optional directive on the nearest non-blank
line above its fence:

- ``python``: executed in page order in one namespace and on one event loop per page, so a
  later block may use a name an earlier one defined; top-level ``await`` and ``async with``
  are allowed. ``__name__`` is not ``"__main__"``, so a server started under
  ``if __name__ == "__main__":`` is defined but not served.
- ``python`` with ``title="name.py"`` (shown as the block's file name): written to that file in
  the reader's folder instead; a ``test_*.py`` file is then run by pytest, any other module is
  imported (later blocks and commands may use it).
- ``bash``/``console``/``shell``: each command line runs if it is a ``phota``, ``pytest`` or
  ``python`` command; ``pip install`` lines are checked to name extras that exist; other lines
  (``python3 -m venv``, ``cd``) are shown only.
- ``toml``/``json``: parsed. A ``toml`` or ``ini`` block with ``title="pyproject.toml"`` (or
  ``pytest.ini``...) is also written to that file, so the page's later tests run under it.
- ``<!-- docs-test: ray -->`` above a block: the page's test is marked ``ray`` (it needs a local
  Ray instance, and runs in that CI step).
- ``<!-- docs-test: shown: <reason> -->`` above a shell block: its commands are shown only (a
  server that runs until Ctrl-C). Python blocks always run.
- ``text``: shown only. Any other language (``py3``, ``pycon``, ``yaml``, none at all) fails the
  page, so a block cannot be skipped by its tag; add a language to ``SHOWN_LANGS`` to show it.
- A block inside an HTML comment fails the page: the reader cannot see the code it runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

RUN_LANGS = {"python", "py"}
SHELL_LANGS = {"bash", "console", "shell", "sh"}
PARSED_LANGS = {"toml", "json"}
SHOWN_LANGS = {"text"}

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)\s*(?P<info>.*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
_TITLE = re.compile(r"""title\s*=\s*["'](?P<title>[^"']+)["']""")


@dataclass(frozen=True)
class Block:
    """One fenced block: its page, the 1-based line of its first code line, its language, its
    ``title=`` (if any), its directives and its code (dedented to the fence's indent)."""

    page: str
    line: int
    lang: str
    code: str
    title: str | None = None
    directives: tuple[str, ...] = field(default=())
    hidden: bool = False  # inside an HTML comment: not shown on the site

    @property
    def where(self) -> str:
        """``page:line`` of the block's first code line, for messages."""
        return f"{self.page}:{self.line}"


def parse(page: Path, root: Path) -> list[Block]:
    """Every fenced block of a page, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    name = page.relative_to(root).as_posix()
    blocks: list[Block] = []
    i = 0
    in_comment = False
    while i < len(lines):
        opened = _FENCE.match(lines[i])
        if opened is None:
            in_comment = _in_comment(lines[i], in_comment)
            i += 1
            continue
        indent, fence = opened["indent"], opened["fence"]
        directives = _directives_above(lines, i)
        title = _TITLE.search(opened["info"])
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            stripped = lines[j].strip()
            if stripped.startswith(fence[0] * len(fence)) and set(stripped) == {fence[0]}:
                break
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        blocks.append(
            Block(
                page=name,
                line=i + 2,
                lang=opened["lang"].lower(),
                code="\n".join(body) + "\n",
                title=title["title"] if title else None,
                directives=directives,
                hidden=in_comment,
            )
        )
        i = j + 1
    return blocks


def _in_comment(line: str, inside: bool) -> bool:
    """Whether an HTML comment is still open after this line of prose."""
    for token in re.findall(r"<!--|-->", line):
        inside = token == "<!--"
    return inside


def _directives_above(lines: list[str], fence_index: int) -> tuple[str, ...]:
    """The ``docs-test`` directives on the non-blank lines right above a fence."""
    found: list[str] = []
    k = fence_index - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    while k >= 0 and (match := _DIRECTIVE.match(lines[k])):
        found.append(match["body"])
        k -= 1
    return tuple(reversed(found))
