"""pytest plugin: the ``phota_emulator`` fixture, registered through the ``pytest11`` entry point.

The emulator runs in a background thread with its own event loop, so the same fixture serves
synchronous tests, pytest-asyncio tests (strict or auto mode) and anyio tests alike, whatever
loop they use. The plugin itself needs no async plugin: it imports only pytest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from . import PhotaEmulator


@pytest.fixture
def phota_emulator(request: pytest.FixtureRequest) -> Iterator[PhotaEmulator]:
    """A running Phota emulator on a free loopback port, stopped after the test.

    Options come from the ``phota_emulator`` marker, for instance
    ``@pytest.mark.phota_emulator(training_seconds=0.2, balance=5.0)``, or
    ``@pytest.mark.phota_emulator(latency=0.3)`` for a server that holds every answer 0.3 s
    after charging (``latency=(0.2, 0.4)`` draws each delay from a range). Outputs are capped
    at 256 px unless ``max_output_side`` says otherwise. ``clock="manual"`` gives the test a
    fresh ``ManualClock`` of its own (``phota_emulator.clock.advance(seconds)`` moves it);
    a clock object is passed on as it is. ``rate_limit=20`` (or a ``RateLimit``, or a dict
    such as ``{"rate": 20, "retry_after": False}``) limits the account to 20 requests a second.
    Retention options pass through the same way: ``max_log=100_000`` keeps a longer request
    log, ``output_ttl=60`` expires outputs after a minute.
    """
    from . import ManualClock, PhotaEmulator

    marker = request.node.get_closest_marker("phota_emulator")
    options = dict(marker.kwargs) if marker is not None else {}
    options.setdefault("max_output_side", 256)
    if options.get("clock") == "manual":
        options["clock"] = ManualClock()
    with PhotaEmulator(**options) as emulator:
        yield emulator


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``phota_emulator`` marker, so that ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers", "phota_emulator(**options): options for the phota_emulator fixture"
    )
