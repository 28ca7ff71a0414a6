"""Hostile-server suites share the SDK fixtures (retry waits off)."""

from tests.sdk.conftest import _no_backoff

__all__ = ["_no_backoff"]
