"""Request validation for the emulator, producing FastAPI-shaped 422 details.

Unknown fields are ignored (old clients send ``pro_mode``); each known field is checked for type,
range and enum membership the way a pydantic model would.
"""

from __future__ import annotations

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
Check = Callable[[Any], "tuple[str, str] | None"]


def _err(field: str, msg: str, kind: str) -> Detail:
    return {"loc": ["body", field], "msg": msg, "type": kind}


def _string(value: Any) -> tuple[str, str] | None:
    return None if isinstance(value, str) else ("Input should be a valid string", "string_type")


def _non_empty_string(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, str):
        return ("Input should be a valid string", "string_type")
    if not value.strip():
        return ("String should have at least 1 character", "string_too_short")
    return None


def _bool(value: Any) -> tuple[str, str] | None:
    return None if isinstance(value, bool) else ("Input should be a valid boolean", "bool_type")


def _int_range(lo: int, hi: int) -> Check:
    def check(value: Any) -> tuple[str, str] | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return ("Input should be a valid integer", "int_type")
        if not lo <= value <= hi:
            return (f"Input should be between {lo} and {hi}", "less_than_equal")
        return None

    return check


def _enum(*choices: str) -> Check:
    expected = ", ".join(repr(c) for c in choices)

    def check(value: Any) -> tuple[str, str] | None:
        if value not in choices:
            return (f"Input should be {expected}", "enum")
        return None

    return check


def _str_list(lo: int, hi: int, item: Check = _non_empty_string) -> Check:
    def check(value: Any) -> tuple[str, str] | None:
        if not isinstance(value, list):
            return ("Input should be a valid list", "list_type")
        if not lo <= len(value) <= hi:
            return (f"List should have between {lo} and {hi} items", "too_long")
        for element in value:
            problem = item(element)
            if problem is not None:
                return problem
        return None

    return check


def _profile_id(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        return ("String should match pattern '^[A-Za-z0-9_-]{1,64}$'", "string_pattern_mismatch")
    return None


def _tag(value: Any) -> tuple[str, str] | None:
    if not isinstance(value, str):
        return ("Input should be a valid string", "string_type")
    if not 1 <= len(value) <= 128:
        return ("String should have between 1 and 128 characters", "string_too_long")
    return None


COMMON: dict[str, Check] = {
    "num_output_images": _int_range(1, 4),
    "output_format": _enum("png", "jpg"),
    "response_mode": _enum("bytes", "urls"),
    "async": _bool,
    "callback_url": _non_empty_string,
    "client_request_id": _non_empty_string,
}
MODEL_FIELDS: dict[str, Check] = {
    "aspect_ratio": _enum(*ASPECT_RATIOS),
    "resolution": _enum(*RESOLUTIONS),
    "base_model": _enum(*BASE_MODELS),
    "quality": _enum(*QUALITIES),
}
PROFILE_IDS: dict[str, Check] = {"profile_ids": _str_list(0, 64, _profile_id)}

# endpoint -> (required fields, every known field with its check)
ENDPOINTS: dict[str, tuple[tuple[str, ...], dict[str, Check]]] = {
    "edit": (
        ("prompt", "images"),
        {
            "prompt": _non_empty_string,
            "images": _str_list(1, 10),
            **PROFILE_IDS,
            **MODEL_FIELDS,
            **COMMON,
        },
    ),
    "generate": (("prompt",), {"prompt": _non_empty_string, **MODEL_FIELDS, **COMMON}),
    "enhance": (
        ("image",),
        {"image": _non_empty_string, "prompt": _string, **PROFILE_IDS, **COMMON},
    ),
    "remix": (
        ("input_image", "reference_image"),
        {
            "input_image": _non_empty_string,
            "reference_image": _non_empty_string,
            "prompt": _string,
            **PROFILE_IDS,
            **COMMON,
        },
    ),
    "profiles/add": (
        ("image_urls",),
        {
            "image_urls": _str_list(1, 200),
            "training_tier": _enum(*TIERS),
            "tag": _tag,
        },
    ),
}


def validate(endpoint: str, body: Any) -> list[Detail]:
    """Check a request body for ``endpoint``; return the 422 details (empty when valid).

    ``null`` counts as absent for optional fields, as pydantic's ``Optional`` does.
    """
    if not isinstance(body, Mapping):
        return [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
    required, checks = ENDPOINTS[endpoint]
    details = [_err(name, "Field required", "missing") for name in required if name not in body]
    for name, check in checks.items():
        value = body.get(name)
        if value is None:
            if name in required and name in body:
                details.append(_err(name, "Field required", "missing"))
            continue
        problem = check(value)
        if problem is not None:
            details.append(_err(name, *problem))
    if endpoint == "generate" and body.get("profile_ids"):
        details.append(
            _err(
                "profile_ids",
                "generate takes no profile_ids: name subjects as [[profile_id]] in the prompt",
                "extra_forbidden",
            )
        )
    if body.get("async") is True and body.get("response_mode", "bytes") != "urls":
        details.append(_err("response_mode", "async requires response_mode 'urls'", "value_error"))
    if body.get("callback_url") is not None and body.get("async") is not True:
        details.append(_err("callback_url", "callback_url requires async: true", "value_error"))
    return details


def prompt_tokens(prompt: str) -> list[str]:
    """Every ``[[...]]`` token in a prompt, in order of appearance."""
    return TOKEN_PATTERN.findall(prompt)
