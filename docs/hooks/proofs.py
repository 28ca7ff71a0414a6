"""MkDocs hook: every test a page names is a link to a generated page that shows that test.

A reference is inline code naming a test of this repository, ``tests/<path>.py::test_name``
(``tests/<path>.py::TestClass::test_name`` for a method), written outside fenced code blocks.
For each test module named anywhere on the site, the hook adds a page
``proofs/tests/<path>.md`` (not in the navigation): one section per test, anchored by the
test's name, with its docstring, its markers and its source. On every page, each reference
becomes a link to its section.

A reference to a module or test that does not exist fails the build with ``PluginError``
naming the page and the reference, so no page can cite a test that was renamed or removed.
"""

from __future__ import annotations

import ast
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files, InclusionLevel
from mkdocs.structure.pages import Page

REFERENCE = re.compile(r"`(?P<module>tests/[\w/]+\.py)::(?P<test>\w+(?:::\w+)?)`")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
PROOFS = "proofs"  # the folder of the generated pages, under the site's root
# Markers that decide how a test is run: shown with the command that selects them.
_RUN_WITH = {"slow": "-m slow", "ray": "-m ray -n 0"}


@dataclass(frozen=True)
class Proof:
    """One test function of a module: its name (``Class::name`` for a method), docstring,
    marker names (its own, its class's and the module's ``pytestmark``), source (from its
    first decorator) and the line where that source starts."""

    name: str
    docstring: str
    markers: tuple[str, ...]
    source: str
    line: int


@dataclass(frozen=True)
class Module:
    """A test module: its path from the repository's root, docstring and tests in order."""

    path: str
    docstring: str
    tests: tuple[Proof, ...]

    def get(self, name: str) -> Proof | None:
        """The test called ``name``, or None."""
        return next((test for test in self.tests if test.name == name), None)


def _marker_names(node: ast.expr) -> list[str]:
    """The marker names in a decorator or a ``pytestmark`` value (one mark or a list)."""
    if isinstance(node, ast.List | ast.Tuple):
        return [name for element in node.elts for name in _marker_names(element)]
    if isinstance(node, ast.Call):
        node = node.func
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "mark"
    ):
        return [node.attr]
    return []


def _module_markers(tree: ast.Module) -> list[str]:
    """The markers a module's ``pytestmark`` puts on all its tests."""
    return [
        name
        for statement in tree.body
        if isinstance(statement, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in statement.targets)
        for name in _marker_names(statement.value)
    ]


def _source(text: str, node: ast.FunctionDef | ast.AsyncFunctionDef, indent: int) -> str:
    """A function's source with its decorators, dedented."""
    lines = text.splitlines()
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    assert node.end_lineno is not None
    return "\n".join(line[indent:] for line in lines[first - 1 : node.end_lineno])


def _tests_of(
    text: str, body: list[ast.stmt], inherited: list[str], prefix: str, indent: int
) -> list[Proof]:
    """The test functions among ``body`` (and the methods of its ``Test*`` classes)."""
    found: list[Proof] = []
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            markers = inherited + [n for d in node.decorator_list for n in _marker_names(d)]
            found.append(
                Proof(
                    name=prefix + node.name,
                    docstring=ast.get_docstring(node) or "",
                    markers=tuple(dict.fromkeys(markers)),
                    source=_source(text, node, indent),
                    line=min([node.lineno, *(d.lineno for d in node.decorator_list)]),
                )
            )
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            markers = inherited + [n for d in node.decorator_list for n in _marker_names(d)]
            found += _tests_of(text, node.body, markers, f"{node.name}::", indent + 4)
    return found


def read_module(root: Path, path: str) -> Module:
    """Parse the test module at ``path`` (relative to ``root``) without importing it."""
    text = (root / path).read_text(encoding="utf-8")
    tree = ast.parse(text, filename=path)
    tests = _tests_of(text, tree.body, _module_markers(tree), "", 0)
    return Module(path=path, docstring=ast.get_docstring(tree) or "", tests=tuple(tests))


def _lines(markdown: str) -> list[tuple[str, bool]]:
    """Each line of a page (with its end) and whether it is prose, outside a fenced block."""
    out: list[tuple[str, bool]] = []
    fence: str | None = None
    for line in markdown.splitlines(keepends=True):
        opened = _FENCE.match(line)
        if opened and fence is None:
            fence = opened.group(1)
            out.append((line, False))
            continue
        if (
            opened
            and fence is not None
            and opened.group(1)[0] == fence[0]
            and len(opened.group(1)) >= len(fence)
            and not line.strip().strip(fence[0])
        ):
            fence = None
            out.append((line, False))
            continue
        out.append((line, fence is None))
    return out


def references(markdown: str) -> list[tuple[str, str]]:
    """Every ``(module, test)`` reference of a page, in order, outside fenced code blocks."""
    return [
        (found["module"], found["test"])
        for line, prose in _lines(markdown)
        if prose
        for found in REFERENCE.finditer(line)
    ]


def proof_page(module: str) -> str:
    """The generated page of a test module: ``tests/a/test_b.py`` -> ``proofs/tests/a/test_b.md``."""
    return f"{PROOFS}/{module.removesuffix('.py')}.md"


def anchor(test: str) -> str:
    """The anchor of a test's section: its name (``Class-name`` for a method)."""
    return test.replace("::", "-")


class Proofs:
    """The test modules that the site's pages name, read once per build."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: dict[str, Module] = {}
        self.cited_by: dict[str, list[str]] = {}  # module -> the pages that name its tests

    def check(self, page: str, markdown: str) -> list[tuple[str, str]]:
        """The page's references, each checked to name an existing test (else PluginError)."""
        found = references(markdown)
        for module, test in found:
            if module not in self.modules:
                if not (self.root / module).is_file():
                    raise PluginError(f"{page} names `{module}::{test}`: {module} does not exist")
                self.modules[module] = read_module(self.root, module)
            if page not in self.cited_by.setdefault(module, []):
                self.cited_by[module].append(page)
            if self.modules[module].get(test) is None:
                raise PluginError(
                    f"{page} names `{module}::{test}`: {module} has no test called {test}"
                )
        return found

    def link(self, page: str, markdown: str) -> str:
        """The page with each reference (outside fenced blocks) made a link to its section."""
        self.check(page, markdown)
        here = posixpath.dirname(page) or "."

        def to_link(found: re.Match[str]) -> str:
            module, test = found["module"], found["test"]
            target = posixpath.relpath(proof_page(module), here)
            shown = self.modules[module].get(test)
            marks = [m for m in shown.markers if m in _RUN_WITH] if shown else []
            note = "".join(f" *({m})*" for m in marks)
            return f'[`{test}`]({target}#{anchor(test)} "{module}"){note}'

        return "".join(
            REFERENCE.sub(to_link, line) if prose else line for line, prose in _lines(markdown)
        )


def _fenced(code: str, lang: str) -> str:
    """A fenced block that holds ``code`` whatever fences the code itself contains."""
    longest = max((len(run) for run in re.findall(r"`{3,}", code)), default=2)
    fence = "`" * (longest + 1)
    return f"{fence}{lang}\n{code}\n{fence}"


def render(module: Module, cited_by: list[str]) -> str:
    """The Markdown page of a test module: where it is cited, its docstring, then one section
    per test."""
    here = posixpath.dirname(proof_page(module.path))
    pages = ", ".join(
        f"[{posixpath.splitext(posixpath.basename(page))[0].replace('-', ' ')}]"
        f"({posixpath.relpath(page, here)})"
        for page in cited_by
    )
    parts = [
        f"# {posixpath.basename(module.path)}\n",
        f"`{module.path}`: its tests prove what {pages} promise.\n",
    ]
    if module.docstring:
        parts.append(module.docstring + "\n")
    for test in module.tests:
        options = "".join(f" {_RUN_WITH[m]}" for m in test.markers if m in _RUN_WITH)
        parts.append(f"## {test.name} {{#{anchor(test.name)}}}\n")
        if test.docstring:
            parts.append(test.docstring + "\n")
        if test.markers:
            parts.append("Markers: " + ", ".join(f"`{m}`" for m in test.markers) + ".\n")
        parts.append(_fenced(f"python -m pytest{options} '{module.path}::{test.name}'", "bash"))
        parts.append(_fenced(test.source, f'python linenums="{test.line}"') + "\n")
    return "\n".join(parts)


_proofs: Proofs | None = None


def on_files(files: Files, config: MkDocsConfig, **kwargs: Any) -> Files:
    """Check every reference of every page, and add one page per test module named."""
    global _proofs
    _proofs = Proofs(Path(config.config_file_path).resolve().parent)
    for file in list(files.documentation_pages()):
        _proofs.check(file.src_uri, file.content_string)
    for path, module in sorted(_proofs.modules.items()):
        files.append(
            File.generated(
                config,
                proof_page(path),
                content=render(module, _proofs.cited_by[path]),
                inclusion=InclusionLevel.NOT_IN_NAV,
            )
        )
    return files


def on_page_markdown(markdown: str, page: Page, **kwargs: Any) -> str:
    """Make each test reference of the page a link to the test's section."""
    if _proofs is None or page.file.src_uri.startswith(f"{PROOFS}/"):
        return markdown
    return _proofs.link(page.file.src_uri, markdown)
