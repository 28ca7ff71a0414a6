"""The public surface: ``__all__`` lists exactly the public names, sorted, each importable."""

from __future__ import annotations

import pydoc
from collections.abc import Iterable

import pytest

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
    """phota_async.testing exports the emulator, its faults, its clocks and its rate limit."""
    assert phota_async.testing.__all__ == [
        "Clock",
        "Fault",
        "ManualClock",
        "MonotonicClock",
        "PhotaEmulator",
        "RateLimit",
        "StateDirError",
    ]


DOCUMENTED = [
    "APIError",
    "AiohttpTransport",
    "AspectRatio",
    "BatchItem",
    "BatchProgress",
    "BatchRun",
    "BatchSummary",
    "Budget",
    "BudgetExceededError",
    "Cadence",
    "EditOptions",
    "EndpointSpend",
    "EnhanceOptions",
    "Estimate",
    "GenerateOptions",
    "ImageCount",
    "ImageInput",
    "ImageResult",
    "InvalidRequestError",
    "Job",
    "JobFailedError",
    "JobStatus",
    "Jobs",
    "LaneStats",
    "Manifest",
    "MockTransport",
    "Model",
    "OutcomeUnknownError",
    "OutputFormat",
    "OutputImage",
    "PILImage",
    "PhotaClient",
    "PhotaError",
    "PollPolicy",
    "PresignedPutUploader",
    "Prices",
    "Profile",
    "ProfileIds",
    "ProfileStatus",
    "ProfileTrainingError",
    "Profiles",
    "Quality",
    "RateLimitError",
    "RemixOptions",
    "Resolution",
    "ResponseMode",
    "ResponseTooLargeError",
    "RetryPolicy",
    "Spend",
    "ThrottleStats",
    "TrainingTier",
    "Transport",
    "Uploader",
    "WaitTimeoutError",
    "__version__",
    "emulator_uploader",
    "set_testing",
]


def _public(names: Iterable[str]) -> set[str]:
    return {name for name in names if not name.startswith("_")}


def test_all_is_exactly_the_documented_list() -> None:
    """__all__ names the documented public surface, no more and no less."""
    assert phota_async.__all__ == DOCUMENTED


def test_exported_names_belong_to_the_package() -> None:
    """Every exported class and function says it comes from phota_async, not a private module."""
    for name in phota_async.__all__:
        value = getattr(phota_async, name)
        if isinstance(value, type) or callable(value):
            assert value.__module__ == "phota_async", name
    assert repr(phota_async.PhotaClient) == "<class 'phota_async.PhotaClient'>"


def test_the_version_is_the_package_version() -> None:
    """phota_async.__version__ is the one the User-Agent reports."""
    from phota_async import _protocol

    assert f"phota_async/{phota_async.__version__} " in _protocol.USER_AGENT


def test_the_client_shows_only_public_api() -> None:
    """A client's public attributes are the documented façade: no send path, poller or job
    plumbing."""
    client = phota_async.PhotaClient(api_key="k", base_url="https://api.test")
    assert _public(dir(client)) == {
        "aclose", "base_url", "edit", "edit_many", "enhance", "enhance_many", "generate",
        "jobs", "map", "profiles", "remix", "remix_many", "spend", "throttle", "timeout",
        "webhook_secret",
    }  # fmt: skip
    assert _public(dir(client.jobs)) == {
        "get", "notify", "resume", "submit_edit", "submit_enhance", "submit_generate",
        "submit_remix", "wait",
    }  # fmt: skip
    assert _public(dir(client.profiles)) == {
        "create", "delete", "get", "list", "picture", "wait_ready",
    }  # fmt: skip


def test_help_on_the_client_names_no_plumbing() -> None:
    """help(PhotaClient) shows the class as phota_async.PhotaClient and none of the internal
    members that used to leak."""
    text = pydoc.render_doc(phota_async.PhotaClient, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    assert "class PhotaClient in module phota_async\n" in text
    for name in ("run(", "put_file", "image_result", "poller", "poll_policy", "_session"):
        assert name not in text, name
    jobs = pydoc.render_doc(phota_async.Jobs, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
    for name in ("refresh_job", "wait_job", "submit(", "StudioCall"):
        assert name not in jobs, name


def test_a_sync_with_on_the_client_says_to_use_async_with() -> None:
    """`with PhotaClient()` raises a TypeError that names `async with`."""
    client = phota_async.PhotaClient(api_key="k", base_url="https://api.test")
    with pytest.raises(TypeError, match=r"use `async with PhotaClient\(\)"), client:
        pass  # pragma: no cover


def test_a_sync_with_on_a_result_says_to_use_async_with() -> None:
    """`with result` on an ImageResult raises a TypeError that names `async with`."""
    result = phota_async.ImageResult(outputs=(), known_subjects={})
    with pytest.raises(TypeError, match="use `async with"), result:
        pass  # pragma: no cover


def test_a_sync_with_on_a_batch_run_says_to_use_async_with() -> None:
    """`with phota.map(...)` raises a TypeError that names `async with`."""
    client = phota_async.PhotaClient(api_key="k", base_url="https://api.test")
    run = client.map(client.enhance, [])
    with pytest.raises(TypeError, match="use `async with"), run:
        pass  # pragma: no cover
