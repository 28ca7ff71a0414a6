"""Batches: completion order, error isolation, cancellation, manifests and resuming."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from phota_async import PhotaClient, PollPolicy
from phota_async._batch import BatchSummary
from phota_async._manifest import Manifest
from phota_async._naming import output_bases, output_name
from phota_async.errors import InvalidRequestError
from phota_async.models import ImageResult
from phota_async.testing import PhotaEmulator
from tests.helpers import decode, jpeg_bytes, until


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
    bad.write_bytes(b"\xff\xd8\xff not really\xff\xd9")  # whole-looking: the server refuses it
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


async def test_a_run_is_consumed_once(fast: PhotaClient, photos: list[Path]) -> None:
    """A second consumer of the same run is refused rather than handed part of the items."""
    run = fast.enhance_many(photos[:4], concurrency=2)
    first = asyncio.create_task(run.collect())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="consumed once"):
        await run.collect()
    assert len(await first) == 4


async def test_manifest_records_and_rerun_skips(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A rerun with the manifest skips finished inputs and sends nothing for them."""
    manifest = tmp_path / "run.jsonl"
    await fast.enhance_many(photos, out_dir=tmp_path / "out", manifest=manifest).collect()
    records = Manifest.read(manifest)
    assert [r.state for r in records.values()] == ["done"] * 12
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


async def test_done_item_without_images_is_not_paid_again(
    fast: PhotaClient,
    emu: PhotaEmulator,
    photos: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A job that succeeded with no image at all is done: a rerun skips it and pays nothing."""

    async def nothing(*_: object) -> dict[str, object]:
        return {"known_subjects": {"counts": {}}, "images": [], "download_urls": []}

    monkeypatch.setattr(emu._state, "render", nothing)
    manifest, out = tmp_path / "run.manifest", tmp_path / "out"
    first = await fast.enhance_many(photos[:1], out_dir=out, manifest=manifest).collect()
    assert first[0].status == "done"
    second = await fast.enhance_many(photos[:1], out_dir=out, manifest=manifest).collect()
    assert second[0].skipped
    assert second[0].paths == ()
    assert len(emu.charges()) == 1


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
    done = {name for name, r in Manifest.read(manifest).items() if r.state == "done"}
    assert done == {str(p.resolve()) for p in photos}


async def test_resume_after_interruption_mid_item(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A run cancelled while calls are in flight leaves no partial output and resumes cleanly."""
    manifest = tmp_path / "run.jsonl"
    emu.add_fault("/enhance", delay=0.5, times=3)
    run = fast.enhance_many(photos[:6], concurrency=3, out_dir=tmp_path / "out", manifest=manifest)
    task = asyncio.ensure_future(run.collect())
    # Cancel once the three calls are held by the server (the fault holds each for 0.5 s).
    await until(lambda: enhance_requests(emu) == 3, "three calls in flight")
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
    """A run cancelled after submitting its jobs resumes them by key instead of paying again."""
    manifest = tmp_path / "run.jsonl"
    emu.add_fault("/jobs/*", delay=0.5, times=4)
    run = fast.enhance_many(
        photos[:4], concurrency=4, out_dir=tmp_path / "out", manifest=manifest, via_job=True
    )
    task = asyncio.ensure_future(run.collect())
    for _ in range(400):
        if len(emu.jobs()) == 4:
            break
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    emu.clear_faults()
    items = await fast.enhance_many(
        photos[:4], out_dir=tmp_path / "out", manifest=manifest, via_job=True
    ).collect()
    assert all(i.ok for i in items)
    assert len(emu.jobs()) == 4
    assert len(emu.charges()) == 4


async def test_manifest_of_other_options_is_refused(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A manifest reused with another format or call kind is refused before anything is sent."""
    manifest, out = tmp_path / "run.manifest", tmp_path / "out"
    await fast.enhance_many(
        photos[:2], out_dir=out, manifest=manifest, output_format="jpg"
    ).collect()
    before = len(emu.requests)
    with pytest.raises(InvalidRequestError, match="other options"):
        await fast.enhance_many(
            photos[:2], out_dir=out, manifest=manifest, output_format="png"
        ).collect()
    with pytest.raises(InvalidRequestError, match="other options"):
        await fast.remix_many(
            photos[:2], reference=photos[3], out_dir=out, manifest=manifest, output_format="jpg"
        ).collect()
    assert len(emu.requests) == before


async def test_default_options_spelt_out_resume_the_same_manifest(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """Options given at their default values name the same calls as options left out."""
    manifest, out = tmp_path / "run.manifest", tmp_path / "out"
    await fast.enhance_many(
        photos[:2], out_dir=out, manifest=manifest, output_format="jpg", n=1
    ).collect()
    before = len(emu.requests)
    items = await fast.enhance_many(photos[:2], out_dir=out, manifest=manifest).collect()
    assert all(item.skipped for item in items)
    assert len(emu.requests) == before


@pytest.mark.parametrize(
    "content", [b"\xff\xd8\xff\xe0 a photo", b"SQLite format 3\x00" + b"\x01" * 200]
)
async def test_a_file_that_is_no_manifest_is_refused_and_kept(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path, content: bytes
) -> None:
    """A file that is not a readable manifest is refused with a clear error and left as it was."""
    path = tmp_path / "given-by-mistake"
    path.write_bytes(content)
    with pytest.raises(InvalidRequestError, match="manifest"):
        await fast.enhance_many(photos[:2], out_dir=tmp_path / "out", manifest=path).collect()
    assert path.read_bytes() == content
    assert emu.requests == []


def test_manifest_needs_out_dir(emu: PhotaEmulator, photos: list[Path], tmp_path: Path) -> None:
    """A manifest without out_dir is refused at once."""
    client = PhotaClient(api_key="k", base_url=emu.base_url)
    with pytest.raises(ValueError, match="out_dir"):
        client.enhance_many(photos, manifest=tmp_path / "m.jsonl")


async def test_jsonl_manifest_of_an_earlier_version_is_imported(tmp_path: Path) -> None:
    """A JSONL manifest from an earlier version is converted; a line cut short is ignored."""
    path = tmp_path / "m.jsonl"
    lines = [
        {"input": "a", "status": "done", "outputs": ["/o/a-0.jpg"]},
        {"input": "b", "status": "submitted", "job": {"job_id": "job_1", "status": "QUEUED"}},
    ]
    path.write_text("".join(json.dumps(e) + "\n" for e in lines) + '{"input": "c", "sta')
    manifest = await Manifest.open(path)
    await manifest.aclose()
    records = Manifest.read(path)
    assert sorted(records) == ["a", "b"]
    assert records["a"].outputs == ("/o/a-0.jpg",)
    assert records["b"].job is not None
    assert records["b"].job["job_id"] == "job_1"
    assert manifest.run_id is not None


# -- keys before money ---------------------------------------------------------------------


async def test_intent_is_on_disk_before_the_submit_is_sent(
    fast: PhotaClient, photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a keyed submit leaves, the manifest file already holds that key's intent."""
    manifest = tmp_path / "run.jsonl"
    seen: list[bool] = []
    submit = fast.jobs.submit_enhance

    async def spy(image: Path, *, client_request_id: str, **options: object) -> object:
        committed = Manifest.read(manifest)  # through another connection: only what is on disk
        seen.append(committed[str(image.resolve())].key == client_request_id)
        return await submit(image, client_request_id=client_request_id, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(fast.jobs, "submit_enhance", spy)
    items = await fast.enhance_many(photos, out_dir=tmp_path / "out", manifest=manifest).collect()
    assert all(i.ok for i in items)
    assert seen == [True] * len(photos)


async def test_manifest_runs_are_keyed_jobs_with_derived_keys(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """Without via_job, a manifest run still submits keyed jobs, one key per input per run."""
    manifest = tmp_path / "run.jsonl"
    await fast.enhance_many(photos[:3], out_dir=tmp_path / "out", manifest=manifest).collect()
    keys = {r.key for r in Manifest.read(manifest).values()}
    assert keys == {j["client_request_id"] for j in emu.jobs()}
    assert len(keys) == 3


async def test_intents_that_start_together_share_fsyncs(
    fast: PhotaClient, photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Items starting together have their intents committed (fsynced) together: far fewer
    commits than changes."""
    commits: list[int] = []
    real = Manifest._commit

    def counting(self: Manifest, entries: list[dict[str, object]]) -> None:
        if entries:
            commits.append(len(entries))
        real(self, entries)

    monkeypatch.setattr(Manifest, "_commit", counting)
    await fast.enhance_many(
        photos, concurrency=12, out_dir=tmp_path / "out", manifest=tmp_path / "run.db"
    ).collect()
    assert sum(commits) == 3 * len(photos)  # intent, job, done
    assert len(commits) <= sum(commits) // 2


# -- unknown is not failed -----------------------------------------------------------------


async def test_lost_submit_answer_is_pending_and_resumed_without_a_second_charge(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A submit whose answer is lost on every attempt stays pending; the rerun pays nothing more."""
    manifest, out = tmp_path / "run.jsonl", tmp_path / "out"
    emu.add_fault("/enhance", drop="after", times=20)
    first = await fast.enhance_many(photos[:1], out_dir=out, manifest=manifest).collect()
    assert first[0].pending == "submit answer lost"
    assert first[0].error is not None
    emu.clear_faults()
    charged = len(emu.charges())
    second = await fast.enhance_many(photos[:1], out_dir=out, manifest=manifest).collect()
    assert second[0].ok
    assert len(emu.charges()) == charged == 1


async def test_pending_input_rewritten_before_the_rerun_gets_its_new_bytes_enhanced(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A pending input whose file now holds another photo is sent anew, not answered with the
    old photo's job."""
    manifest, out = tmp_path / "run.manifest", tmp_path / "out"
    emu.add_fault("/enhance", drop="after", times=20)
    first = await fast.enhance_many(photos[:1], out_dir=out, manifest=manifest).collect()
    assert first[0].pending == "submit answer lost"
    emu.clear_faults()
    photos[0].write_bytes(jpeg_bytes(7, (64, 32)))
    second = await fast.enhance_many(photos[:1], out_dir=out, manifest=manifest).collect()
    assert second[0].ok
    assert decode(second[0].paths[0].read_bytes()).size == (64, 32)


async def test_poll_404_is_pending_and_resumed_by_job_id(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A 404 on the first poll leaves the item pending; the rerun polls the same job."""
    manifest, out = tmp_path / "run.jsonl", tmp_path / "out"
    emu.add_fault("/jobs/*", status=404, times=1)
    first = await fast.enhance_many(photos[:1], out_dir=out, manifest=manifest).collect()
    assert first[0].pending == "job not found when polled"
    second = await fast.enhance_many(photos[:1], out_dir=out, manifest=manifest).collect()
    assert second[0].ok
    assert len(emu.charges()) == len(emu.jobs()) == 1
    assert sum(r["path"] == "/enhance" for r in emu.requests) == 1


async def test_job_outliving_the_wait_is_pending_and_not_paid_again(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A job still running at the item's deadline stays pending; the rerun collects it."""
    manifest, out = tmp_path / "run.jsonl", tmp_path / "out"
    emu.add_fault("/jobs/*", delay=0.5, times=1)
    first = await fast.enhance_many(
        photos[:2], out_dir=out, manifest=manifest, timeout=0.3
    ).collect()
    assert [i.status for i in first].count("pending") >= 1
    second = await fast.enhance_many(photos[:2], out_dir=out, manifest=manifest).collect()
    assert all(i.ok for i in second)
    assert len(emu.charges()) == 2


async def test_sync_outcome_unknown_is_pending_without_a_manifest(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path]
) -> None:
    """Without a manifest, a synchronous call whose answer was lost is reported pending."""
    emu.add_fault("/enhance", drop="after", times=1)
    items = await fast.enhance_many(photos[:1]).collect()
    assert items[0].pending == "outcome unknown"
    assert not items[0].ok


async def test_failed_job_is_retried_under_a_new_key(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A FAILED job (refunded) counts as failed; the rerun submits again under a fresh key."""
    manifest, out = tmp_path / "run.jsonl", tmp_path / "out"
    emu.fail_next_jobs(1)
    first = await fast.enhance_many(photos[:1], out_dir=out, manifest=manifest).collect()
    assert first[0].status == "failed"
    second = await fast.enhance_many(photos[:1], out_dir=out, manifest=manifest).collect()
    assert second[0].ok
    keys = [j["client_request_id"] for j in emu.jobs()]
    assert len(set(keys)) == 2
    assert emu.net_spent() == pytest.approx(0.12)


async def test_summary_line_names_pending_reasons(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """The summary counts pending items with their reason."""
    emu.add_fault("/jobs/*", status=404, times=1)
    run = fast.enhance_many(photos[:3], out_dir=tmp_path / "out", manifest=tmp_path / "m.jsonl")
    await run.collect()
    assert run.summary.pending == 1
    assert "1 pending (1 job not found when polled" in run.summary.line()


async def test_rerun_from_another_directory_pays_nothing(
    fast: PhotaClient,
    emu: PhotaEmulator,
    photos: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Relative inputs and outputs are stored absolute, so a rerun from elsewhere sends nothing."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    relative = [Path("in") / p.name for p in photos[:4]]
    await fast.enhance_many(relative, out_dir="out", manifest="run.jsonl").collect()
    sent = len(emu.requests)
    monkeypatch.chdir(elsewhere)
    items = await fast.enhance_many(
        [p.resolve() for p in photos[:4]], out_dir=tmp_path / "out", manifest=tmp_path / "run.jsonl"
    ).collect()
    assert all(i.skipped for i in items)
    assert len(emu.requests) == sent


# -- identity-safe outputs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "n"),
    [
        (["2024.05.01 beach.jpg", "2024.05.02 park.jpg"], 1),
        (["IMG_1.edited"], 2),
        (["photo-2.jpg", "photo.png"], 3),
        (["a/x.jpg", "b/x.jpg"], 1),
        (["A/Photo.JPG", "b/photo.jpg", "photo.png"], 2),
    ],
)
async def test_awkward_names_give_one_file_per_output(
    fast: PhotaClient, tmp_path: Path, names: list[str], n: int
) -> None:
    """However the inputs are named, there are exactly as many output files as outputs."""
    inputs = []
    for i, name in enumerate(names):
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg_bytes(i, (40, 40)))
        inputs.append(path)
    out = tmp_path / "out"
    items = await fast.enhance_many(
        inputs, n=n, out_dir=out, manifest=tmp_path / "m.jsonl"
    ).collect()
    assert all(i.ok for i in items)
    assert len(list(out.iterdir())) == len(names) * n
    assert len({p for i in items for p in i.paths}) == len(names) * n


async def test_rerun_never_overwrites_another_inputs_output(
    fast: PhotaClient, emu: PhotaEmulator, tmp_path: Path
) -> None:
    """A rerun adding b/x.jpg next to a finished a/x.jpg keeps a's output and skips it."""
    a, b = tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"
    for i, path in enumerate((a, b)):
        path.parent.mkdir()
        path.write_bytes(jpeg_bytes(i, (40, 40)))
    out, manifest = tmp_path / "out", tmp_path / "m.jsonl"
    (first,) = await fast.enhance_many([a], out_dir=out, manifest=manifest).collect()
    before = first.paths[0].read_bytes()
    second = await fast.enhance_many([a, b], out_dir=out, manifest=manifest).collect()
    assert [i.status for i in second] == ["skipped", "done"]
    assert first.paths[0].read_bytes() == before
    assert len(list(out.iterdir())) == 2


async def test_outputs_get_the_umask_permissions(
    fast: PhotaClient, photos: list[Path], tmp_path: Path
) -> None:
    """Outputs are created with 0o666 minus the umask, like any file a program writes."""
    old = os.umask(0o027)
    try:
        items = await fast.enhance_many(photos[:1], out_dir=tmp_path / "out").collect()
        via_job = await fast.enhance_many(
            photos[1:2], out_dir=tmp_path / "out", via_job=True
        ).collect()
    finally:
        os.umask(old)
    for item in (*items, *via_job):
        assert stat.S_IMODE(item.paths[0].stat().st_mode) == 0o640


async def test_downloaded_output_is_on_disk_before_it_is_named(
    fast: PhotaClient, photos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A URL output's temporary file is fsynced before it is renamed to the output's name."""
    steps: list[str] = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        steps.append("fsync " + os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    def spy_replace(src: object, dst: object) -> None:
        steps.append(f"replace {src}")
        replace(src, dst)  # type: ignore[arg-type]

    result = await fast.enhance(photos[0], response_mode="urls")
    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    await result.save(photos[0].parent / "saved")
    moved = [s.removeprefix("replace ") for s in steps if s.startswith("replace ")]
    assert len(moved) == 1
    assert steps.index(f"fsync {moved[0]}") < steps.index(f"replace {moved[0]}")


async def test_image_result_save_keeps_dotted_stems(fast: PhotaClient, photos: list[Path]) -> None:
    """`ImageResult.save` never cuts a stem at its dots: every output keeps its own file."""
    result = await fast.enhance(photos[0], n=2)
    paths = await result.save(photos[0].parent / "saved", stem="2024.05.01 beach")
    assert [p.name for p in paths] == ["2024.05.01 beach-0.jpg", "2024.05.01 beach-1.jpg"]
    urls = await fast.enhance(photos[0], n=2, response_mode="urls")
    paths = await urls.save(photos[0].parent / "saved", stem="IMG_1.edited")
    assert [p.name for p in paths] == ["IMG_1.edited-0.jpg", "IMG_1.edited-1.jpg"]


_NAME = st.text(
    st.sampled_from(list("aAbB.-_ ~0129ßSs"))
    | st.characters(codec="utf-8", exclude_characters="/\0"),
    min_size=1,
    max_size=60,
).filter(lambda s: s not in (".", ".."))


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "a/c"]), _NAME), min_size=1, max_size=12),
    st.integers(1, 4),
    st.lists(_NAME, max_size=4),
)
def test_output_names_are_injective(
    entries: list[tuple[str, str]], n: int, taken: list[str]
) -> None:
    """Distinct inputs never share an output file name, even ignoring case, nor clash with
    names an earlier run planned."""
    paths = list(dict.fromkeys(Path("/data") / folder / name for folder, name in entries))
    earlier = {t.casefold() for t in taken}
    bases = output_bases(paths, earlier)
    files = [output_name(b, i, "jpg").casefold() for b in bases for i in range(n)]
    assert len(set(files)) == len(paths) * n
    assert not {b.casefold() for b in bases} & earlier
    assert all(len(output_name(b, 3, "webp").encode()) <= 255 for b in bases)
    assert output_bases(paths, earlier) == bases


# -- back-pressure and clean exits ---------------------------------------------------------


async def _no_new_tasks(before: set[asyncio.Task[object]], within: float = 1.0) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    current = asyncio.current_task()
    while loop.time() < deadline:
        if not set(asyncio.all_tasks()) - before - {current}:
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.parametrize("spelling", ["async with", "plain async for"])
async def test_slow_consumer_bounds_what_is_paid_and_break_cancels(
    threaded_emu: PhotaEmulator, tmp_path: Path, spelling: str
) -> None:
    """A slow consumer breaking after 40 items at concurrency 8 pays for at most 40 + 2*8 and
    leaves no task behind 1 s later."""
    emu = threaded_emu
    emu.balance = 1e6
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg_bytes(1, (40, 40)))
    inputs = [photo] * 200
    before = set(asyncio.all_tasks())
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
        taken = 0
        if spelling == "async with":
            async with phota.enhance_many(inputs, concurrency=8) as run:
                async for _item in run:
                    taken += 1
                    await asyncio.sleep(0.02)
                    if taken == 40:
                        break
        else:
            async for _item in phota.enhance_many(inputs, concurrency=8):
                taken += 1
                await asyncio.sleep(0.02)
                if taken == 40:
                    break
        assert await _no_new_tasks(before)
    assert len(emu.charges()) <= 40 + 2 * 8


async def test_stop_finishes_what_is_in_flight_and_starts_nothing_new(
    threaded_emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """After stop(), the items in flight finish and are recorded; no other input is sent."""
    emu = threaded_emu
    emu.add_fault("/enhance", delay=0.2, times=100)
    manifest = tmp_path / "m.jsonl"
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, poll=PollPolicy().scaled(0.01)
    ) as phota:
        run = phota.enhance_many(photos, concurrency=3, out_dir=tmp_path / "out", manifest=manifest)
        items = []
        async for item in run:
            if not items:
                run.stop()
            items.append(item)
    assert all(i.ok for i in items)
    assert len(items) <= 4
    assert len(emu.jobs()) == len(items)
    assert [r.state for r in Manifest.read(manifest).values()] == ["done"] * len(items)


# -- one bad item is one bad item ----------------------------------------------------------


async def test_unreadable_input_is_one_failed_item(
    fast: PhotaClient, photos: list[Path], tmp_path: Path
) -> None:
    """An input that cannot be read (here a folder named like a photo) fails alone."""
    odd = tmp_path / "folder.jpg"
    odd.mkdir()
    for manifest in (None, tmp_path / "m.jsonl"):
        items = await fast.enhance_many(
            [photos[0], odd, photos[1]], out_dir=tmp_path / "out", manifest=manifest
        ).collect()
        assert [i.status for i in items] == ["done", "failed", "done"]
        assert isinstance(items[1].error, Exception)


async def test_fifo_input_of_a_manifest_run_fails_alone_at_once(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A FIFO named like a photo is refused when the run keys it, without waiting for a writer."""
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    items = await asyncio.wait_for(
        fast.enhance_many(
            [photos[0], fifo], out_dir=tmp_path / "out", manifest=tmp_path / "m.manifest"
        ).collect(),
        timeout=30,
    )
    assert [i.status for i in items] == ["done", "failed"]
    assert isinstance(items[1].error, InvalidRequestError)
    assert "not a regular file" in str(items[1].error)
    assert len(emu.charges()) == 1


async def test_deeply_nested_answer_is_one_failed_item(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path]
) -> None:
    """An answer nested deeper than the parser allows is that item's error; others go on."""
    emu.add_fault("/enhance", status=200, body="[" * 100_000 + "]" * 100_000, times=1)
    items = await fast.enhance_many(photos[:4], concurrency=1).collect()
    assert [i.ok for i in items] == [False, True, True, True]
    assert items[0].error is not None


async def test_a_bug_in_the_run_itself_is_raised(fast: PhotaClient, photos: list[Path]) -> None:
    """An exception outside any one input (here the progress callback) ends the run loudly."""

    def broken(summary: BatchSummary, item: object) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        await fast.enhance_many(photos[:3], on_progress=broken).collect()


async def test_rate_counts_only_this_runs_work(
    fast: PhotaClient, photos: list[Path], tmp_path: Path
) -> None:
    """On a resume, skipped items count neither in `worked` nor in the rate."""
    manifest = tmp_path / "m.jsonl"
    await fast.enhance_many(photos[:10], out_dir=tmp_path / "out", manifest=manifest).collect()
    run = fast.enhance_many(photos, out_dir=tmp_path / "out", manifest=manifest)
    await run.collect()
    assert (run.summary.skipped, run.summary.worked, run.remaining) == (10, 2, 2)


async def test_rerun_removes_temporary_files_a_kill_left(
    fast: PhotaClient, photos: list[Path], tmp_path: Path
) -> None:
    """A rerun deletes its own outputs' stale `.part` files (a SIGKILL cannot), nothing else."""
    out, manifest = tmp_path / "out", tmp_path / "m.jsonl"
    await fast.enhance_many(photos[:2], out_dir=out, manifest=manifest).collect()
    stale = out / ".p00-0.jpg.0123456789ab.part"
    stale.write_bytes(b"half an image")
    mine = out / ".notes.txt.0123456789ab.part"
    mine.write_bytes(b"someone else's")
    await fast.enhance_many(photos[:2], out_dir=out, manifest=manifest).collect()
    assert not stale.exists()
    assert mine.exists()


async def test_rerun_removes_the_temporary_file_of_a_killed_download(
    fast: PhotaClient, photos: list[Path], tmp_path: Path
) -> None:
    """A rerun also deletes a killed URL download's `.part`, named before its extension is known."""
    out, manifest = tmp_path / "out", tmp_path / "m.manifest"
    await fast.enhance_many(photos[:2], out_dir=out, manifest=manifest).collect()
    stale = out / ".p00-0.0123456789ab.part"
    stale.write_bytes(b"half an image")
    await fast.enhance_many(photos[:2], out_dir=out, manifest=manifest).collect()
    assert not stale.exists()


async def test_keyed_run_widens_the_poll_budget_while_it_runs(
    fast: PhotaClient, photos: list[Path], tmp_path: Path
) -> None:
    """A manifest run makes room in the poll budget for its jobs, and gives it back at the end."""
    budget = fast._session.poller.budget
    base = budget.interval
    seen: list[float] = []
    run = fast.enhance_many(
        photos,
        concurrency=8,
        out_dir=tmp_path / "out",
        manifest=tmp_path / "run.manifest",
        on_progress=lambda *_: seen.append(budget.interval),
    )
    items = await run.collect()
    assert all(item.ok for item in items)
    expected = 1 / (1 / base + 8 / fast._session.poll_policy.job.first)
    assert seen == [pytest.approx(expected)] * len(photos)
    assert budget.interval == base


def test_summary_line_counts_pending_items_in_the_cost() -> None:
    """The summary line says pending items may already be charged and how a rerun treats them."""
    summary = BatchSummary(total=3, done=2, pending=1, cost=0.24)
    summary.pending_reasons["submit answer lost"] += 1
    line = summary.line()
    assert "1 pending (1 submit answer lost; a rerun resumes them by key)" in line
    assert line.endswith("estimated cost $0.24 + up to the price of 1 pending")
