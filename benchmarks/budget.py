"""The spend guard's cost per paid call, in process (no network): what a budget adds to a call.

    python benchmarks/budget.py            # 200,000 calls per figure
    python benchmarks/budget.py --quick    # 2,000: checks that the script still works

Figures are CPU time per call (``time.process_time``), medians of 5 rounds:

- ``no budget``: the guard's check on a client without a budget (one context-variable read
  and a ``None`` test), the price of the feature for everyone else;
- ``client budget``: reserve an enhance's price, then settle it to the answer;
- ``run + client budget``: the same inside a batch run (two budgets, one lock);
- ``refused``: a call refused with ``BudgetExceededError`` (nothing sent).

They are compared with the SDK's own CPU per call (about 107 us for ``profiles.get`` in
``README.md``'s table, more for a paid call): the guard is a rounding error on it.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

from phota_async._budget import RUN_BUDGET, Budget, Guard, Prices
from phota_async.errors import BudgetExceededError
from phota_async.models import ResultBody

FIELDS = {"num_output_images": 1, "output_format": "jpg"}
ANSWER = ResultBody(download_urls=["https://x/1"])
SDK_CALL_US = 107.0


def per_call(step: Callable[[], None], count: int, rounds: int = 5) -> float:
    """Median CPU microseconds per ``step()``."""
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(count):
            step()
        samples.append((time.process_time() - started) / count * 1e6)
    return statistics.median(samples)


Row = tuple[str, float, str, bool, str]
# Targets, in CPU microseconds per call: without a budget the guard must cost nothing anyone
# could see (one context-variable read and a None test); with one, a few integer additions
# under a lock and a settlement, a small share of the SDK's ~107 us.
TARGETS_US = {"no budget": 1.0, "client budget": 15.0, "run + client budget": 15.0, "refused": 50.0}


def figures(count: int) -> dict[str, float]:
    """Median CPU microseconds per call of each figure, over ``count`` calls a round."""
    bare = Guard(None, Prices(), "refuse")
    capped = Guard(Budget(1e12), Prices(), "refuse")
    empty = Guard(Budget(0.0), Prices(), "refuse")

    def no_budget() -> None:
        bare.reserve_call("/enhance", FIELDS)

    def client_budget() -> None:
        reservation = capped.reserve_call("/enhance", FIELDS)
        assert reservation is not None
        reservation.settle_result(ANSWER)

    def refused() -> None:
        with contextlib.suppress(BudgetExceededError):
            empty.reserve_call("/enhance", FIELDS)

    found = {
        "no budget": per_call(no_budget, count),
        "client budget": per_call(client_budget, count),
        "refused": per_call(refused, count),
    }
    token = RUN_BUDGET.set(Budget(1e12, name="run"))
    try:
        found["run + client budget"] = per_call(client_budget, count)
    finally:
        RUN_BUDGET.reset(token)
    return found


def bench_budget(quick: bool) -> list[Row]:
    """The figures as rows of ``run.py``'s table (``--only budget``)."""
    found = figures(2_000 if quick else 200_000)
    return [
        (
            f"spend guard CPU per call: {name}",
            us,
            f"<= {TARGETS_US[name]:g} us",
            us <= TARGETS_US[name],
            " us",
        )
        for name, us in found.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts")
    count = 2_000 if parser.parse_args().quick else 200_000
    found = figures(count)
    print(f"spend guard, CPU per call ({count:,} calls, median of 5 rounds)")
    for name, us in found.items():
        print(f"  {name:<22} {us:7.2f} us   {us / SDK_CALL_US:6.1%} of an SDK call")


if __name__ == "__main__":
    main()
