"""The documentation site: it builds under `mkdocs build --strict`, its API reference shows
every public name of every public module with its signature and no leftover reST markup, and
it loads nothing from the network."""

from __future__ import annotations

import argparse
import enum
import fcntl
import html
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import is_typeddict

import pytest

import phota_async

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"


def _public_modules() -> list[str]:
    """Every module of the package whose dotted name has no private part."""
    names = ["phota_async"] + [
        info.name
        for info in pkgutil.walk_packages(phota_async.__path__, prefix="phota_async.")
        if not any(part.startswith("_") for part in info.name.split("."))
    ]
    return sorted(names)


def _public_names(module: str) -> list[str]:
    """A module's public names: its ``__all__``, else the classes and functions it defines."""
    mod = importlib.import_module(module)
    if hasattr(mod, "__all__"):
        names = list(mod.__all__)
    else:
        names = [
            name
            for name, value in vars(mod).items()
            if (inspect.isclass(value) or inspect.isfunction(value))
            and getattr(value, "__module__", None) == module
        ]
    return [name for name in names if not name.startswith("_")]


def _page_of(module: str) -> Path:
    """The reference page whose `:::` directive renders the module."""
    for page in sorted(REFERENCE.glob("*.md")):
        if re.search(rf"^::: {re.escape(module)}$", page.read_text(), re.MULTILINE):
            return page
    raise AssertionError(f"no page under docs/reference renders {module}")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The site built once with strict checks, shared by the xdist workers of one run (a build
    takes a minute of CPU); the build's output is shown if it fails."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the run's folder, above each worker's own
    out = shared / "docs-site"
    with (shared / "docs-site.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker builds, the others wait and reuse
        if not (out / "index.html").exists():
            done = subprocess.run(
                [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
                cwd=ROOT,  # the changelog snippet is found relative to the repository root
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stdout + done.stderr
    return out


@pytest.mark.parametrize("module", _public_modules())
def test_every_public_module_has_a_reference_page(module: str) -> None:
    """Each public module is rendered by a `::: module` directive on a reference page."""
    assert _page_of(module).exists()


def test_every_public_name_is_rendered_in_the_reference(site: Path) -> None:
    """Every public name has an anchor in its module's built page (a name without a docstring
    is left out by the renderer, so an undocumented public name fails here)."""
    missing = []
    for module in _public_modules():
        page = site / "reference" / _page_of(module).stem / "index.html"
        anchors = set(re.findall(r'id="([^"]+)"', page.read_text()))
        missing += [
            f"{module}.{n}" for n in _public_names(module) if f"{module}.{n}" not in anchors
        ]
    assert missing == []


def test_the_changelog_page_includes_changelog_md(site: Path) -> None:
    """The Changelog page shows CHANGELOG.md itself, not a copy that could drift."""
    first_entry = next(
        line[3:].strip()
        for line in (ROOT / "CHANGELOG.md").read_text().splitlines()
        if line.startswith("## ")
    )
    page = (site / "changelog" / "index.html").read_text()
    assert first_entry.split("]")[0].lstrip("[") in page


def test_the_cli_reference_shows_every_commands_help(site: Path) -> None:
    """The CLI page carries the help of every command and sub-command of the `phota` parser."""
    from phota_async._cli._parser import build_parser

    page = (site / "cli" / "index.html").read_text()
    commands = [build_parser()]
    progs = []
    while commands:
        command = commands.pop()
        progs.append(command.prog)
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands += action.choices.values()
    missing = [prog for prog in progs if f'<code>{prog}</code><a class="headerlink"' not in page]
    assert len(progs) > 10
    assert missing == []


def _text(page: Path) -> str:
    """The text a reader sees on a built page: its HTML without scripts and tags, unescaped."""
    body = re.sub(r"<script\b.*?</script>", "", page.read_text(), flags=re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", "", body))


def _reference_pages(site: Path) -> list[Path]:
    """The built pages of the API reference."""
    pages = sorted((site / "reference").glob("*/index.html"))
    assert len(pages) == len(list(REFERENCE.glob("*.md")))
    return pages


def _takes_arguments(dotted: str) -> bool:
    """Whether a documented class is built by calling it with arguments (not an enum, a
    protocol, a TypedDict, nor a class whose constructor takes nothing of its own)."""
    module, _, name = dotted.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    if issubclass(cls, enum.Enum) or getattr(cls, "_is_protocol", False) or is_typeddict(cls):
        return False
    return any("__init__" in vars(c) and c.__module__ != "builtins" for c in cls.__mro__)


def test_every_function_and_class_in_the_reference_shows_its_signature(site: Path) -> None:
    """Each function and method, and each class built with arguments (attrs classes included),
    is rendered with its signature under its heading."""
    unsigned = []
    for page in _reference_pages(site):
        for kind in ("function", "class"):
            for block in page.read_text().split(f'<div class="doc doc-object doc-{kind}">')[1:]:
                heading = block.split('<div class="doc doc-contents')[0]
                ident = re.search(r'id="([^"]+)"', heading)
                assert ident is not None
                if 'class="doc-signature' not in heading and (
                    kind == "function" or _takes_arguments(ident.group(1))
                ):
                    unsigned.append(ident.group(1))
    assert unsigned == []


def test_no_rest_markup_leaks_into_the_rendered_reference(site: Path) -> None:
    """Docstrings are Markdown: no ``double backtick`` literal and no `::` literal-block marker
    reaches the text of a reference page."""
    leaks = [
        f"{page.parent.name}: {m.group(0).strip()}"
        for page in _reference_pages(site)
        for m in re.finditer(r".{0,40}(``|\w::\s|^\s*::\s*$).{0,40}", _text(page), re.MULTILINE)
    ]
    assert leaks == []


def test_the_site_loads_nothing_from_the_network(site: Path) -> None:
    """No page pulls a font, stylesheet, script or image from another host (Google Fonts, a
    CDN): the site works offline and from a file:// folder."""
    remote = re.compile(
        r"""<(?:script|img|iframe|source)\b[^>]*\bsrc=["']?(?:https?:)?//"""
        r"""|<link\b[^>]*\bhref=["']?(?:https?:)?//"""
        r"""|@import\s+(?:url\()?["']?(?:https?:)?//"""
        r"""|fonts\.googleapis\.com|fonts\.gstatic\.com"""
    )
    loads = [
        f"{page.relative_to(site)}: {m.group(0)}"
        for page in sorted(site.rglob("*"))
        if page.suffix in {".html", ".css", ".js"}
        for m in remote.finditer(page.read_text(errors="replace"))
    ]
    assert loads == []


def test_code_examples_in_the_reference_fit_the_page_width(site: Path) -> None:
    """The code blocks of docstrings (not the signatures, which are formatted) fit in 80
    columns, the width a reference page's code block shows without scrolling."""
    wide, examples = [], 0
    for page in _reference_pages(site):
        blocks = re.findall(r'<div class="([^"]*)"><pre\b(.*?)</pre>', page.read_text(), re.DOTALL)
        for attrs, pre in blocks:
            if "doc-signature" in attrs:
                continue
            examples += 1
            text = html.unescape(re.sub(r"<[^>]+>", "", pre.split(">", 1)[1]))
            wide += [f"{page.parent.name}: {line}" for line in text.splitlines() if len(line) > 80]
    assert examples > 10
    assert wide == []


# Public methods and properties that have no docstring, so the reference leaves them out:
# none. The set stays for an exception that must be argued for; a new one fails the test.
UNDOCUMENTED_MEMBERS: set[str] = set()


def _undocumented_members() -> set[str]:
    """The public methods and properties of public classes that have no docstring of their
    own (the renderer drops them: it does not inherit a protocol's docstring)."""
    found = set()
    for module in _public_modules():
        mod = importlib.import_module(module)
        for name in _public_names(module):
            cls = getattr(mod, name)
            if not inspect.isclass(cls):
                continue
            for member, value in vars(cls).items():
                function = value.fget if isinstance(value, property) else value
                function = getattr(function, "__func__", function)
                if (
                    not member.startswith("_")
                    and inspect.isfunction(function)
                    and not (function.__doc__ or "").strip()
                ):
                    found.add(f"{module}.{name}.{member}")
    return found


def test_every_new_public_method_has_a_docstring() -> None:
    """A public method or property without a docstring is missing from the reference; none is
    added to the known list, and the list names none that has one now."""
    found = _undocumented_members()
    assert sorted(found - UNDOCUMENTED_MEMBERS) == []
    assert sorted(UNDOCUMENTED_MEMBERS - found) == []


def test_the_build_downloads_nothing() -> None:
    """The site builds offline: no mkdocstrings inventory ``import:`` and no plugin that fetches
    assets (material's privacy plugin, a remote ``objects.inv``)."""
    config = (ROOT / "mkdocs.yml").read_text()
    remote = re.findall(r"^\s*(?:-\s*)?(?:import:|inventories:|- privacy\b).*$", config, re.M)
    assert remote == []
    assert re.findall(r"https?://\S+", config) == []
