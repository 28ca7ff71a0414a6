"""A ``Budget`` shared by two clients is never passed when calls are cut short: 200 concurrent
workers of enhances, remixes and edits (every model at every resolution it supports), sync and
as jobs, under lost answers, 500/503/504/429 and failed jobs, with random deadlines, random
cancellations, and keyed resubmits after an unknown outcome; a batch run with its own budget
plays inside the shared one. The emulator's ledger is the truth: its charges never pass the
limit, and the shared ledger brackets them (settled <= charged <= settled + pending)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from phota_async import Budget, PhotaClient, PollPolicy
from phota_async.errors import BudgetExceededError, OutcomeUnknownError, PhotaError
from phota_async.testing import PhotaEmulator
from phota_async.testing._billing import MODEL_PRICES, RESOLUTION_FACTORS
from tests.helpers import jpeg_bytes
from tests.reliability.test_budget_never_exceeded import FAULTS, running_net_peak

WORKERS = 200
LIMIT = 7.00
RUN_LIMIT = 0.60
RESOLUTIONS = {
    "nb2": ["1K", "2K", "4K"],
    "gpt-image-2": ["1K", "2K", "4K"],
    "qwen-image-2": ["1K", "2K"],
    "flux-2": ["1K", "2K"],
    "reve": ["1K"],
}
# Every edit price, as the emulator charges it: the model's 1K price times the resolution's.
EDIT_PRICES = {
    f"edit/{model}/{res}": round(MODEL_PRICES[model] * RESOLUTION_FACTORS[res], 6)
    for model, resolutions in RESOLUTIONS.items()
    for res in resolutions
}


def net_charged(ledger: list[dict[str, Any]], endpoint: str) -> float:
    """Charges minus refunds of one endpoint."""
    signed = (e["amount"] if e["kind"] == "charge" else -e["amount"] for e in ledger
              if e.get("endpoint") == endpoint)  # fmt: skip
    return round(sum(signed), 6)


async def one_call(phota: PhotaClient, rng: random.Random, pid: str) -> str:
    """A random paid call, perhaps under a short deadline or cancelled at a random moment; a
    job submit whose outcome is unknown is submitted again with its key."""
    options: dict[str, Any] = {"n": rng.choice([1, 2])}
    kind = rng.choice(["enhance", "remix", "edit", "submit"])
    if kind != "edit" and rng.random() < 0.3:
        options["profile_ids"] = [pid]
    if rng.random() < 0.2:
        options["timeout"] = rng.choice([0.005, 0.02, 0.1])
    cut = rng.uniform(0.0, 0.08) if rng.random() < 0.25 else None
    try:
        async with asyncio.timeout(cut):
            if kind == "enhance":
                await phota.enhance(jpeg_bytes(), via_job=rng.random() < 0.5, **options)
            elif kind == "remix":
                await phota.remix(jpeg_bytes(), reference=jpeg_bytes(), **options)
            elif kind == "edit":
                model = rng.choice(list(RESOLUTIONS))
                resolution = rng.choice(RESOLUTIONS[model])
                await phota.edit(
                    "brighter",
                    images=[jpeg_bytes()],
                    base_model=model,
                    resolution=resolution,
                    **options,
                )
            else:
                options.pop("timeout", None)
                try:
                    job = await phota.jobs.submit_enhance(jpeg_bytes(), **options)
                except OutcomeUnknownError as lost:
                    job = await phota.jobs.submit_enhance(
                        jpeg_bytes(), client_request_id=lost.client_request_id, **options
                    )
                await job.wait(timeout=30)
    except BudgetExceededError:
        return "refused"
    except TimeoutError:
        return "cut"
    except PhotaError:
        return "error"
    return "ok"


async def worker(phota: PhotaClient, rng: random.Random, pid: str) -> list[str]:
    """Up to four calls in a row, stopping at the first refusal."""
    outcomes: list[str] = []
    for _ in range(4):
        outcomes.append(await one_call(phota, rng, pid))
        if outcomes[-1] == "refused":
            break
    return outcomes


@pytest.mark.parametrize("seed", [1, 2])
async def test_a_shared_budget_holds_under_deadlines_cancellations_and_resubmits(
    threaded_emu: PhotaEmulator, seed: int
) -> None:
    """Two clients sharing a Budget, and a run budget inside it, never let the emulator's
    charges pass the limit, whatever is cut short."""
    rng = random.Random(seed)
    emu = threaded_emu
    emu.latency = (0.0, 0.03)
    pid = emu.add_profile()
    for _ in range(6 * WORKERS):
        fault = rng.choice(FAULTS)
        for path in ("/enhance", "/remix", "/edit"):
            emu.add_fault(path, **fault)
    emu.fail_next_jobs(15)
    shared = Budget(LIMIT, name="shared")
    common: dict[str, Any] = {
        "api_key": emu.api_key,
        "base_url": emu.base_url,
        "budget": shared,
        "prices": EDIT_PRICES,
        "max_concurrency": 100,
        "poll": PollPolicy().scaled(0.01),
    }
    async with PhotaClient(**common) as first, PhotaClient(**common) as second:
        run = first.enhance_many([jpeg_bytes(i) for i in range(12)], budget=RUN_LIMIT)

        async def batch() -> list[str]:
            async with run:
                return [item.status async for item in run]

        results = await asyncio.gather(
            batch(),
            *(worker(first if i % 2 else second, rng, pid) for i in range(WORKERS)),
        )
        spend = shared.spend
    outcomes = [outcome for result in results[1:] for outcome in result]
    assert outcomes.count("refused") > 0  # the budget was reached
    assert outcomes.count("cut") > 0  # some calls were cut short
    # The mix reached more than one endpoint (which ones get paid before the limit depends on
    # the machine's timing: every call kind is behind a queue of faults).
    assert len({"enhance", "remix", "edit"} & set(spend.endpoints)) >= 2
    charged = emu.net_spent()
    assert running_net_peak(emu.ledger) <= LIMIT
    assert spend.spent <= charged + 1e-6
    assert charged <= round(spend.spent + spend.pending, 6) + 1e-6
    assert spend.spent + spend.pending <= LIMIT + 1e-6
    for endpoint, share in spend.endpoints.items():  # the prices agree, endpoint by endpoint
        net = net_charged(emu.ledger, endpoint)
        assert share.spent <= net + 1e-6
        assert net <= round(share.spent + share.pending, 6) + 1e-6
    run_spend = run.summary.spend
    assert run_spend is not None
    assert run_spend.spent + run_spend.pending <= RUN_LIMIT + 1e-6
