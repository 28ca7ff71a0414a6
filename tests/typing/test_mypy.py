"""What a user's type checker catches: ``mypy --strict`` on a file of wrong calls reports each
mistake where it is written, and a file of right calls type-checks clean."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mypy import api

HERE = Path(__file__).parent
WRONG = HERE / "wrong_calls.py"
RIGHT = HERE / "right_calls.py"
MARK = re.compile(r"#\s*E:\s*([a-z-]+)\s*$")
ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[tuple[int, str]]]:
    """mypy --strict over both files at once (its cache in a temporary folder): the errors of
    each file, as (line, code)."""
    cache = tmp_path_factory.mktemp("mypy-cache")
    out, err, _ = api.run(
        ["--strict", "--cache-dir", str(cache), "--no-error-summary", str(WRONG), str(RIGHT)]
    )
    assert not err, err
    found: dict[str, set[tuple[int, str]]] = {WRONG.name: set(), RIGHT.name: set()}
    for line in out.splitlines():
        match = ERROR.match(line)
        if match:
            found[Path(match["file"]).name].add((int(match["line"]), match["code"]))
    return found


def _expected() -> set[tuple[int, str]]:
    lines = WRONG.read_text().splitlines()
    return {(n, m[1]) for n, text in enumerate(lines, 1) if (m := MARK.search(text))}


@pytest.mark.slow
def test_each_wrong_call_is_a_type_error_where_it_is_written(
    mypy_errors: dict[str, set[tuple[int, str]]],
) -> None:
    """Wrong enums, counts, input types, option typos and profile_ids types are mypy errors,
    each on its own line, and nothing else in the file is."""
    assert len(_expected()) >= 20
    assert mypy_errors[WRONG.name] == _expected()


@pytest.mark.slow
def test_right_calls_type_check_clean(mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    """Every accepted input form and option passes mypy --strict."""
    assert mypy_errors[RIGHT.name] == set()
