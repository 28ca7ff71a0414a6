"""Request validation for the emulator, producing FastAPI-shaped 422 details.

The real service is a FastAPI app whose request models are pydantic v2 models in lax mode, so
each rule here answers with pydantic's own error ``type``, ``msg`` and ``ctx`` (from
pydantic-core's error table), and coerces what lax mode coerces (``"2"`` or ``2.0`` for an
integer, ``"true"`` or ``1`` for a boolean).

| rule                                    | ``type``                  | ``ctx``                         |
|-----------------------------------------|---------------------------|---------------------------------|
| required field absent                   | ``missing``               |                                 |
| required field null                     | the field's ``*_type``    |                                 |
| not a string                            | ``string_type``           |                                 |
| empty string where one is needed        | ``string_too_short``      | ``min_length``                  |
| tag over 128 characters                 | ``string_too_long``       | ``max_length``                  |
| profile id not ``[A-Za-z0-9_-]{1,64}``  | ``string_pattern_mismatch`` | ``pattern``                   |
| not an integer                          | ``int_type``              |                                 |
| a string that is not an integer         | ``int_parsing``           |                                 |
| a float with a fraction                 | ``int_from_float``        |                                 |
| ``num_output_images`` under 1           | ``greater_than_equal``    | ``ge``                          |
| ``num_output_images`` over 4            | ``less_than_equal``       | ``le``                          |
| not a boolean (``async``)               | ``bool_type`` / ``bool_parsing`` |                          |
| not one of the allowed words            | ``literal_error``         | ``expected``                    |
| not a list                              | ``list_type``             |                                 |
| too few items (``images: []``)          | ``too_short``             | ``field_type min_length actual_length`` |
| too many items                          | ``too_long``              | ``field_type max_length actual_length`` |
| ``profile_ids`` on generate             | ``extra_forbidden``       |                                 |
| async/callback combinations             | ``value_error``           |                                 |
| body not a JSON object                  | ``model_attributes_type`` |                                 |

Emulator decisions: unknown fields are ignored, not refused (old clients send ``pro_mode``);
``null`` counts as absent for optional fields, as pydantic's ``Optional`` does; ``input`` echoes
the offending value when it is a scalar, and is left out for lists, objects and missing fields
(FastAPI would echo whole bodies of base64 images); item errors are located by index
(``["body", "images", 2]``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
TOKEN_PATTERN = re.compile(r"\[\[([^\[\]]*)\]\]")

ASPECT_RATIOS = ("auto", "1:1", "3:4", "4:3", "9:16", "16:9")
RESOLUTIONS = ("1K", "2K", "4K")
BASE_MODELS = ("nb2", "gpt-image-2", "qwen-image-2", "flux-2", "reve")
QUALITIES = ("auto", "low", "medium", "high")
MODEL_RESOLUTIONS = {
    "nb2": ("1K", "2K", "4K"),
    "gpt-image-2": ("1K", "2K", "4K"),
    "qwen-image-2": ("1K", "2K"),
    "flux-2": ("1K", "2K"),
    "reve": ("1K",),
}
TIERS = ("standard", "fast")
TIER_COUNTS = {"standard": (10, 50), "fast": (5, 10)}

Detail = dict[str, Any]
Loc = tuple[str | int, ...]
# A check takes the value and its location; it returns the value (coerced the way pydantic's
# lax mode would) and the errors found, empty when the value is valid.
Check = Callable[[Any, Loc], "tuple[Any, list[Detail]]"]

_TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
_INT_DIGITS = 4300  # pydantic's (and Python's int()) limit on an integer string's digits
_INT_TEXT = re.compile(r"([+-]?)([0-9]+(?:_[0-9]+)*)(?:\.0+)?", re.ASCII)


_ABSENT: Any = object()  # no ``input`` to echo (a missing field)


def error(loc: Loc, kind: str, msg: str, value: Any = _ABSENT, **ctx: Any) -> Detail:
    """One 422 detail entry in FastAPI's shape (pydantic's ``type``, ``msg`` and ``ctx``)."""
    detail: Detail = {"type": kind, "loc": list(loc), "msg": msg}
    if value is None or isinstance(value, str | int | float | bool):
        detail["input"] = value
    if ctx:
        detail["ctx"] = ctx
    return detail


def _plural(n: int) -> str:
    return "" if n == 1 else "s"


def _string(min_length: int = 0, max_length: int | None = None) -> Check:
    def check(value: Any, loc: Loc) -> tuple[Any, list[Detail]]:
        if not isinstance(value, str):
            return value, [error(loc, "string_type", "Input should be a valid string", value)]
        if len(value) < min_length:
            msg = f"String should have at least {min_length} character{_plural(min_length)}"
            return value, [error(loc, "string_too_short", msg, value, min_length=min_length)]
        if max_length is not None and len(value) > max_length:
            msg = f"String should have at most {max_length} character{_plural(max_length)}"
            return value, [error(loc, "string_too_long", msg, value, max_length=max_length)]
        return value, []

    return check


def _profile_id(value: Any, loc: Loc) -> tuple[Any, list[Detail]]:
    value, problems = _string()(value, loc)
    if not problems and not ID_PATTERN.fullmatch(value):
        pattern = "^" + ID_PATTERN.pattern + "$"
        msg = f"String should match pattern '{pattern}'"
        problems = [error(loc, "string_pattern_mismatch", msg, value, pattern=pattern)]
    return value, problems


def _as_int(value: Any, loc: Loc) -> tuple[Any, list[Detail]]:
    """pydantic's lax ``int``: JSON ints, bools, whole floats and integer strings."""
    if isinstance(value, bool):
        return int(value), []
    if isinstance(value, int):
        return value, []
    if isinstance(value, float):
        if not math.isfinite(value):
            return value, [error(loc, "finite_number", "Input should be a finite number", value)]
        if value != int(value):
            msg = "Input should be a valid integer, got a number with a fractional part"
            return value, [error(loc, "int_from_float", msg, value)]
        return int(value), []
    if isinstance(value, str):
        # ASCII digits, single underscores between them, and an optional ".0...": what
        # pydantic-core parses (it refuses "2." and "\uff12", which \d and int() would take).
        number = _INT_TEXT.fullmatch(value.strip())
        if number:
            sign, digits = number.group(1), number.group(2).replace("_", "").lstrip("0") or "0"
            if len(digits) <= _INT_DIGITS:
                return int(sign + digits), []
            if "_" not in number.group(2):
                msg = "Unable to parse input string as an integer, exceeded maximum size"
                return value, [error(loc, "int_parsing_size", msg, value)]
        msg = "Input should be a valid integer, unable to parse string as an integer"
        return value, [error(loc, "int_parsing", msg, value)]
    return value, [error(loc, "int_type", "Input should be a valid integer", value)]


def _int_range(ge: int, le: int) -> Check:
    def check(value: Any, loc: Loc) -> tuple[Any, list[Detail]]:
        value, problems = _as_int(value, loc)
        if problems:
            return value, problems
        if value < ge:
            msg = f"Input should be greater than or equal to {ge}"
            return value, [error(loc, "greater_than_equal", msg, value, ge=ge)]
        if value > le:
            msg = f"Input should be less than or equal to {le}"
            return value, [error(loc, "less_than_equal", msg, value, le=le)]
        return value, []

    return check


def _bool(value: Any, loc: Loc) -> tuple[Any, list[Detail]]:
    """pydantic's lax ``bool``: true/false, 0/1 and the usual yes/no words."""
    if isinstance(value, bool):
        return value, []
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value), []
    if isinstance(value, str) and value.lower() in _TRUE | _FALSE:  # no stripping, as pydantic
        return value.lower() in _TRUE, []
    if isinstance(value, str | int | float):
        msg = "Input should be a valid boolean, unable to interpret input"
        return value, [error(loc, "bool_parsing", msg, value)]
    return value, [error(loc, "bool_type", "Input should be a valid boolean", value)]


def _literal(*choices: str) -> Check:
    quoted = [repr(c) for c in choices]
    expected = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]

    def check(value: Any, loc: Loc) -> tuple[Any, list[Detail]]:
        if isinstance(value, str) and value in choices:
            return value, []
        msg = f"Input should be {expected}"
        return value, [error(loc, "literal_error", msg, value, expected=expected)]

    return check


def _list(min_length: int, max_length: int, item: Check) -> Check:
    def check(value: Any, loc: Loc) -> tuple[Any, list[Detail]]:
        if not isinstance(value, list):
            return value, [error(loc, "list_type", "Input should be a valid list", value)]
        n = len(value)
        if n > max_length:
            msg = f"List should have at most {max_length} item{_plural(max_length)} after validation, not {n}"
            return value, [
                error(
                    loc, "too_long", msg, field_type="List", max_length=max_length, actual_length=n
                )
            ]
        problems: list[Detail] = []
        items = []
        for i, element in enumerate(value):
            coerced, found = item(element, (*loc, i))
            items.append(coerced)
            problems.extend(found)
        if problems:
            return value, problems
        if n < min_length:
            msg = f"List should have at least {min_length} item{_plural(min_length)} after validation, not {n}"
            return value, [
                error(
                    loc, "too_short", msg, field_type="List", min_length=min_length, actual_length=n
                )
            ]
        return items, []

    return check


_TEXT = _string(min_length=1)
COMMON: dict[str, Check] = {
    "num_output_images": _int_range(1, 4),
    "output_format": _literal("png", "jpg"),
    "response_mode": _literal("bytes", "urls"),
    "async": _bool,
    "callback_url": _TEXT,
    "client_request_id": _TEXT,
}
MODEL_FIELDS: dict[str, Check] = {
    "aspect_ratio": _literal(*ASPECT_RATIOS),
    "resolution": _literal(*RESOLUTIONS),
    "base_model": _literal(*BASE_MODELS),
    "quality": _literal(*QUALITIES),
}
PROFILE_IDS: dict[str, Check] = {"profile_ids": _list(0, 64, _profile_id)}

# endpoint -> (required fields, every known field with its check)
ENDPOINTS: dict[str, tuple[tuple[str, ...], dict[str, Check]]] = {
    "edit": (
        ("prompt", "images"),
        {
            "prompt": _TEXT,
            "images": _list(1, 10, _TEXT),
            **PROFILE_IDS,
            **MODEL_FIELDS,
            **COMMON,
        },
    ),
    "generate": (("prompt",), {"prompt": _TEXT, **MODEL_FIELDS, **COMMON}),
    "enhance": (
        ("image",),
        {"image": _TEXT, "prompt": _string(), **PROFILE_IDS, **COMMON},
    ),
    "remix": (
        ("input_image", "reference_image"),
        {
            "input_image": _TEXT,
            "reference_image": _TEXT,
            "prompt": _string(),
            **PROFILE_IDS,
            **COMMON,
        },
    ),
    "profiles/add": (
        ("image_urls",),
        {
            "image_urls": _list(1, 200, _TEXT),
            "training_tier": _literal(*TIERS),
            "tag": _string(min_length=1, max_length=128),
        },
    ),
}


def validate(endpoint: str, body: Any) -> list[Detail]:
    """Check a request body for ``endpoint``; return the 422 details (empty when valid).

    A valid body is normalised in place the way pydantic's lax mode would (``"2"`` becomes
    ``2``), so that the service reads the same values the real one would.
    """
    if not isinstance(body, Mapping):
        msg = "Input should be a valid dictionary or object to extract fields from"
        return [error(("body",), "model_attributes_type", msg, body)]
    required, checks = ENDPOINTS[endpoint]
    details: list[Detail] = []
    coerced: dict[str, Any] = {}
    for name, check in checks.items():
        value = body.get(name)
        if value is None and name not in required:
            continue
        if name not in body:
            details.append(error(("body", name), "missing", "Field required"))
            continue
        value, problems = check(value, ("body", name))
        details.extend(problems)
        coerced[name] = value
    if endpoint == "generate" and body.get("profile_ids"):
        details.append(
            error(
                ("body", "profile_ids"),
                "extra_forbidden",
                "Extra inputs are not permitted",
                body["profile_ids"],
            )
        )
    if details:
        return details
    if coerced.get("async") is True and coerced.get("response_mode", "bytes") != "urls":
        details.append(
            error(
                ("body", "response_mode"),
                "value_error",
                "Value error, async requires response_mode 'urls'",
            )
        )
    if coerced.get("callback_url") is not None and coerced.get("async") is not True:
        details.append(
            error(
                ("body", "callback_url"),
                "value_error",
                "Value error, callback_url requires async: true",
            )
        )
    if not details and isinstance(body, dict):
        body.update(coerced)
    return details


def prompt_tokens(prompt: str) -> list[str]:
    """Every ``[[...]]`` token in a prompt, in order of appearance."""
    return TOKEN_PATTERN.findall(prompt)
