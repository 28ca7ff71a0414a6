"""Every public member of the async client and its results has a blocking twin, so a method
added to the async side cannot be forgotten by the facade."""

from __future__ import annotations

import pytest

import phota_async
from phota_async import _batch, _jobs, _profiles, models, sync

# What the facade names differently (or adds), and what it deliberately leaves out.
ASYNC_ONLY = {
    "PhotaClient": {"aclose"},  # close()
    "ImageResult": {"aclose"},  # close()
    "BatchRun": {"aclose"},  # close()
    "Job": {"result", "from_json"},  # the raw body (wait() gives the result); jobs.resume()
}
# (``aio`` is an instance attribute, like the async run's ``summary``: classes do not list them.)
SYNC_ONLY = {
    "PhotaClient": {"aio", "close", "closed", "wrap"},
    "ImageResult": {"close"},
    "BatchRun": {"close", "summary"},
}


def public(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


@pytest.mark.parametrize(
    ("name", "aio", "blocking"),
    [
        ("ImageResult", models.ImageResult, sync.ImageResult),
        ("Job", models.Job, sync.Job),
        ("BatchRun", _batch.BatchRun, sync.BatchRun),
        ("Jobs", _jobs.Jobs, sync.Jobs),
        ("Profiles", _profiles.Profiles, sync.Profiles),
    ],
)
def test_every_public_member_of_a_class_has_a_blocking_twin(
    name: str, aio: type, blocking: type
) -> None:
    """Each public method and property of an async class exists on its blocking twin."""
    assert public(aio) - public(blocking) == ASYNC_ONLY.get(name, set())
    assert public(blocking) - public(aio) == SYNC_ONLY.get(name, set())


def test_every_public_member_of_the_client_has_a_blocking_twin() -> None:
    """The facade has each public method, property and attribute of a live async client."""
    with sync.PhotaClient(api_key="k" * 20, base_url="http://127.0.0.1:9") as phota:
        assert isinstance(phota.aio, phota_async.PhotaClient)
        assert public(phota.aio) - public(phota) == ASYNC_ONLY["PhotaClient"]
        assert public(phota) - public(phota.aio) == SYNC_ONLY["PhotaClient"]
