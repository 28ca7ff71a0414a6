"""A local, faithful emulator of the Phota API, for tests, examples, benchmarks and demos.

``PhotaEmulator`` serves every endpoint of the API on loopback with real images, a prepaid
balance and ledger, asynchronous jobs with signed callbacks, and scriptable faults. Installing
``phota_async`` also registers a pytest plugin that provides the ``phota_emulator`` fixture.

Needs the ``emulator`` extra (Pillow): ``pip install 'phota-async[emulator]'``.
"""

from ._emulator import PhotaEmulator
from ._faults import Fault

__all__ = ["Fault", "PhotaEmulator"]
