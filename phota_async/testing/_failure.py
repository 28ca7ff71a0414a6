"""``APIFailure``: an error answer in Phota's shape, raised anywhere in the emulated service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class APIFailure(Exception):
    """An error answer in Phota's shape, raised anywhere inside a handler or a service step.

    ``detail`` is a human string, or for a 422 the FastAPI list of ``{loc, msg, type}``.
    """

    def __init__(
        self, status: int, code: str, detail: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def invalid(field: str, msg: str, kind: str) -> APIFailure:
    """A 422 naming one body field, as FastAPI would answer it."""
    return APIFailure(422, "VALIDATION_ERROR", [{"loc": ["body", field], "msg": msg, "type": kind}])
