"""Run one documentation page's code blocks, in order, in the current folder (the reader's
folder): ``python run_page.py BLOCKS.json``. Started by ``test_code_blocks.py`` in a fresh
process whose environment points the SDK at an emulator; see ``blocks.py`` for the rules.

Exit status 0 when every block ran; otherwise the failing block's traceback, whose frames name
the Markdown page and line, and status 1.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import importlib
import inspect
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import tomllib
import traceback
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

COMMAND_TIMEOUT = 180.0
_EXTRAS_FILE = Path(__file__).resolve().parents[2] / "pyproject.toml"


class BlockFailed(Exception):
    """A block did not run; the message names its page and line."""


def main(blocks_file: str) -> int:
    blocks: list[dict[str, Any]] = json.loads(Path(blocks_file).read_text())
    sys.path.insert(0, str(Path.cwd()))
    # Warnings are errors (-W error), except Ray's deprecations of its own internals, which the
    # Ray tests ignore too.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
    namespace: dict[str, Any] = {"__name__": "__docs__", "__builtins__": __builtins__}
    ran = 0
    # An exception nobody sees (a background task that failed, a coroutine never awaited, an
    # error in a __del__) fails the page too: the reader's copy would fail the same way.
    swallowed: list[str] = []
    sys.unraisablehook = lambda u: swallowed.append(f"{u.exc_type.__name__}: {u.exc_value}")
    with asyncio.Runner() as runner:
        runner.get_loop().set_exception_handler(lambda _, ctx: swallowed.append(ctx["message"]))
        for block in blocks:
            print(f"== {block['where']} ({block['lang'] or 'no language'})", flush=True)
            try:
                ran += _run(block, namespace, runner)
                gc.collect()
                if swallowed:
                    raise BlockFailed(f"{block['where']}: an exception was swallowed: {swallowed}")
            except BlockFailed as failure:
                print(f"FAILED {failure}", file=sys.stderr)
                return 1
            except BaseException:
                print(f"FAILED {block['where']}: the block raised", file=sys.stderr)
                traceback.print_exc()
                return 1
    gc.collect()
    if swallowed:
        print(f"FAILED at the page's end, an exception was swallowed: {swallowed}", file=sys.stderr)
        return 1
    print(f"ran {ran} blocks")
    return 0


def _run(block: dict[str, Any], namespace: dict[str, Any], runner: asyncio.Runner) -> int:
    """Run one block; return 1 if it was run or checked, 0 if it is shown only."""
    lang, code, where = block["lang"], block["code"], block["where"]
    if block["hidden"]:
        raise BlockFailed(f"{where}: a block inside an HTML comment runs but is not shown")
    if lang in {"python", "py"}:
        if block["title"]:
            _write_module(block)
        else:
            _exec(code, block["page"], block["line"], namespace, runner)
        return 1
    if lang in {"bash", "console", "shell", "sh"}:
        if any(d.startswith("shown") for d in block["directives"]):
            return 0
        return 1 if _shell(code, where) else 0
    if lang in {"toml", "ini"} and block["title"]:
        Path(block["title"]).write_text(code)  # pyproject.toml, pytest.ini: read by later tests
    if lang == "toml":
        tomllib.loads(code)
        return 1
    if lang == "ini":
        return int(bool(block["title"]))
    if lang == "json":
        json.loads(code)
        return 1
    if lang in {"text"}:  # blocks.SHOWN_LANGS
        return 0
    raise BlockFailed(
        f"{where}: a ```{lang} block is neither run nor listed as shown-only; tag it "
        "python, bash, toml, json or text"
    )


def _exec(
    code: str, page: str, line: int, namespace: dict[str, Any], runner: asyncio.Runner
) -> None:
    """Execute Python in the page's namespace; top-level awaits run on the page's loop."""
    source = "\n" * (line - 1) + code  # so tracebacks name the Markdown line
    compiled = compile(source, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if any(_is_main_guard(node) for node in ast.parse(code).body):
        print(f"note: {page}:{line}: the body under `if __name__ == '__main__':` is not run")
    result = eval(compiled, namespace)  # the documentation's own code
    if inspect.iscoroutine(result):
        runner.run(result)


def _is_main_guard(node: ast.stmt) -> bool:
    """Whether a statement is ``if __name__ == "__main__":``."""
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def _write_module(block: dict[str, Any]) -> None:
    """Write a titled block to its file; run it with pytest if it is a test module, else
    import it."""
    path = Path(block["title"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(block["code"])
    if path.suffix == ".py":
        compile(block["code"], block["title"], "exec")  # a module in a sub-folder is checked too
    if path.name.startswith("test_"):
        _pytest(["-q", str(path)], block["where"])
    elif path.suffix == ".py" and path.parent == Path("."):
        importlib.import_module(path.stem)


def _shell(code: str, where: str) -> bool:
    """Run a shell block's phota, pytest and python commands; check its pip installs. Return
    whether any line was run or checked."""
    acted = False
    for raw in code.replace("\\\n", " ").splitlines():  # a `\` continues a command
        line = raw.strip().removeprefix("$ ").strip()
        if not line or line.startswith("#"):
            continue
        for command in (part.strip() for part in line.split("&&")):
            argv = shlex.split(command, comments=True)
            if not argv:
                continue
            if argv[0] in {"python", "python3"} and argv[1:3] in (
                ["-m", "phota_async"],
                ["-m", "pytest"],
            ):
                argv = ["phota" if argv[2] == "phota_async" else "pytest", *argv[3:]]
            program = Path(argv[0]).name
            ran = program in {"phota", "pytest", "python", "python3"}
            shell_syntax = _SHELL_SYNTAX.intersection(argv) if ran else set()
            if shell_syntax or _NESTED.search(command):
                raise BlockFailed(
                    f"{where}: `{command}` needs a shell ({shell_syntax}), which the docs "
                    "test does not run: write the command alone, or mark the block shown"
                )
            if program == "pip" and argv[1:2] == ["install"]:
                _check_extras(argv[2:], where)
                acted = True
            elif program == "phota":
                _command([str(Path(sys.executable).with_name("phota")), *argv[1:]], where)
                acted = True
            elif program == "pytest":
                _pytest(argv[1:], where)
                acted = True
            elif program in {"python", "python3"} and argv[1:2] != ["-m"]:
                _command([sys.executable, *argv[1:]], where)
                acted = True
    return acted


_SHELL_SYNTAX = {"|", "||", ";", ">", ">>", "<", "&", "2>&1"}
# A command the harness would run, inside a substitution, a pipe or after a `;`.
_NESTED = re.compile(r"(\$\(|`|\||;)\s*(\S*/)?(phota|pytest|python3?)\b")


def _pytest(args: list[str], where: str) -> None:
    """Run pytest in the reader's folder; it must run at least one test and skip none (a
    strict-mode ``async def`` test without its mark is skipped, not failed)."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.xml"
        _command(
            [
                sys.executable,
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",
                f"--junitxml={report}",
                *args,
            ],
            where,
        )
        suites = ET.parse(report).getroot().iter("testsuite")
        counts = [(int(s.get("tests", 0)), int(s.get("skipped", 0))) for s in suites]
    tests, skipped = sum(t for t, _ in counts), sum(s for _, s in counts)
    if tests == 0 or skipped:
        raise BlockFailed(f"{where}: pytest ran {tests} tests and skipped {skipped}")


def _check_extras(args: list[str], where: str) -> None:
    """Every ``[extra]`` a pip install line names is an extra of the project."""
    known = set(tomllib.loads(_EXTRAS_FILE.read_text())["project"]["optional-dependencies"])
    for arg in args:
        if "[" in arg and arg.endswith("]"):
            wanted = set(arg[arg.index("[") + 1 : -1].split(","))
            if unknown := wanted - known:
                raise BlockFailed(f"{where}: pip install names unknown extras {sorted(unknown)}")


def _command(argv: list[str], where: str) -> None:
    """Run a command to completion; its output is shown, and a failure names the block."""
    shown = shlex.join([Path(argv[0]).name, *argv[1:]])
    print(f"$ {shown}", flush=True)
    # Its own process group, so that a timeout also ends what it started (servers, workers).
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            out, err = process.communicate(timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            raise BlockFailed(
                f"{where}: `{shown}` ran over {COMMAND_TIMEOUT:.0f} s\n{out}{err}"
            ) from exc
    done = subprocess.CompletedProcess(argv, process.returncode, out, err)
    print(done.stdout + done.stderr, flush=True)
    if done.returncode != 0:
        raise BlockFailed(
            f"{where}: `{shown}` exited {done.returncode}\n{done.stdout}{done.stderr}"
        )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
