"""The Guarantees page: every promise names the tests that prove it, every named test exists
and is collected, and the site's hook links each one to a page showing it (or fails the build)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from mkdocs.exceptions import PluginError

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guarantees.md"
# Everything a reader may follow to a test: the site's pages and the READMEs.
CITING = [
    ROOT / "README.md",
    ROOT / "tests" / "reliability" / "README.md",
    *sorted((ROOT / "docs").rglob("*.md")),
]
_PROMISE = re.compile(r"^### (?P<title>.+?)(?: \{#(?P<id>[\w-]+)\})?$")


def _hook() -> ModuleType:
    """docs/hooks/proofs.py, loaded as MkDocs loads it: from its file."""
    spec = importlib.util.spec_from_file_location("proofs_hook", ROOT / "docs/hooks/proofs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


proofs = _hook()


def _promises() -> list[tuple[str, str | None, str]]:
    """Each promise of the page: its heading, its anchor (None if it has none) and its text
    up to the next heading."""
    found: list[tuple[str, str | None, list[str]]] = []
    for line in PAGE.read_text().splitlines():
        heading = _PROMISE.match(line)
        if heading:
            found.append((heading["title"], heading["id"], []))
        elif line.startswith("#"):
            found.append(("", None, []))  # a theme heading ends the promise above it
        elif found:
            found[-1][2].append(line)
    return [(title, id_, "\n".join(body)) for title, id_, body in found if title]


def _write_site(tmp_path: Path, page: str) -> Path:
    """A tiny site in tmp_path with one page, the proofs hook and one test module."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(page)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_money.py").write_text(
        textwrap.dedent('''
            """Money tests."""
            import pytest

            pytestmark = pytest.mark.slow


            @pytest.mark.parametrize("n", [1, 2])
            def test_pays_once(n):
                """Each photo is paid once."""
                assert n
        ''')
    )
    (tmp_path / "mkdocs.yml").write_text(
        textwrap.dedent(f"""
            site_name: tiny
            strict: true
            hooks: [{ROOT / "docs" / "hooks" / "proofs.py"}]
            markdown_extensions: [attr_list, toc]
            validation: {{anchors: warn}}
        """)
    )
    return tmp_path


def _build(site: Path) -> subprocess.CompletedProcess[str]:
    """``mkdocs build --strict`` of a tiny site."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site / "out")],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_promise_has_its_own_anchor() -> None:
    """Each promise heading carries an explicit `{#anchor}`, and no two share one."""
    anchors = [id_ for _, id_, _ in _promises()]
    assert len(anchors) > 50
    assert None not in anchors
    assert len(set(anchors)) == len(anchors)


def test_every_promise_names_at_least_one_test() -> None:
    """No promise is left without a `tests/...py::test_name` proof."""
    unproved = [title for title, _, body in _promises() if not proofs.references(body)]
    assert unproved == []


def test_every_named_test_is_collected_by_pytest() -> None:
    """Every test that a page or README names is collected by pytest, whatever its markers."""
    named = {ref for page in CITING for ref in proofs.references(page.read_text())}
    assert len(named) > 150
    done = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "", "-n", "0"),
            *sorted({module for module, _ in named}),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    collected = {line.split("[")[0] for line in done.stdout.splitlines()}
    assert sorted(f"{m}::{t}" for m, t in named if f"{m}::{t}" not in collected) == []


def test_a_reference_to_a_missing_test_names_it_in_the_error() -> None:
    """A test name that its module does not define is a PluginError naming the reference."""
    checker = proofs.Proofs(ROOT)
    with pytest.raises(PluginError, match=r"tests/sdk/test_batch\.py::test_renamed_away"):
        checker.check("guides/x.md", "Proved by `tests/sdk/test_batch.py::test_renamed_away`.")


def test_a_reference_to_a_missing_module_names_it_in_the_error() -> None:
    """A test module that does not exist is a PluginError naming the reference and the page."""
    checker = proofs.Proofs(ROOT)
    with pytest.raises(PluginError, match=r"guides/x\.md names `tests/gone\.py::test_a`"):
        checker.check("guides/x.md", "See `tests/gone.py::test_a`.")


def test_references_inside_fenced_blocks_are_left_alone() -> None:
    """A reference inside a fenced code block is neither checked nor linked."""
    page = "```text\n`tests/gone.py::test_a`\n```\n"
    assert proofs.references(page) == []
    assert proofs.Proofs(ROOT).link("x.md", page) == page


def test_a_build_with_a_missing_test_fails_naming_it(tmp_path: Path) -> None:
    """`mkdocs build --strict` of a site naming a test that does not exist fails, naming it."""
    site = _write_site(tmp_path, "# Promises\n\nPaid once: `tests/test_money.py::test_renamed`.\n")
    done = _build(site)
    assert done.returncode != 0
    assert "tests/test_money.py::test_renamed" in done.stderr


def test_a_build_links_each_reference_to_a_page_showing_the_test(tmp_path: Path) -> None:
    """A named test becomes a link to its section on a generated page that shows its docstring,
    its markers and its source."""
    site = _write_site(
        tmp_path, "# Promises\n\nPaid once: `tests/test_money.py::test_pays_once`.\n"
    )
    done = _build(site)
    assert done.returncode == 0, done.stderr
    page = (site / "out" / "index.html").read_text()
    assert 'href="proofs/tests/test_money/#test_pays_once"' in page
    proof = (site / "out" / "proofs" / "tests" / "test_money" / "index.html").read_text()
    assert 'id="test_pays_once"' in proof
    assert "Each photo is paid once." in proof
    assert "<code>slow</code>, <code>parametrize</code>" in proof
    assert "assert n" in proof
