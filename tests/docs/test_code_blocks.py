"""Every code block of the documentation runs: each page's blocks, in order, in a fresh process
whose folder holds the photos the pages name and whose environment points the SDK at a running
emulator (and S3 at a local moto server), so the docs cannot drift from the code.

How each kind of block is run is in ``tests/docs/blocks.py``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from phota_async.testing import PhotaEmulator
from tests.docs.blocks import Block, parse
from tests.helpers import jpeg_bytes

ROOT = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("run_page.py")
PAGE_TIMEOUT = 600.0

# The pages whose blocks run: every hand-written page (the API reference is generated from
# docstrings, the changelog is prose) and the README.
PAGES = sorted(
    p
    for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    if "reference" not in p.relative_to(ROOT).parts
    and parse(p, ROOT)  # any fenced block: an unknown language fails the page, not skips it
)

# The reader's folder: the files the pages' examples open, by name.
READER_FILES: dict[str, tuple[int, tuple[int, int]]] = {
    # name: (seed of the synthetic portrait, size)
    "dark.jpg": (1, (160, 200)),
    "photo.jpg": (2, (160, 200)),
    "portrait.jpg": (3, (160, 200)),
    "group.jpg": (4, (240, 160)),
    "me.jpg": (5, (160, 200)),
    "style.jpg": (6, (160, 200)),
    **{f"photos/{i:02d}.jpg": (10 + i, (160, 200)) for i in range(1, 7)},
}
BUCKET = "my-bucket"  # the S3 bucket the pages use, made on the local S3 server
_PROFILE_ID = re.compile(r"\bprof_[A-Za-z0-9]{4,}\b")


def _marks(page: Path) -> list[pytest.MarkDecorator]:
    """A page with a ``docs-test: ray`` block runs in the Ray step."""
    blocks = parse(page, ROOT)
    return [pytest.mark.ray] if any("ray" in b.directives for b in blocks) else []


@pytest.fixture
def reader_folder(tmp_path: Path) -> Path:
    """A folder with the photos the pages open."""
    for name, (seed, size) in READER_FILES.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(seed, size))
    return tmp_path


@pytest.fixture
def docs_emulator() -> Iterator[PhotaEmulator]:
    """An emulator on its own thread with quick trainings, as a reader's test account."""
    with PhotaEmulator(training_seconds=0.5, validation_seconds=0.05, max_output_side=256) as emu:
        yield emu


def _run_blocks(
    blocks: list[Block], folder: Path, env: dict[str, str], timeout: float = PAGE_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run blocks with ``run_page.py`` in a fresh process, in the folder, with warnings as
    errors."""
    spec = folder.parent / f"{folder.name}-blocks.json"
    spec.write_text(json.dumps([{**vars(b), "where": b.where} for b in blocks]))
    argv = [sys.executable, "-W", "error", str(RUNNER), str(spec)]
    # Its own process group: a page that hangs is ended with everything it started, and the
    # failure shows its output so far (``== page:line`` names the block that hung).
    with subprocess.Popen(
        argv,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            pytest.fail(f"the page ran over {timeout:.0f} s; its output so far:\n{out}{err}")
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, id=p.relative_to(ROOT).as_posix(), marks=_marks(p)) for p in PAGES],
)
def test_every_code_block_of_the_page_runs(
    page: Path,
    reader_folder: Path,
    docs_emulator: PhotaEmulator,
    s3_env: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The page's Python blocks run in order against the emulator, its commands exit 0, its
    TOML and JSON parse."""
    for profile_id in sorted(set(_PROFILE_ID.findall(page.read_text()))):
        docs_emulator.add_profile(profile_id=profile_id)
    _make_bucket(s3_env)
    env = {
        **_without_phota(os.environ),
        "PHOTA_API_KEY": docs_emulator.api_key,
        "PHOTA_BASE_URL": docs_emulator.base_url,
        "AWS_ENDPOINT_URL": s3_env,
    }
    done = _run_blocks(parse(page, ROOT), reader_folder, env)
    assert done.returncode == 0, done.stdout + done.stderr


def _without_phota(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without the developer's own ``PHOTA_*`` settings (a real key among
    them): a page sees only the emulator's."""
    return {name: value for name, value in environ.items() if not name.startswith("PHOTA_")}


def _make_bucket(endpoint: str) -> None:
    """The pages' bucket on the local S3 server (moto takes unsigned requests)."""
    request = urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 409:  # made for an earlier page
            raise


def test_a_failing_block_fails_the_page_naming_its_line(tmp_path: Path) -> None:
    """A block that raises stops the page, and the report names the page and line."""
    done = _run_page(
        tmp_path, "# Page\n\n```python\nx = 1\n```\n\nText.\n\n```python\nassert x == 2\n```\n"
    )
    assert done.returncode == 1
    assert 'File "page.md", line 10' in done.stderr
    assert "FAILED page.md:10" in done.stderr


def test_blocks_of_a_page_share_names_and_one_event_loop(tmp_path: Path) -> None:
    """A later block sees an earlier block's names and awaits on the same loop."""
    done = _run_page(
        tmp_path,
        "```python\nimport asyncio\n\nawait asyncio.sleep(0)\nloop = asyncio.get_running_loop()\n```\n"
        "```python\nawait asyncio.sleep(0)\nassert asyncio.get_running_loop() is loop\n```\n",
    )
    assert done.returncode == 0, done.stderr
    assert "ran 2 blocks" in done.stdout


def test_a_pip_line_naming_an_unknown_extra_fails(tmp_path: Path) -> None:
    """An install command must name extras the project has."""
    done = _run_page(tmp_path, "```bash\npip install 'phota-async[s3,nonesuch]'\n```\n")
    assert done.returncode == 1
    assert "unknown extras ['nonesuch']" in done.stderr


def test_a_titled_config_block_is_written_for_the_later_tests(tmp_path: Path) -> None:
    """A ``title="pyproject.toml"`` block lands in the reader's folder before later blocks run."""
    done = _run_page(
        tmp_path,
        '```toml title="pyproject.toml"\n[tool.pytest.ini_options]\nasyncio_mode = "auto"\n```\n'
        "```python\nfrom pathlib import Path\n\n"
        "assert 'auto' in Path('pyproject.toml').read_text()\n```\n",
    )
    assert done.returncode == 0, done.stderr
    assert "ran 2 blocks" in done.stdout


def _run_page(
    tmp_path: Path, markdown: str, timeout: float = PAGE_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a page's blocks in a fresh reader's folder, outside any emulator."""
    page = tmp_path / "page.md"
    page.write_text(markdown)
    folder = tmp_path / "reader"
    folder.mkdir()
    return _run_blocks(parse(page, tmp_path), folder, _without_phota(os.environ), timeout)


@pytest.mark.parametrize("lang", ["py3", "pycon", "python3", "yaml", ""])
def test_a_block_in_a_language_neither_run_nor_shown_fails_the_page(
    tmp_path: Path, lang: str
) -> None:
    """A tag the harness does not know (or none) fails, instead of silently skipping a block."""
    done = _run_page(tmp_path, f"```{lang}\nassert False\n```\n")
    assert done.returncode == 1
    assert "neither run nor listed as shown-only" in done.stderr


def test_blocks_in_an_admonition_and_a_tilde_fence_run(tmp_path: Path) -> None:
    """An indented fence inside an admonition, a ``~~~`` fence and a ``Python`` tag all run."""
    done = _run_page(
        tmp_path,
        "!!! note\n\n    ```python\n    x = 1\n    ```\n\n~~~python\nassert x == 1\n~~~\n\n"
        "```Python\nassert x == 2\n```\n",
    )
    assert done.returncode == 1
    assert "FAILED page.md:12" in done.stderr


def test_a_block_inside_an_html_comment_fails_the_page(tmp_path: Path) -> None:
    """Hidden setup code would let a page pass that a reader's copy of it fails."""
    done = _run_page(tmp_path, "<!--\n```python\nx = 1\n```\n-->\n")
    assert done.returncode == 1
    assert "inside an HTML comment" in done.stderr


def test_a_background_task_that_fails_fails_the_page(tmp_path: Path) -> None:
    """An exception in a task nobody awaits is not swallowed."""
    done = _run_page(
        tmp_path,
        "```python\nimport asyncio\n\n\nasync def boom() -> None:\n    raise OSError('lost')\n\n\n"
        "task = asyncio.create_task(boom())\nawait asyncio.sleep(0.01)\ndel task\n```\n",
    )
    assert done.returncode == 1
    assert "an exception was swallowed" in done.stderr


def test_a_coroutine_never_awaited_fails_the_page(tmp_path: Path) -> None:
    """Calling an async function without ``await`` runs nothing, so the page fails."""
    done = _run_page(
        tmp_path,
        "```python\nimport asyncio\n\nasyncio.sleep(0)\n```\n",
    )
    assert done.returncode == 1
    assert "never awaited" in done.stderr


def test_a_block_guarded_by_main_is_noted(tmp_path: Path) -> None:
    """Code under ``if __name__ == "__main__":`` is not run, and the output says so."""
    done = _run_page(
        tmp_path, '```python\nif __name__ == "__main__":\n    raise SystemExit(1)\n```\n'
    )
    assert done.returncode == 0, done.stderr
    assert "note: page.md:2: the body under" in done.stdout


def test_a_test_file_whose_tests_are_skipped_fails_the_page(tmp_path: Path) -> None:
    """A test module whose tests are all skipped proves nothing, so the page fails."""
    done = _run_page(
        tmp_path,
        '```python title="test_app.py"\nimport pytest\n\n\n@pytest.mark.skip(reason="later")\n'
        "def test_app() -> None:\n    assert False\n```\n",
    )
    assert done.returncode == 1
    assert "pytest ran 1 tests and skipped 1" in done.stderr


def test_a_pytest_command_that_collects_no_test_fails_the_page(tmp_path: Path) -> None:
    """``pytest`` in a folder without tests runs nothing, which is a failure."""
    done = _run_page(tmp_path, "```bash\npytest -q\n```\n")
    assert done.returncode == 1
    assert "exited 5" in done.stderr


@pytest.mark.parametrize(
    "line", ["python -m phota_async nonesuch", ".venv/bin/phota nonesuch", "phota \\\n  nonesuch"]
)
def test_every_spelling_of_the_cli_runs(tmp_path: Path, line: str) -> None:
    """``python -m phota_async``, a venv's ``phota`` and a continued line run the command."""
    done = _run_page(tmp_path, f"```bash\n{line}\n```\n")
    assert done.returncode == 1
    assert "nonesuch" in done.stderr
    assert "exited 2" in done.stderr


@pytest.mark.parametrize(
    "line", ["JOB=$(phota jobs list)", "phota jobs list | head", "cd x; pytest"]
)
def test_a_command_inside_shell_syntax_fails_the_page(tmp_path: Path, line: str) -> None:
    """A command the harness cannot run as written fails, instead of being shown untested."""
    done = _run_page(tmp_path, f"```bash\n{line}\n```\n")
    assert done.returncode == 1
    assert "needs a shell" in done.stderr


def test_a_page_that_hangs_fails_naming_its_block(tmp_path: Path) -> None:
    """A hung page is ended in bounded time, and the failure names the block it was in."""
    with pytest.raises(pytest.fail.Exception, match=r"ran over 3 s(.|\n)*== page.md:6"):
        _run_page(
            tmp_path,
            "```python\nimport asyncio\n```\n\n```python\nawait asyncio.Event().wait()\n```\n",
            timeout=3,
        )


def test_the_developers_own_key_never_reaches_a_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real ``PHOTA_API_KEY`` in the environment is not passed on, so no page prints it."""
    monkeypatch.setenv("PHOTA_API_KEY", "real-key")
    monkeypatch.setenv("PHOTA_KEY", "real-key")
    done = _run_page(
        tmp_path, "```python\nimport os\n\nassert 'real-key' not in str(os.environ)\n```\n"
    )
    assert done.returncode == 0, done.stderr
