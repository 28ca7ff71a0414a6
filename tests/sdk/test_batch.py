"""Batches: completion order, error isolation, cancellation, manifests and resuming."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from phota_async import PhotaClient, PollPolicy
from phota_async._batch import BatchSummary
from phota_async._manifest import Manifest
from phota_async._naming import output_bases
from phota_async.models import ImageResult
from phota_async.testing import PhotaEmulator
from tests.conftest import decode, jpeg_bytes


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Twelve small photos on disk."""
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in range(12):
        path = folder / f"p{i:02d}.jpg"
        path.write_bytes(jpeg_bytes(i, (48, 48)))
        paths.append(path)
    return paths


@pytest.fixture
async def fast(emu: PhotaEmulator) -> AsyncIterator[PhotaClient]:
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, poll=PollPolicy().scaled(0.01)
    ) as client:
        yield client


def enhance_requests(emu: PhotaEmulator) -> int:
    return sum(1 for r in emu.requests if r["path"] == "/enhance")


async def test_every_input_gets_one_item(fast: PhotaClient, photos: list[Path]) -> None:
    """Each input yields exactly one successful item carrying its index and result."""
    items = await fast.enhance_many(photos, concurrency=4).collect()
    assert [i.index for i in items] == list(range(12))
    assert all(i.ok and isinstance(i.result, ImageResult) for i in items)
    assert [i.input for i in items] == photos


async def test_results_arrive_as_they_complete(fast: PhotaClient, photos: list[Path]) -> None:
    """A slow first input arrives after faster later ones."""

    async def call(path: Path) -> ImageResult:
        if path == photos[0]:
            await asyncio.sleep(0.3)
        return await fast.enhance(path)

    order = [item.index async for item in fast.map(call, photos[:4], concurrency=4)]
    assert sorted(order) == [0, 1, 2, 3]
    assert order[-1] == 0


async def test_one_failure_does_not_stop_the_batch(
    fast: PhotaClient, photos: list[Path], tmp_path: Path
) -> None:
    """A bad input fails alone; the rest succeed."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really")
    items = await fast.enhance_many([*photos[:3], bad, *photos[3:6]], concurrency=3).collect()
    assert [i.ok for i in items] == [True, True, True, False, True, True, True]
    assert items[3].error is not None
    assert "INVALID_IMAGE" in str(items[3].error)


async def test_concurrency_bounds_calls_in_flight(fast: PhotaClient, photos: list[Path]) -> None:
    """No more than `concurrency` calls run at once."""
    running = peak = 0

    async def call(path: Path) -> ImageResult:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            return await fast.enhance(path)
        finally:
            running -= 1

    await fast.map(call, photos, concurrency=3).collect()
    assert peak == 3


async def test_progress_callback_counts_every_item(fast: PhotaClient, photos: list[Path]) -> None:
    """The progress callback sees each item and a running summary."""
    seen: list[int] = []
    summaries: list[BatchSummary] = []

    def progress(summary: BatchSummary, item: object) -> None:
        seen.append(summary.finished)
        summaries.append(summary)

    await fast.enhance_many(photos, concurrency=4, on_progress=progress).collect()
    assert seen == list(range(1, 13))
    assert summaries[-1].images == 12
    assert summaries[-1].cost == pytest.approx(12 * 0.12)


async def test_breaking_out_cancels_the_rest(
    threaded_emu: PhotaEmulator, photos: list[Path]
) -> None:
    """Leaving the run after two items cancels the remaining calls and leaves no task."""
    emu = threaded_emu
    emu.add_fault("/enhance", delay=0.3, times=100)
    before = set(asyncio.all_tasks())
    got = 0
    async with (
        PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota,
        phota.enhance_many(photos, concurrency=2) as run,
    ):
        async for _item in run:
            got += 1
            if got == 2:
                break
    await asyncio.sleep(0.1)  # let requests already on the wire reach the server's log
    sent = enhance_requests(emu)
    await asyncio.sleep(0.5)
    assert enhance_requests(emu) == sent
    assert sent <= 4 + 2
    assert set(asyncio.all_tasks()) - before == set()


async def test_outputs_are_saved_with_distinct_names(
    fast: PhotaClient, photos: list[Path], tmp_path: Path
) -> None:
    """With out_dir every output is written under its input's name."""
    items = await fast.enhance_many(photos[:3], out_dir=tmp_path / "out").collect()
    assert [p.name for i in items for p in i.paths] == ["p00-0.jpg", "p01-0.jpg", "p02-0.jpg"]
    assert all(decode(p.read_bytes()).format == "JPEG" for i in items for p in i.paths)


def test_repeated_names_get_distinct_bases(tmp_path: Path) -> None:
    """Inputs sharing a file name in different folders get distinct output bases."""
    bases = output_bases([tmp_path / "a/x.jpg", tmp_path / "b/x.jpg", "https://h/y.jpg"])
    assert len({b.casefold() for b in bases}) == 3
    assert all(b.startswith("x.jpg~") for b in bases[:2])
    assert bases[2].startswith("url-")


async def test_manifest_records_and_rerun_skips(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A rerun with the manifest skips finished inputs and sends nothing for them."""
    manifest = tmp_path / "run.jsonl"
    await fast.enhance_many(photos, out_dir=tmp_path / "out", manifest=manifest).collect()
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert sum(e["op"] == "done" for e in lines) == 12
    before = len(emu.requests)
    items = await fast.enhance_many(photos, out_dir=tmp_path / "out", manifest=manifest).collect()
    assert all(i.skipped for i in items)
    assert len(emu.requests) == before


async def test_rerun_retries_failures(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """Inputs that failed are sent again on the rerun; done ones are not."""
    manifest = tmp_path / "run.jsonl"
    emu.add_fault("/enhance", status=400, times=2)
    first = await fast.enhance_many(
        photos[:4], concurrency=1, out_dir=tmp_path / "out", manifest=manifest
    ).collect()
    assert sum(not i.ok for i in first) == 2
    second = await fast.enhance_many(
        photos[:4], concurrency=1, out_dir=tmp_path / "out", manifest=manifest
    ).collect()
    assert sum(i.skipped for i in second) == 2
    assert all(i.ok for i in second)
    assert len(emu.charges()) == 4


async def test_missing_output_is_redone(
    fast: PhotaClient, photos: list[Path], tmp_path: Path
) -> None:
    """An input whose recorded output file was deleted is done again."""
    manifest = tmp_path / "run.jsonl"
    items = await fast.enhance_many(
        photos[:2], out_dir=tmp_path / "out", manifest=manifest
    ).collect()
    items[0].paths[0].unlink()
    again = await fast.enhance_many(
        photos[:2], out_dir=tmp_path / "out", manifest=manifest
    ).collect()
    assert [i.skipped for i in again] == [False, True]


@pytest.mark.parametrize("stop_after", [0, 1, 5, 11])
async def test_resume_after_interruption_between_items(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path, stop_after: int
) -> None:
    """A run stopped after k items resumes to every input done exactly once."""
    manifest = tmp_path / "run.jsonl"
    async with fast.enhance_many(
        photos, concurrency=1, out_dir=tmp_path / "out", manifest=manifest
    ) as run:
        seen = 0
        async for _item in run:
            seen += 1
            if seen >= stop_after:
                break
    await fast.enhance_many(
        photos, concurrency=3, out_dir=tmp_path / "out", manifest=manifest
    ).collect()
    assert len(emu.charges()) == 12
    done = {
        e["input"] for e in map(json.loads, manifest.read_text().splitlines()) if e["op"] == "done"
    }
    assert done == {str(p.resolve()) for p in photos}


async def test_resume_after_interruption_mid_item(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A run cancelled while calls are in flight leaves no partial output and resumes cleanly."""
    manifest = tmp_path / "run.jsonl"
    emu.add_fault("/enhance", delay=1.0, times=3)
    run = fast.enhance_many(photos[:6], concurrency=3, out_dir=tmp_path / "out", manifest=manifest)
    task = asyncio.ensure_future(run.collect())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    partial = [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]
    assert partial == []
    await fast.enhance_many(
        photos[:6], concurrency=3, out_dir=tmp_path / "out", manifest=manifest
    ).collect()
    assert len(emu.charges()) == 6
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"p{i:02d}-0.jpg" for i in range(6)
    ]


async def test_job_batches_resume_submitted_jobs(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """With via_job, a run stopped after submitting resumes those jobs instead of paying again."""
    manifest = tmp_path / "run.jsonl"
    emu_jobs_before = len(emu.jobs())
    run = fast.enhance_many(
        photos[:4], concurrency=4, out_dir=tmp_path / "out", manifest=manifest, via_job=True
    )
    task = asyncio.ensure_future(run.collect())
    for _ in range(400):
        if manifest.exists() and manifest.read_text().count('"op":"job"') == 4:
            break
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    submitted = manifest.read_text().count('"op":"job"')
    items = await fast.enhance_many(
        photos[:4], out_dir=tmp_path / "out", manifest=manifest, via_job=True
    ).collect()
    assert all(i.ok for i in items)
    assert len(emu.jobs()) - emu_jobs_before == 4
    assert len(emu.charges()) == 4
    assert submitted >= 1


def test_manifest_needs_out_dir(emu: PhotaEmulator, photos: list[Path], tmp_path: Path) -> None:
    """A manifest without out_dir is refused at once."""
    client = PhotaClient(api_key="k", base_url=emu.base_url)
    with pytest.raises(ValueError, match="out_dir"):
        client.enhance_many(photos, manifest=tmp_path / "m.jsonl")


async def test_truncated_manifest_line_is_ignored(tmp_path: Path) -> None:
    """A last line cut short by a kill is ignored, earlier lines kept."""
    path = tmp_path / "m.jsonl"
    path.write_text(
        json.dumps({"input": "a", "op": "done", "outputs": []}) + "\n" + '{"input": "b", "op'
    )
    manifest = await Manifest.open(path)
    assert list(manifest.records) == ["a"]
    assert manifest.torn == 1
