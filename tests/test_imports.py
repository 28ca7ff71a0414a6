"""The import graph of phota_async: every module imports alone, and no two modules need each
other, at run time or for type checking."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import phota_async

PACKAGE = Path(phota_async.__file__).parent


def _modules() -> list[str]:
    """Every module of the package, leaves of the dotted tree first (reverse sorted: a module
    imported before what it depends on is where a cycle shows)."""
    names = ["phota_async"] + [
        info.name for info in pkgutil.walk_packages([str(PACKAGE)], prefix="phota_async.")
    ]
    return sorted(names, reverse=True)


def _source(module: str) -> Path:
    relative = Path(*module.split(".")[1:])
    package = PACKAGE / relative / "__init__.py"
    return package if package.exists() else (PACKAGE / relative).with_suffix(".py")


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The package modules an ``from ... import ...`` statement in ``module`` loads."""
    if node.level:
        is_package = _source(module).name == "__init__.py"
        parts = module.split(".")[: len(module.split(".")) - node.level + is_package]
        base = ".".join(parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
    return [name for name in candidates if name in _MODULES]


def _imports(module: str) -> set[str]:
    """The package modules ``module`` imports at module level, ``if TYPE_CHECKING:`` included
    (imports inside functions run late, on purpose, and are left out)."""
    tree = ast.parse(_source(module).read_text(encoding="utf-8"))
    found: set[str] = set()
    statements = list(tree.body)
    while statements:
        node = statements.pop()
        if isinstance(node, (ast.If, ast.Try)):
            statements += node.body + node.orelse
            statements += [s for h in getattr(node, "handlers", []) for s in h.body]
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in _MODULES}
        elif isinstance(node, ast.ImportFrom):
            found |= set(_resolve(module, node))
    # A module's own package is imported first by Python; that edge is not a choice.
    return {name for name in found if name != module and not module.startswith(name + ".")}


_MODULES = set(_modules())


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle in ``graph`` as a path that ends where it starts, or ``None`` (depth-first)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_module_level_imports_form_no_cycle() -> None:
    """No chain of module-level imports among phota_async modules, TYPE_CHECKING ones included,
    leads back to where it started."""
    graph = {module: _imports(module) for module in _MODULES}
    assert _find_cycle(graph) is None, " -> ".join(_find_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The depth-first search reports a cycle in a graph that has one."""
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_imports_alone_in_a_fresh_interpreter() -> None:
    """Each module imports on its own, with nothing of the package loaded before it, not even
    the package's ``__init__`` (whose import order could hide a cycle); ``__main__`` is left
    out, since importing it runs the command line."""
    script = (
        "import importlib, sys, types\n"
        "root = sys.argv[1]\n"
        "for name in sorted(sys.argv[2:], reverse=True):\n"
        "    for loaded in [m for m in sys.modules if m.split('.')[0] == 'phota_async']:\n"
        "        del sys.modules[loaded]\n"
        "    if name != 'phota_async':\n"
        "        stub = sys.modules['phota_async'] = types.ModuleType('phota_async')\n"
        "        stub.__path__ = [root]\n"
        "    importlib.import_module(name)\n"
    )
    names = sorted(_MODULES - {"phota_async.__main__"})
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", script, str(PACKAGE), *names],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


# Modules that read files, spool to disk, stream bodies or hold connections.
_DOES_IO = {
    "phota_async._decode",
    "phota_async._files",
    "phota_async._inputs",
    "phota_async._manifest",
    "phota_async._session",
    "phota_async._transport",
    "phota_async._uploads",
}


def _reachable(start: str) -> set[str]:
    """Every package module ``start`` imports at module level, directly or not."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in _imports(todo.pop()) - seen:
            seen.add(target)
            todo.append(target)
    return seen


def test_the_protocol_module_imports_nothing_that_does_io() -> None:
    """``_protocol`` (the wire code, tested without sockets) reaches none of the modules that
    read files, spool, stream or hold connections, through any chain of imports."""
    assert _reachable("phota_async._protocol") & _DOES_IO == set()


def test_the_models_import_nothing_that_does_io() -> None:
    """The public models reach none of the I/O modules either."""
    assert _reachable("phota_async.models") & _DOES_IO == set()
