"""The one cattrs converter, configured by policy rather than per class.

Policies:
- attrs models are structured by a hook factory that renames fields from their ``wire``
  metadata (``Profile.id`` is read from ``profile_id``) and ignores unknown keys, so a newer
  server adding fields never breaks an older SDK;
- scalars are strict: a number where a string belongs is an error, not ``"5"``;
- datetimes are RFC 3339 strings;
- every failure becomes one readable ``ResponseValidationError`` via ``cattrs.transform_error``.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from .errors import ResponseValidationError

T = TypeVar("T")


def _strict(kind: type[T]) -> Callable[[Any, type[T]], T]:
    def structure(value: Any, _: type[T]) -> T:
        if type(value) is not kind and not (kind is float and type(value) is int):
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value  # type: ignore[return-value]

    return structure


def _is_optional_scalar(kind: Any) -> bool:
    args = typing.get_args(kind)
    return (
        typing.get_origin(kind) in (typing.Union, types.UnionType)
        and len(args) == 2
        and type(None) in args
        and all(arg in _SCALARS for arg in args if arg is not type(None))
    )


def _strict_optional(kind: Any) -> Callable[[Any, Any], Any]:
    """``str | None`` and the like, checked in one call (cattrs would dispatch per value)."""
    (inner,) = (arg for arg in typing.get_args(kind) if arg is not type(None))
    strict = _strict(inner)

    def structure(value: Any, _: Any) -> Any:
        if value is None or type(value) is inner:
            return value
        return strict(value, inner)

    return structure


def _datetime(value: Any, _: type[datetime]) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an RFC 3339 string, got {type(value).__name__}")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _attrs_hook_factory(cls: type[Any]) -> Callable[[Any, Any], Any]:
    renames = {
        f.name: override(rename=f.metadata["wire"])
        for f in attrs.fields(cls)
        if "wire" in f.metadata
    }
    hidden = {f.name: override(omit=True) for f in attrs.fields(cls) if f.name.startswith("_")}
    return make_dict_structure_fn(cls, converter, **renames, **hidden)  # type: ignore[arg-type]


converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)
_SCALARS: tuple[type[Any], ...] = (str, int, float, bool)
for _kind in _SCALARS:
    converter.register_structure_hook(_kind, _strict(_kind))
converter.register_structure_hook_factory(_is_optional_scalar, _strict_optional)
converter.register_structure_hook(datetime, _datetime)
converter.register_structure_hook_factory(attrs.has, _attrs_hook_factory)


@functools.cache
def _hook(cls: Any) -> Callable[[Any, Any], Any]:
    """The structuring function for ``cls``, looked up once."""
    return converter.get_structure_hook(cls)


def structure(data: Any, cls: type[T], what: str) -> T:
    """Structure JSON ``data`` into ``cls``; raise ``ResponseValidationError`` naming ``what``."""
    if not isinstance(data, dict):
        raise ResponseValidationError(f"{what}: expected a JSON object, got {type(data).__name__}")
    try:
        hook: Any = cls
        return cast(T, _hook(hook)(data, cls))
    except Exception as exc:  # cattrs raises ExceptionGroups of many kinds
        messages = (
            cattrs.transform_error(exc, path=what)
            if isinstance(exc, cattrs.BaseValidationError)
            else [f"{what}: {exc}"]
        )
        raise ResponseValidationError("; ".join(messages)) from exc
