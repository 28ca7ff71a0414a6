"""Ray Data pipelines against the emulator: every photo paid exactly once across the cluster."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
import ray
from PIL import Image

from phota_async import Cadence, PollPolicy
from phota_async.ray import PhotaEnhance, close_governor, governor_stats, secret
from tests.ray.conftest import write_photos
from tests.ray.emulator_process import EmulatorProcess

pytestmark = [
    pytest.mark.ray,
    pytest.mark.usefixtures("ray_session"),
    # Ray warns about its own deprecated settings when its data context is first read.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
]

# Polls at the emulator's pace (its jobs finish in about 0.1 s).
FAST_POLLS = PollPolicy(job=Cadence(first=0.1, cap=0.5), max_polls_per_second=200.0)


def constructor(emulator: EmulatorProcess, run_id: str, **kwargs: Any) -> dict[str, Any]:
    """A UDF's constructor arguments for the emulator: the key as a secret, fast polls."""
    return {
        "run_id": run_id,
        "api_key": secret(emulator.api_key),
        "base_url": emulator.base_url,
        "client_options": {"poll": FAST_POLLS},
        **kwargs,
    }


ACTORS = 2


def pipeline(
    emulator: EmulatorProcess,
    folder: Path,
    run_id: str,
    udf: type[PhotaEnhance] = PhotaEnhance,
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """Enhance every photo of ``folder`` on ``ACTORS`` actors; the rows, sorted by path."""
    ds = ray.data.read_binary_files(str(folder), include_paths=True)
    out = ds.map_batches(
        udf,
        fn_constructor_kwargs=constructor(emulator, run_id, **kwargs),
        concurrency=ACTORS,
        batch_size=10,
        num_cpus=0.25,
    )
    return sorted(out.take_all(), key=lambda row: row["path"])


def assert_whole_jpeg(data: bytes, side: int = 256) -> None:
    """``data`` decodes in full as a JPEG of ``side`` px."""
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        image.load()
        assert max(image.size) == side


@pytest.fixture
def run_id() -> Any:
    """A fresh run id; its governor is ended after the test."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    close_governor(name)


def test_200_photos_are_each_charged_once(
    emulator: EmulatorProcess, tmp_path: Path, run_id: str
) -> None:
    """200 photos through two actors: 200 rows with whole outputs, 200 charges, one per key."""
    write_photos(tmp_path / "in", 200)
    rows = pipeline(emulator, tmp_path / "in", run_id)
    assert len(rows) == 200
    assert [r["error"] for r in rows if r["error"]] == []
    ledger = emulator.ledger()
    assert ledger["charges"] == 200
    assert set(ledger["keys"]) == {r["client_request_id"] for r in rows}
    assert set(ledger["keys"].values()) == {1}
    for row in rows:
        assert len(row["output"]) == 1
        assert_whole_jpeg(row["output"][0])
        assert row["cost"] == pytest.approx(0.12)
        assert row["job_id"]


class DyingEnhance(PhotaEnhance):
    """Kills its own actor process once per run, with jobs paid and not yet returned."""

    async def _outputs(self, result: Any, stem: str | None, out: Any) -> None:
        marker = Path(self._client_options_marker)
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        await super()._outputs(result, stem, out)

    def __init__(self, *, marker: str, **kwargs: Any) -> None:
        self._client_options_marker = marker
        super().__init__(**kwargs)


def test_an_actor_killed_mid_run_charges_nothing_twice(
    emulator: EmulatorProcess, tmp_path: Path, run_id: str
) -> None:
    """An actor dies with paid jobs in flight; Ray restarts it and retries its tasks under the
    same keys: still one charge per photo, every output whole."""
    write_photos(tmp_path / "in", 60)
    marker = tmp_path / "died"
    rows = pipeline(emulator, tmp_path / "in", run_id, udf=DyingEnhance, marker=str(marker))
    assert marker.exists()  # an actor did die mid-run
    assert len(rows) == 60
    assert [r["error"] for r in rows if r["error"]] == []
    ledger = emulator.ledger()
    assert ledger["charges"] == 60
    assert set(ledger["keys"].values()) == {1}
    for row in rows:
        assert_whole_jpeg(row["output"][0])


def test_a_rerun_with_the_same_run_id_pays_nothing(
    emulator: EmulatorProcess, tmp_path: Path, run_id: str
) -> None:
    """The second run of a pipeline gets the same outputs from the server's original jobs,
    with no new charge."""
    write_photos(tmp_path / "in", 30)
    first = pipeline(emulator, tmp_path / "in", run_id)
    assert emulator.ledger()["charges"] == 30
    second = pipeline(emulator, tmp_path / "in", run_id)
    assert emulator.ledger()["charges"] == 30
    assert [r["job_id"] for r in second] == [r["job_id"] for r in first]
    assert [r["output"] for r in second] == [r["output"] for r in first]


def test_a_rerun_writing_to_a_folder_sends_nothing(
    emulator: EmulatorProcess, tmp_path: Path, run_id: str
) -> None:
    """With out_dir, a rerun finds every row's outputs on disk and skips it without a request
    (so it stays free past the server's key retention)."""
    write_photos(tmp_path / "in", 20)
    first = pipeline(emulator, tmp_path / "in", run_id, out_dir=str(tmp_path / "out"))
    assert not any(r["skipped"] for r in first)
    before = emulator.ask("refused /enhance")["requests"]
    second = pipeline(emulator, tmp_path / "in", run_id, out_dir=str(tmp_path / "out"))
    assert all(r["skipped"] for r in second)
    assert emulator.ask("refused /enhance")["requests"] == before
    assert [r["output_paths"] for r in second] == [r["output_paths"] for r in first]
    for row in first:
        assert_whole_jpeg(Path(row["output_paths"][0]).read_bytes())


def test_a_cluster_wide_budget_is_never_exceeded(
    emulator: EmulatorProcess, tmp_path: Path, run_id: str
) -> None:
    """A $3.00 budget over 60 photos at $0.12: the server charges at most $3.00, every row past
    it is a row with a 'not started' error, and the leases never passed the limit."""
    write_photos(tmp_path / "in", 60)
    rows = pipeline(emulator, tmp_path / "in", run_id, budget=3.0, lease=4)
    ledger = emulator.ledger()
    assert ledger["spent"] <= 3.0
    done = [r for r in rows if r["error"] is None]
    refused = [r for r in rows if r["error"] is not None]
    assert len(done) == ledger["charges"] >= 18  # at most two leases of four rows held back
    assert refused
    assert all(r["error"].startswith("not started") for r in refused)
    stats = governor_stats(run_id)
    assert stats["limit"] == 3.0
    assert stats["leased"] - stats["returned"] <= 3.0


def test_a_hidden_rate_limit_is_held_by_the_governor(
    emulator: EmulatorProcess, tmp_path: Path, run_id: str
) -> None:
    """The server takes 20 submits a second (bursts of 40) and says so only by refusing: the actors, paced by
    one governor, get at most 2% of their submits refused, and every photo is charged once."""
    emulator.ask('limit {"rate": 20, "burst": 40, "per_endpoint": true}')
    write_photos(tmp_path / "in", 400)
    rows = pipeline(emulator, tmp_path / "in", run_id)
    assert [r["error"] for r in rows if r["error"]] == []
    seen = emulator.ask("refused /enhance")
    ledger = emulator.ledger()
    assert ledger["charges"] == 400
    log = emulator.ask("log /enhance")
    refused_at = [round(t - log[0][0], 2) for t, status in log if status == 429]
    assert seen["refused"] <= 0.02 * seen["requests"], (seen, refused_at)
    assert governor_stats(run_id)["throttled"] == seen["refused"]


def test_the_api_key_is_not_in_the_pickled_constructor_arguments(
    emulator: EmulatorProcess,
) -> None:
    """What Ray pickles into the task specs (the class's constructor arguments) carries a
    reference to the key, never the key."""
    constructor = {"run_id": "r", "api_key": secret(emulator.api_key)}
    pickled = ray.cloudpickle.dumps(constructor)
    assert emulator.api_key.encode() not in pickled
    assert "***" in repr(constructor["api_key"])
    assert constructor["api_key"].reveal() == emulator.api_key


def test_a_plain_key_argument_is_refused() -> None:
    """A key given as a plain string (which Ray would pickle in clear text) is refused."""
    from phota_async.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="clear text"):
        PhotaEnhance(run_id="r", api_key="phota_plain_key")  # type: ignore[arg-type]


async def test_rows_after_the_governor_is_gone_are_one_line_errors(
    emulator: EmulatorProcess, tmp_path: Path, run_id: str
) -> None:
    """When the run's governor is ended mid-run, a row needing a permit is a row with a one-line
    'not started' error naming the governor, and nothing is charged."""
    write_photos(tmp_path / "in", 2)
    udf = PhotaEnhance(run_id=run_id, api_key=secret(emulator.api_key),
                       base_url=emulator.base_url)  # fmt: skip
    close_governor(run_id)
    batch = {"bytes": [p.read_bytes() for p in sorted((tmp_path / "in").iterdir())]}
    try:
        tables = [table async for table in udf(batch)]
    finally:
        await udf.aclose()
    errors = tables[0].column("error").to_pylist()
    assert len(errors) == 2
    for error in errors:
        assert error.startswith("not started: the run's governor is gone")
        assert "\n" not in error
    assert emulator.ledger()["charges"] == 0


async def test_rows_past_the_budget_take_no_permit(
    emulator: EmulatorProcess, tmp_path: Path, run_id: str
) -> None:
    """With the run's budget smaller than one row's price, every row is 'not started' without
    taking a permit from the governor (no round trip per refused row)."""
    write_photos(tmp_path / "in", 3)
    udf = PhotaEnhance(run_id=run_id, api_key=secret(emulator.api_key),
                       base_url=emulator.base_url, budget=0.10)  # fmt: skip
    batch = {"bytes": [p.read_bytes() for p in sorted((tmp_path / "in").iterdir())]}
    try:
        tables = [table async for table in udf(batch)]
    finally:
        await udf.aclose()
    errors = tables[0].column("error").to_pylist()
    assert len(errors) == 3
    assert all(error.startswith("not started") for error in errors)
    assert governor_stats(run_id)["permits"] == 0
    assert emulator.ledger()["charges"] == 0
