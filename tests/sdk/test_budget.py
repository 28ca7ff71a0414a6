"""The spend guard: reservations before paid calls, settlement, refunds, prices and the ledger."""

from __future__ import annotations

import asyncio
import math
import pickle
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

import phota_async
from phota_async import Budget, ImageResult, PhotaClient, PollPolicy, Prices
from phota_async.errors import (
    BudgetExceededError,
    InvalidRequestError,
    JobFailedError,
    OutcomeUnknownError,
    PhotaError,
)
from phota_async.testing import PhotaEmulator
from tests.helpers import b64, jpeg_bytes, local_server, until

FAST = PollPolicy().scaled(0.01)
EMULATOR_EDIT_PRICES = {"edit/nb2": 0.08, "generate/nb2": 0.08}


@pytest.fixture
async def fast(emu: PhotaEmulator) -> AsyncIterator[PhotaClient]:
    """A client without a budget, polling fast."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, poll=FAST) as client:
        yield client


@pytest.fixture
async def capped(emu: PhotaEmulator) -> AsyncIterator[PhotaClient]:
    """A client with a $0.30 budget (two plain enhances and a half), polling fast."""
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, poll=FAST, budget=0.30
    ) as client:
        yield client


def posts(emu: PhotaEmulator, path: str) -> list[dict]:
    return [r for r in emu.requests if r["method"] == "POST" and r["path"] == path]


async def test_a_call_that_would_pass_the_budget_is_not_sent(
    capped: PhotaClient, emu: PhotaEmulator
) -> None:
    """The third enhance (reserved at $0.15, two settled at $0.12) under a $0.30 budget raises
    BudgetExceededError unsent."""
    await capped.enhance(jpeg_bytes())
    await capped.enhance(jpeg_bytes())
    with pytest.raises(BudgetExceededError) as caught:
        await capped.enhance(jpeg_bytes())
    error = caught.value
    assert (error.spent, error.reserved, error.limit, error.estimate) == (0.24, 0.0, 0.30, 0.15)
    assert isinstance(error, PhotaError)
    assert "$0.15" in str(error)
    assert "$0.30" in str(error)
    assert len(posts(emu, "/enhance")) == 2


async def test_settles_to_the_charge_of_what_was_made(
    capped: PhotaClient, emu: PhotaEmulator
) -> None:
    """A successful call moves its price from pending to spent, as the emulator charged it."""
    await capped.enhance(jpeg_bytes(), n=2)
    spend = capped.spend
    assert spend is not None
    assert (spend.spent, spend.pending, spend.refunded) == (0.24, 0.0, 0.0)
    assert spend.endpoints["enhance"].calls == 1
    assert spend.spent == emu.net_spent()


async def test_identity_is_priced_at_fifteen_cents(emu: PhotaEmulator) -> None:
    """An enhance naming a trained subject reserves and settles $0.15 an image."""
    pid = emu.add_profile()
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, budget=1.0) as phota:
        await phota.enhance(jpeg_bytes(), profile_ids=[pid])
        assert phota.spend is not None
        assert phota.spend.spent == 0.15 == emu.net_spent()


async def test_a_refusal_releases_the_reservation(capped: PhotaClient, emu: PhotaEmulator) -> None:
    """A 400 from the API gives the reservation back: nothing spent, nothing pending."""
    emu.add_fault("/enhance", status=400)
    with pytest.raises(PhotaError):
        await capped.enhance(jpeg_bytes())
    spend = capped.spend
    assert spend is not None
    assert (spend.spent, spend.pending, spend.refunded) == (0.0, 0.0, 0.0)


async def test_a_504_is_counted_as_refunded(emu: PhotaEmulator) -> None:
    """A synchronous call past its limit (504, refunded) releases its reservation ($0.15, the
    worst case: the charge is unknown) as refunded."""
    async with (
        PhotaEmulator(sync_timeout=0.0, processing_seconds=0.05, max_output_side=64) as slow,
        PhotaClient(api_key=slow.api_key, base_url=slow.base_url, budget=1.0) as phota,
    ):
        with pytest.raises(PhotaError):
            await phota.enhance(jpeg_bytes())
        spend = phota.spend
        assert spend is not None
        assert (spend.spent, spend.pending, spend.refunded) == (0.0, 0.0, 0.15)
        assert slow.net_spent() == 0.0


async def test_an_unknown_outcome_keeps_the_reservation(
    capped: PhotaClient, emu: PhotaEmulator
) -> None:
    """A lost answer (perhaps charged) keeps its price pending, and it counts against the cap."""
    emu.add_fault("/enhance", drop="after")
    with pytest.raises(OutcomeUnknownError):
        await capped.enhance(jpeg_bytes())
    spend = capped.spend
    assert spend is not None
    assert (spend.spent, spend.pending) == (0.0, 0.15)
    await capped.enhance(jpeg_bytes())
    with pytest.raises(BudgetExceededError) as caught:
        await capped.enhance(jpeg_bytes())
    assert caught.value.reserved == 0.15
    assert emu.net_spent() == 0.24  # the emulator did charge the lost call


async def test_a_failed_job_is_refunded(capped: PhotaClient, emu: PhotaEmulator) -> None:
    """A job that ends FAILED (refunded by the API) gives its reservation back as refunded."""
    emu.fail_next_jobs()
    job = await capped.jobs.submit_enhance(jpeg_bytes())
    assert capped.spend is not None
    assert capped.spend.pending == 0.15
    with pytest.raises(JobFailedError):
        await job.wait(timeout=10)
    spend = capped.spend
    assert (spend.spent, spend.pending, spend.refunded) == (0.0, 0.0, 0.15)


async def test_a_job_settles_when_a_poll_sees_it_succeed(capped: PhotaClient) -> None:
    """A submitted job stays pending until its wait sees SUCCEEDED, then is spent."""
    job = await capped.jobs.submit_enhance(jpeg_bytes())
    await job.wait(timeout=10)
    spend = capped.spend
    assert spend is not None
    assert (spend.spent, spend.pending) == (0.12, 0.0)


async def test_a_keyed_resubmit_reuses_its_reservation(
    capped: PhotaClient, emu: PhotaEmulator
) -> None:
    """A submit whose answer was lost keeps one reservation, which its resubmit reuses."""
    emu.add_fault("/enhance", drop="after", times=4)  # every attempt
    with pytest.raises(OutcomeUnknownError) as caught:
        await capped.jobs.submit_enhance(jpeg_bytes())
    key = caught.value.client_request_id
    assert capped.spend is not None
    assert capped.spend.pending == 0.15
    job = await capped.jobs.submit_enhance(jpeg_bytes(), client_request_id=key)
    assert capped.spend.pending == 0.15
    await job.wait(timeout=10)
    assert (capped.spend.spent, capped.spend.pending) == (0.12, 0.0)
    assert emu.net_spent() == 0.12


async def test_unknown_edit_price_is_refused_before_sending(
    emu: PhotaEmulator,
) -> None:
    """Under a budget an edit without a known model price is an InvalidRequestError, unsent."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, budget=5.0) as phota:
        with pytest.raises(InvalidRequestError, match="edit/nb2") as caught:
            await phota.edit("brighter", images=[jpeg_bytes()])
    assert caught.value.field == "prices"
    assert posts(emu, "/edit") == []


async def test_supplied_prices_cap_edits(emu: PhotaEmulator) -> None:
    """With prices supplied, edits are reserved and settled like any paid call."""
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, budget=0.20, prices=EMULATOR_EDIT_PRICES
    ) as phota:
        await phota.edit("brighter", images=[jpeg_bytes()], n=2)
        with pytest.raises(BudgetExceededError):
            await phota.edit("brighter", images=[jpeg_bytes()], n=1)
        assert phota.spend is not None
        assert phota.spend.spent == 0.16 == emu.net_spent()


async def test_unknown_price_allowed_is_sent_and_counted(emu: PhotaEmulator) -> None:
    """unknown_price="allow" sends a call without a known price and counts it as unpriced."""
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, budget=5.0, unknown_price="allow"
    ) as phota:
        await phota.generate("a fox")
        spend = phota.spend
    assert spend is not None
    assert spend.endpoints["generate"].unpriced == 1
    assert "1 unpriced" in spend.line()


async def test_no_budget_means_no_ledger_and_no_price_check(phota: PhotaClient) -> None:
    """Without a budget an edit of unknown price is sent and spend is None."""
    await phota.edit("brighter", images=[jpeg_bytes()])
    assert phota.spend is None


async def test_training_is_reserved_and_refused_past_the_budget(emu: PhotaEmulator) -> None:
    """A $2.90 training is refused under a $2.00 budget; a $1.49 fast one is spent."""
    urls = [emu.store_file(jpeg_bytes(), "image/jpeg") for _ in range(10)]
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, budget=2.0) as phota:
        with pytest.raises(BudgetExceededError):
            await phota.profiles.create(urls, tier="standard")
        await phota.profiles.create(urls[:5], tier="fast")
        assert phota.spend is not None
        assert phota.spend.endpoints["training"].spent == 1.49
    assert posts(emu, "/profiles/add")
    assert len(posts(emu, "/profiles/add")) == 1


async def test_a_shared_budget_caps_two_clients(emu: PhotaEmulator) -> None:
    """One Budget shared by two clients caps their sum."""
    budget = Budget(0.30)
    async with (
        PhotaClient(api_key=emu.api_key, base_url=emu.base_url, budget=budget) as a,
        PhotaClient(api_key=emu.api_key, base_url=emu.base_url, budget=budget) as b,
    ):
        await a.enhance(jpeg_bytes())
        await b.enhance(jpeg_bytes())
        with pytest.raises(BudgetExceededError):
            await a.enhance(jpeg_bytes())
    assert budget.spend.spent == 0.24


async def test_concurrent_calls_never_pass_the_budget(emu: PhotaEmulator) -> None:
    """Fifty concurrent enhances (each reserved at $0.15) under a $1.20 budget: exactly eight
    are sent."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, budget=1.2) as phota:
        outcomes = await asyncio.gather(
            *(phota.enhance(jpeg_bytes()) for _ in range(50)), return_exceptions=True
        )
    refused = [o for o in outcomes if isinstance(o, BudgetExceededError)]
    assert (len(refused), len(posts(emu, "/enhance"))) == (42, 8)
    assert emu.net_spent() == 0.96


async def test_recognised_subjects_never_let_concurrent_enhances_pass_the_budget() -> None:
    """Five concurrent unnamed enhances, each charged $0.15 for a recognised subject, stay
    within a $0.50 budget: three are sent, two refused unsent."""
    arrived: list[None] = []
    answer = asyncio.Event()

    async def enhance(request: web.Request) -> web.Response:
        await request.read()
        arrived.append(None)
        await answer.wait()  # every call is in flight (or refused) before any settles
        body = {
            "known_subjects": {"counts": {"prof_me": 1}},  # charged at the +identity price
            "images": [b64(jpeg_bytes())],
            "download_urls": [],
        }
        return web.json_response(body, headers={"X-Request-Id": f"req_{len(arrived)}"})

    app = web.Application(client_max_size=10**7)
    app.router.add_post("/enhance", enhance)
    async with (
        local_server(app) as origin,
        PhotaClient(api_key="k", base_url=origin, budget=0.50) as phota,
    ):
        calls = [asyncio.create_task(phota.enhance(jpeg_bytes())) for _ in range(5)]
        await until(
            lambda: len(arrived) + sum(c.done() for c in calls) == len(calls), "all admitted"
        )
        answer.set()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        spend = phota.spend
    assert spend is not None
    refused = [o for o in outcomes if isinstance(o, BudgetExceededError)]
    assert (len(arrived), len(refused)) == (3, 2)
    assert (spend.spent, spend.pending) == (0.45, 0.0)
    assert spend.spent <= spend.limit


async def test_a_cancelled_unsent_call_releases_its_reservation(emu: PhotaEmulator) -> None:
    """A call cancelled while it waits for a concurrency slot gives its reservation back."""
    emu.latency = 0.3
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, budget=1.0, max_concurrency=1
    ) as phota:
        first = asyncio.create_task(phota.enhance(jpeg_bytes()))
        second = asyncio.create_task(phota.enhance(jpeg_bytes()))
        await until(lambda: (s := phota.spend) is not None and s.pending == 0.30, "two reserved")
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await first
        assert phota.spend is not None
        assert (phota.spend.spent, phota.spend.pending) == (0.12, 0.0)


def test_budget_and_prices_are_checked() -> None:
    """A negative budget, a negative price or an unknown unknown_price mode is refused."""
    with pytest.raises(InvalidRequestError):
        Budget(-1)
    with pytest.raises(InvalidRequestError):
        Prices().extended({"edit/nb2": -0.1})
    with pytest.raises(InvalidRequestError):
        PhotaClient(api_key="k", unknown_price="maybe")  # type: ignore[arg-type]


def test_prices_pick_the_most_specific_key() -> None:
    """edit/<model>/<resolution> wins over edit/<model>; identity prices enhance at $0.15."""
    prices = Prices().extended({"edit/flux-2": 0.06, "edit/flux-2/2K": 0.09})
    assert prices.call("edit", {"base_model": "flux-2", "resolution": "2K"}) == 0.09
    assert prices.call("edit", {"base_model": "flux-2", "num_output_images": 2}) == 0.12
    assert prices.call("enhance", {"prompt": "keep [[abc]] sharp"}) == 0.15
    assert prices.call("generate", {"base_model": "reve"}) is None


def test_an_uncapped_budget_tracks_only() -> None:
    """Budget(math.inf) has no limit in JSON and never refuses."""
    spend = Budget(math.inf).spend
    assert spend.to_json()["limit"] is None
    assert "budget" not in spend.line()


def test_budget_exceeded_error_pickles() -> None:
    """BudgetExceededError keeps its figures through pickling."""
    error = BudgetExceededError("enhance", estimate=0.12, spent=1, reserved=0.5, limit=1.5)
    again = pickle.loads(pickle.dumps(error))
    assert (again.spent, again.reserved, again.limit, again.estimate) == (1, 0.5, 1.5, 0.12)
    assert str(again) == str(error)


# -- batch runs -------------------------------------------------------------------------------


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Ten small distinct JPEG files."""
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in range(10):
        path = folder / f"p{i}.jpg"
        path.write_bytes(jpeg_bytes(i, (48, 48)))
        paths.append(path)
    return paths


async def test_a_run_budget_stops_the_batch_with_items_not_started(
    phota: PhotaClient, emu: PhotaEmulator, photos: list[Path]
) -> None:
    """A $0.30 run of ten enhances does two, reports eight as not started, and fails none."""
    run = phota.enhance_many(photos, concurrency=1, budget=0.30)
    items = await run.collect()
    assert [i.status for i in items].count("done") == 2
    assert [i.status for i in items].count("not started") == 8
    summary = run.summary
    assert (summary.done, summary.failed, summary.not_started) == (2, 0, 8)
    assert "8 not started (budget reached)" in summary.line()
    assert summary.spend is not None
    assert summary.spend.spent == 0.24 == emu.net_spent()


async def test_a_rerun_with_a_larger_budget_resumes_without_paying_twice(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """A manifest run stopped by its budget resumes with a larger one: each photo paid once."""
    where = {"out_dir": tmp_path / "out", "manifest": tmp_path / "run.manifest"}
    first = fast.enhance_many(photos, concurrency=4, budget=0.60, **where)
    await first.collect()
    assert first.summary.done == 4
    assert first.summary.not_started == 6
    second = fast.enhance_many(photos, concurrency=4, budget=5.0, **where)
    items = await second.collect()
    assert all(item.ok for item in items)
    assert (second.summary.skipped, second.summary.done) == (4, 6)
    assert len(emu.charges()) == 10
    assert emu.net_spent() == 1.20


async def test_a_run_budget_counts_within_the_client_budget(
    emu: PhotaEmulator, photos: list[Path]
) -> None:
    """A run's generous budget is still held to the client's smaller one."""
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, budget=0.30) as phota:
        run = phota.enhance_many(photos, concurrency=1, budget=10.0)
        await run.collect()
        assert run.summary.done == 2
        assert phota.spend is not None
        assert phota.spend.spent == 0.24


async def test_estimate_counts_what_the_manifest_finished_and_sends_nothing(
    fast: PhotaClient, emu: PhotaEmulator, photos: list[Path], tmp_path: Path
) -> None:
    """estimate() prices only the photos not done per the manifest, with no request sent."""
    where = {"out_dir": tmp_path / "out", "manifest": tmp_path / "run.manifest"}
    await fast.enhance_many(photos[:3], **where).collect()
    sent = len(emu.requests)
    async with fast.enhance_many(photos, **where) as run:
        estimate = await run.estimate()
    assert (estimate.items, estimate.done, estimate.to_run) == (10, 3, 7)
    assert (estimate.per_item, estimate.total) == (0.12, 0.84)
    assert len(emu.requests) == sent


async def test_estimate_without_a_manifest_prices_every_item(
    phota: PhotaClient, photos: list[Path]
) -> None:
    """Two outputs an item: ten items estimate to $2.40."""
    async with phota.enhance_many(photos, n=2) as run:
        estimate = await run.estimate()
    assert (estimate.to_run, estimate.total) == (10, 2.4)


async def test_estimate_of_an_unpriced_edit_is_unknown(
    phota: PhotaClient, photos: list[Path]
) -> None:
    """An edit batch without a model price estimates to None, and says why."""
    async with phota.edit_many("brighter", photos) as run:
        estimate = await run.estimate()
    assert estimate.total is None
    assert "price unknown" in estimate.line()


async def test_retries_of_one_call_hold_one_reservation(
    capped: PhotaClient, emu: PhotaEmulator
) -> None:
    """A call answered 429 twice, then retried to success, reserves and spends its price once."""
    emu.add_fault("/enhance", status=429, times=2)
    await capped.enhance(jpeg_bytes())
    assert len(posts(emu, "/enhance")) == 3
    spend = capped.spend
    assert spend is not None
    assert (spend.spent, spend.pending, spend.endpoints["enhance"].calls) == (0.12, 0.0, 1)


async def test_a_custom_map_call_is_capped_by_the_run_budget(
    phota: PhotaClient, emu: PhotaEmulator, photos: list[Path]
) -> None:
    """map(budget=...) caps the paid calls a custom function makes; the rest are not started."""

    async def brighten(path: Path) -> ImageResult:
        return await phota.enhance(path, prompt="brighter")

    run = phota.map(brighten, photos, concurrency=1, budget=0.40)
    await run.collect()
    assert (run.summary.done, run.summary.failed, run.summary.not_started) == (3, 0, 7)
    assert len(posts(emu, "/enhance")) == 3


async def test_a_run_budget_does_not_outlive_its_run(
    phota: PhotaClient, photos: list[Path]
) -> None:
    """After a capped run, the same client's own calls are not held to the run's budget."""
    await phota.enhance_many(photos[:2], budget=0.15).collect()
    await phota.enhance(jpeg_bytes())
    assert phota.spend is None


async def test_a_model_price_does_not_stand_for_a_larger_resolution(emu: PhotaEmulator) -> None:
    """With only edit/nb2 priced, a 4K edit is refused unsent, naming the key edit/nb2/4K."""
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, budget=1.0, prices=EMULATOR_EDIT_PRICES
    ) as phota:
        with pytest.raises(InvalidRequestError, match="edit/nb2/4K"):
            await phota.edit("brighter", images=[jpeg_bytes()], resolution="4K")
    assert posts(emu, "/edit") == []


async def test_resolution_prices_keep_4k_edits_within_the_budget(emu: PhotaEmulator) -> None:
    """With edit/nb2/4K priced as the emulator charges it, 4K edits stop at the budget."""
    prices = {**EMULATOR_EDIT_PRICES, "edit/nb2/4K": 0.16}
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, budget=0.40, prices=prices
    ) as phota:
        await phota.edit("brighter", images=[jpeg_bytes()], resolution="4K")
        await phota.edit("brighter", images=[jpeg_bytes()], resolution="4K")
        with pytest.raises(BudgetExceededError):
            await phota.edit("brighter", images=[jpeg_bytes()], resolution="4K")
        assert phota.spend.spent == emu.net_spent() == 0.32


async def test_a_submit_cancelled_before_it_was_sent_releases_its_reservation(
    emu: PhotaEmulator,
) -> None:
    """A job submit cancelled while it waits for a concurrency slot gives its reservation back."""
    emu.latency = 0.3
    async with PhotaClient(
        api_key=emu.api_key, base_url=emu.base_url, budget=1.0, max_concurrency=1
    ) as phota:
        first = asyncio.create_task(phota.enhance(jpeg_bytes()))
        second = asyncio.create_task(phota.jobs.submit_enhance(jpeg_bytes()))
        await until(lambda: (s := phota.spend) is not None and s.pending == 0.30, "two reserved")
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await first
        assert phota.spend is not None
        assert (phota.spend.spent, phota.spend.pending) == (0.12, 0.0)
    assert emu.net_spent() == 0.12


async def test_a_submit_cancelled_after_an_unprocessed_attempt_releases_its_reservation(
    emu: PhotaEmulator,
) -> None:
    """A job submit cancelled while it waits to retry a 503 gives its reservation back."""
    emu.add_fault("/enhance", status=503, retry_after=30)
    with phota_async.set_testing(False):  # the retry's Retry-After wait is real here
        async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, budget=1.0) as phota:
            task = asyncio.create_task(phota.jobs.submit_enhance(jpeg_bytes()))
            await until(lambda: len(posts(emu, "/enhance")) == 1, "the 503 answered")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert phota.spend is not None
            assert (phota.spend.spent, phota.spend.pending) == (0.0, 0.0)
    assert emu.net_spent() == 0.0


async def test_a_submit_cancelled_after_a_lost_answer_keeps_its_reservation(
    emu: PhotaEmulator,
) -> None:
    """A job submit cancelled while it waits to retry a lost answer keeps its price pending."""
    emu.add_fault("/enhance", drop="after")
    emu.add_fault("/enhance", status=503, retry_after=30)
    with phota_async.set_testing(False):  # the retry's Retry-After wait is real here
        async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, budget=1.0) as phota:
            task = asyncio.create_task(phota.jobs.submit_enhance(jpeg_bytes()))
            await until(lambda: len(posts(emu, "/enhance")) == 2, "the retry answered 503")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert phota.spend is not None
            assert phota.spend.pending == 0.15  # reserved at the worst case, kept
    assert emu.net_spent() == 0.12


def test_the_published_prices_are_the_emulators() -> None:
    """Training per tier, and enhance and remix with and without identity, cost what the
    emulator (the stand-in for the service, following phota-api.md) charges."""
    from phota_async._budget import DEFAULT_PRICES
    from phota_async.testing._billing import PER_IMAGE_PRICES, TRAINING_PRICES

    assert {f"training/{tier}": p for tier, p in TRAINING_PRICES.items()} == {
        k: v for k, v in DEFAULT_PRICES.items() if k.startswith("training/")
    }
    for endpoint, (plain, identity) in PER_IMAGE_PRICES.items():
        assert (DEFAULT_PRICES[endpoint], DEFAULT_PRICES[f"{endpoint}+identity"]) == (
            plain,
            identity,
        )
