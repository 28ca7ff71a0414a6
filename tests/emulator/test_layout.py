"""The emulator's seams: it imports nothing of the SDK, and only one module sends HTTP."""

from __future__ import annotations

import ast
from pathlib import Path

import phota_async.testing

PACKAGE = Path(phota_async.testing.__file__).parent


def imports_of(path: Path) -> set[str]:
    """Every name a file imports, dotted in full: ``from aiohttp import web`` is
    ``aiohttp.web``, ``import aiohttp`` is ``aiohttp``; relative ones keep their dots."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            separator = "" if module.endswith(".") else "."
            names.update(f"{module}{separator}{alias.name}" for alias in node.names)
    return names


def test_emulator_imports_nothing_of_the_sdk() -> None:
    """No emulator module imports the SDK, so a serialisation bug cannot hide on both sides."""
    for path in PACKAGE.glob("*.py"):
        for name in imports_of(path):
            assert not name.startswith(("phota_async", "..")), f"{path.name} imports {name}"


def test_only_the_outbound_module_uses_the_http_client() -> None:
    """Downloads and callbacks go through _outbound.py; the rest uses aiohttp's server only."""
    users = {
        path.name
        for path in PACKAGE.glob("*.py")
        if any(n.split(".")[0] == "aiohttp" and n != "aiohttp.web" for n in imports_of(path))
    }
    assert users == {"_outbound.py"}
