"""The command line's spend guard: ``--budget USD``, ``--estimate`` and the ledger in the output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phota_async._cli import main
from phota_async.testing import PhotaEmulator
from tests.cli.conftest import FAST_POLLS, run_json

PAID = {"/enhance", "/edit", "/remix", "/generate", "/profiles/add"}


def paid_requests(emu: PhotaEmulator) -> list[dict]:
    return [r for r in emu.requests if r["method"] == "POST" and r["path"] in PAID]


def batch(photos: Path, tmp_path: Path, *more: str) -> list[str]:
    return ["enhance", str(photos), "--out", str(tmp_path / "out"),
            "--manifest", str(tmp_path / "run.db"), *FAST_POLLS, *more]  # fmt: skip


def test_estimate_pays_nothing(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--estimate prints the cost of five enhances and sends no paid request."""
    code, data = run_json(batch(photos, tmp_path, "--estimate"), capsys)
    assert code == 0
    assert data == {
        "estimate": {"items": 5, "done": 0, "to_run": 5, "per_item": 0.12, "total": 0.6},
        "budget": None,
    }
    assert paid_requests(env) == []
    assert env.ledger == []


def test_estimate_counts_what_the_manifest_finished(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After a budget-stopped run, --estimate prices only the photos still to do."""
    assert run_json(batch(photos, tmp_path, "--budget", "0.30", "--concurrency", "1"), capsys)[0]
    paid = len(paid_requests(env))
    main(batch(photos, tmp_path, "--estimate"))
    out = capsys.readouterr().out
    assert "5 items, 2 already done; 3 to run at $0.12 each, estimated $0.36" in out
    assert "nothing was sent" in out
    assert len(paid_requests(env)) == paid


def test_estimate_says_when_the_run_would_pass_the_budget(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--estimate with a --budget too small for the run says how far it would get."""
    assert main(batch(photos, tmp_path, "--estimate", "--budget", "0.30")) == 0
    out = capsys.readouterr().out
    assert (
        "over the --budget of $0.30 (each item reserves $0.15 until its charge is known): "
        "the run would stop after about 2 items"
    ) in out
    assert paid_requests(env) == []


def test_budget_stops_cleanly_and_a_larger_one_resumes(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--budget 0.30 does two photos (each reserved at $0.15, settled at $0.12) and reports
    three not started (exit 1, no traceback);
    the rerun with --budget 5 does the three, each photo paid once."""
    code = main([*batch(photos, tmp_path, "--budget", "0.30", "--concurrency", "1"), "--json"])
    captured = capsys.readouterr()
    data, err = json.loads(captured.out), captured.err
    assert code == 1
    assert (data["done"], data["failed"], data["not_started"]) == (2, 0, 3)
    assert data["spend"]["spent"] == 0.24
    assert data["spend"]["limit"] == 0.30
    assert data["spend"]["endpoints"]["enhance"]["calls"] == 2
    assert "--budget" in err
    assert "Traceback" not in err
    code, data = run_json(batch(photos, tmp_path, "--budget", "5"), capsys)
    assert code == 0
    assert isinstance(data, dict)
    assert (data["done"], data["skipped"], data["not_started"]) == (3, 2, 0)
    assert len(env.charges()) == 5


def test_the_summary_line_shows_the_ledger(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --json the summary line names what was spent of the budget."""
    assert main(batch(photos, tmp_path, "--budget", "1")) == 0
    out = capsys.readouterr().out
    assert "spent $0.60, pending $0.00, refunded $0.00 of a $1.00 budget" in out


def test_an_edit_without_a_price_is_a_usage_message(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """edit --budget without --price names the flag to add; with it, the run is capped."""
    argv = ["edit", "brighter", str(photos), "--out", str(tmp_path / "out"), "--budget", "0.2"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--price" in err
    assert paid_requests(env) == []
    code, data = run_json([*argv, "--price", "edit/nb2=0.08", "--concurrency", "1"], capsys)
    assert isinstance(data, dict)
    assert (code, data["done"], data["not_started"]) == (1, 2, 3)


@pytest.mark.parametrize("text", ["nan", "-1", "inf", "1e400", "five", "$", "-0.01"])
def test_a_budget_that_is_not_dollars_is_a_usage_error(
    env: PhotaEmulator,
    photos: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
) -> None:
    """--budget nan, -1, inf or a word exits 2 with a message naming --budget; nothing is sent."""
    assert main(batch(photos, tmp_path, f"--budget={text}")) == 2
    assert "--budget" in capsys.readouterr().err
    assert env.requests == []


def test_a_dollar_sign_is_accepted(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--budget '$0.30' caps the run like --budget 0.30."""
    code, data = run_json(
        batch(photos, tmp_path, "--budget", "$0.30", "--concurrency", "1"), capsys
    )
    assert isinstance(data, dict)
    assert (code, data["done"], data["not_started"], data["spend"]["limit"]) == (1, 2, 3, 0.30)


def test_a_zero_budget_sends_nothing(
    env: PhotaEmulator, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--budget 0 reports every photo not started, exits 1 and sends no paid request."""
    code, data = run_json(batch(photos, tmp_path, "--budget", "0"), capsys)
    assert isinstance(data, dict)
    assert (code, data["done"], data["not_started"]) == (1, 0, 5)
    assert paid_requests(env) == []
    assert env.ledger == []
