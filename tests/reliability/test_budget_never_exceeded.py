"""The budget is never exceeded: 200 concurrent workers of paid calls (synchronous and jobs) against an
emulator that loses answers after charging, answers 500, 503, 504 and 429, fails jobs, and
answers late. The emulator's ledger is the truth: what it charged never passes the limit, and
the SDK's ledger brackets it (settled <= charged <= settled + pending)."""

from __future__ import annotations

import asyncio
import random

import pytest

from phota_async import PhotaClient, PollPolicy
from phota_async.errors import BudgetExceededError, PhotaError
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes

CALLS = 200
LIMIT = 9.00

# What the next request to a studio endpoint suffers (``delay=0``: a clean answer). Lost
# answers after charging are what make reservations stay pending.
FAULTS = [
    *[{"delay": 0.0}] * 10,
    {"drop": "after"},
    {"drop": "before"},
    {"status": 500},
    {"status": 503},
    {"status": 504},
    {"status": 429, "retry_after": 0.0},
    {"status": 429},
    {"truncate": True},
]


def running_net_peak(ledger: list[dict]) -> float:
    """The highest balance of charges minus refunds the account ever reached."""
    net = peak = 0.0
    for entry in ledger:
        net += entry["amount"] if entry["kind"] == "charge" else -entry["amount"]
        peak = max(peak, net)
    return round(peak, 6)


async def one_call(phota: PhotaClient, rng: random.Random, pid: str) -> str:
    """A random paid call: enhance or remix, one or two images, with or without identity,
    synchronous or as a job awaited here."""
    options: dict = {"n": rng.choice([1, 2])}
    if rng.random() < 0.3:
        options["profile_ids"] = [pid]
    via_job = rng.random() < 0.5
    try:
        if rng.random() < 0.5:
            await phota.enhance(jpeg_bytes(), via_job=via_job, **options)
        else:
            await phota.remix(jpeg_bytes(), reference=jpeg_bytes(), via_job=via_job, **options)
    except BudgetExceededError:
        return "refused"
    except PhotaError:
        return "error"
    return "ok"


async def worker(phota: PhotaClient, rng: random.Random, pid: str) -> list[str]:
    """Up to four calls in a row, stopping at the first refusal: the budget is contested over
    time, while earlier calls settle, are refunded or stay pending."""
    outcomes: list[str] = []
    for _ in range(4):
        outcomes.append(await one_call(phota, rng, pid))
        if outcomes[-1] == "refused":
            break
    return outcomes


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_two_hundred_concurrent_calls_never_pass_the_budget(
    threaded_emu: PhotaEmulator, seed: int
) -> None:
    """Under random faults and latency, the emulator's charges never pass the client's limit."""
    rng = random.Random(seed)
    emu = threaded_emu
    emu.latency = (0.0, 0.02)
    pid = emu.add_profile()
    for _ in range(6 * CALLS):
        fault = rng.choice(FAULTS)
        emu.add_fault("/enhance", **fault)
        emu.add_fault("/remix", **fault)
    emu.fail_next_jobs(15)
    async with PhotaClient(
        api_key=emu.api_key,
        base_url=emu.base_url,
        budget=LIMIT,
        max_concurrency=200,
        poll=PollPolicy().scaled(0.01),
    ) as phota:
        results = await asyncio.gather(*(worker(phota, rng, pid) for _ in range(CALLS)))
        spend = phota.spend
    outcomes = [outcome for result in results for outcome in result]
    assert spend is not None
    assert outcomes.count("refused") > 0  # the budget was reached
    assert outcomes.count("ok") > 0
    assert set(spend.endpoints) == {"enhance", "remix"}
    charged = emu.net_spent()
    assert running_net_peak(emu.ledger) <= LIMIT
    assert spend.spent <= charged + 1e-6
    assert charged <= round(spend.spent + spend.pending, 6) + 1e-6
    assert spend.spent + spend.pending <= LIMIT + 1e-6
