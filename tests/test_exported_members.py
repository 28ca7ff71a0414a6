"""The public surface: ``__all__`` lists exactly the public names, sorted, each importable."""

from __future__ import annotations

import phota_async
import phota_async.errors
import phota_async.testing


def test_all_is_sorted_and_complete() -> None:
    """Every public name in the package namespace is in __all__, and __all__ is sorted."""
    public = {
        name
        for name, value in vars(phota_async).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("phota_async")
    }
    assert public <= set(phota_async.__all__)
    assert sorted(phota_async.__all__) == phota_async.__all__


def test_every_exported_name_exists() -> None:
    """Each name in __all__ is importable from the package."""
    for name in phota_async.__all__:
        assert hasattr(phota_async, name), name


def test_fixed_error_names_are_exported() -> None:
    """The error names fixed by the design are importable from phota_async.errors."""
    for name in (
        "PhotaError",
        "APIError",
        "InvalidRequestError",
        "RateLimitError",
        "OutcomeUnknownError",
        "WaitTimeoutError",
        "ProfileTrainingError",
        "JobFailedError",
    ):
        assert issubclass(getattr(phota_async.errors, name), phota_async.errors.PhotaError)


def test_testing_exports() -> None:
    """phota_async.testing exports the emulator, its faults and its clocks."""
    assert phota_async.testing.__all__ == [
        "Clock",
        "Fault",
        "ManualClock",
        "MonotonicClock",
        "PhotaEmulator",
    ]
