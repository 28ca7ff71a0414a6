"""The governor's shared pace and budget pool, and the budget hooks it relies on (no Ray)."""

from __future__ import annotations

import pytest

from phota_async import Budget, InvalidRequestError
from phota_async.ray import Governor


async def test_leases_never_pass_the_limit() -> None:
    """However many leases are asked for, what is out never passes the budget; what is given
    back can be leased again."""
    governor = Governor(budget=1.0)
    granted = [await governor.lease(0.36) for _ in range(5)]
    assert granted == [0.36, 0.36, 0.28, 0.0, 0.0]
    await governor.give_back(0.2)
    assert await governor.lease(1.0) == pytest.approx(0.2)
    stats = await governor.stats()
    assert stats["outstanding"] == pytest.approx(1.0)
    assert stats["leased"] - stats["returned"] <= 1.0


async def test_an_uncapped_governor_grants_every_lease() -> None:
    """Without a budget, a lease is granted in full."""
    assert await Governor().lease(123.0) == 123.0


async def test_a_reported_throttle_paces_every_later_lease() -> None:
    """Once an actor reports a throttled answer, leases carry at most a quarter of a second of
    the shared pace instead of all that was asked for."""
    governor = Governor()
    granted, epoch = await governor.permits(8)
    assert granted == 8
    granted, _ = await governor.permits(8, ok=7, throttled=1, pause=0.0, epoch=epoch)
    stats = await governor.stats()
    assert stats["throttled"] == 1
    assert stats["decreases"] == 1
    assert stats["rate"] is not None
    assert granted <= max(1, int(stats["rate"] * 0.25) + 1) < 8


def test_a_budget_spends_a_lease_and_gives_back_the_rest() -> None:
    """``Budget.extend`` raises the limit by a lease; ``give_back`` lowers it to what is spent
    and pending and returns the difference."""
    budget = Budget(0.0, name="leased")
    budget.extend(0.48)
    assert budget.spend.left == pytest.approx(0.48)
    assert budget.give_back() == pytest.approx(0.48)
    assert budget.spend.left == 0.0
    with pytest.raises(InvalidRequestError):
        Budget(float("inf")).extend(1.0)


def test_importing_the_module_does_not_import_ray() -> None:
    """phota_async and phota_async.ray import without loading Ray (it loads on first use)."""
    import subprocess
    import sys

    script = (
        "import sys, phota_async, phota_async.ray\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')]\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
