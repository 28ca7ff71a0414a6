"""A local, faithful emulator of the Phota API, for tests, examples, benchmarks and demos.

``PhotaEmulator`` serves every endpoint of the API on loopback with real images, a prepaid
balance and ledger, asynchronous jobs with signed callbacks, and scriptable faults. Its sense of
time is a ``Clock``: real time by default, or a ``ManualClock`` that a test moves with
``advance()`` so that a 20-minute training takes no time at all. Installing ``phota_async``
also registers a pytest plugin that provides the ``phota_emulator`` fixture.

Needs the ``emulator`` extra (Pillow): ``pip install 'phota-async[emulator]'``.

Layout: ``_state`` (the account: records, ``_billing``, logs), ``_service`` (what happens
over time), ``_render`` and ``_images`` (Pillow work in threads), ``_outbound`` (downloads and
callbacks), ``_routes`` and ``_middleware`` (the HTTP app), ``_clock``, ``_faults``,
``_schema`` and ``_rules`` (422 and 400 checks), ``_ratelimit`` (the account's token
buckets), ``_store`` (the state folder: SQLite and files, for restarts).
"""

from ._clock import Clock, ManualClock, MonotonicClock
from ._emulator import PhotaEmulator
from ._faults import Fault
from ._ratelimit import RateLimit
from ._store import StateDirError

__all__ = [
    "Clock",
    "Fault",
    "ManualClock",
    "MonotonicClock",
    "PhotaEmulator",
    "RateLimit",
    "StateDirError",
]
