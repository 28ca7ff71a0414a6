"""Contract: every schema rule answers 422 with pydantic v2's own error type, msg and ctx.

The real service is a FastAPI app on pydantic v2 in lax mode; clients that branch on
``detail[i]["type"]`` must see the same names from the emulator. The expectations below were
taken from pydantic-core's error table (and checked against pydantic 2 itself).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.conftest import b64, jpeg_bytes
from tests.emulator.helpers import P

IMAGE = b64(jpeg_bytes())
RATIOS = "'auto', '1:1', '3:4', '4:3', '9:16' or '16:9'"

# (endpoint, body, expected first detail entry)
RULES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "edit",
        {"prompt": "x", "images": []},
        {
            "type": "too_short",
            "loc": ["body", "images"],
            "msg": "List should have at least 1 item after validation, not 0",
            "ctx": {"field_type": "List", "min_length": 1, "actual_length": 0},
        },
    ),
    (
        "edit",
        {"prompt": "x", "images": ["a"] * 11},
        {
            "type": "too_long",
            "loc": ["body", "images"],
            "msg": "List should have at most 10 items after validation, not 11",
            "ctx": {"field_type": "List", "max_length": 10, "actual_length": 11},
        },
    ),
    (
        "generate",
        {"prompt": "x", "num_output_images": 0},
        {
            "type": "greater_than_equal",
            "loc": ["body", "num_output_images"],
            "msg": "Input should be greater than or equal to 1",
            "input": 0,
            "ctx": {"ge": 1},
        },
    ),
    (
        "generate",
        {"prompt": "x", "num_output_images": 5},
        {
            "type": "less_than_equal",
            "loc": ["body", "num_output_images"],
            "msg": "Input should be less than or equal to 4",
            "input": 5,
            "ctx": {"le": 4},
        },
    ),
    (
        "generate",
        {"prompt": "x", "num_output_images": "two"},
        {
            "type": "int_parsing",
            "loc": ["body", "num_output_images"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "input": "two",
        },
    ),
    (
        "generate",
        {"prompt": "x", "num_output_images": [2]},
        {
            "type": "int_type",
            "loc": ["body", "num_output_images"],
            "msg": "Input should be a valid integer",
        },
    ),
    (
        "generate",
        {"prompt": "x", "num_output_images": 2.5},
        {
            "type": "int_from_float",
            "loc": ["body", "num_output_images"],
            "msg": "Input should be a valid integer, got a number with a fractional part",
            "input": 2.5,
        },
    ),
    (
        "generate",
        {"prompt": "x", "output_format": "gif"},
        {
            "type": "literal_error",
            "loc": ["body", "output_format"],
            "msg": "Input should be 'png' or 'jpg'",
            "input": "gif",
            "ctx": {"expected": "'png' or 'jpg'"},
        },
    ),
    (
        "generate",
        {"prompt": "x", "aspect_ratio": "2:1"},
        {
            "type": "literal_error",
            "loc": ["body", "aspect_ratio"],
            "msg": f"Input should be {RATIOS}",
            "input": "2:1",
            "ctx": {"expected": RATIOS},
        },
    ),
    (
        "enhance",
        {},
        {"type": "missing", "loc": ["body", "image"], "msg": "Field required"},
    ),
    (
        "generate",
        {"prompt": 5},
        {
            "type": "string_type",
            "loc": ["body", "prompt"],
            "msg": "Input should be a valid string",
            "input": 5,
        },
    ),
    (
        "generate",
        {"prompt": ""},
        {
            "type": "string_too_short",
            "loc": ["body", "prompt"],
            "msg": "String should have at least 1 character",
            "input": "",
            "ctx": {"min_length": 1},
        },
    ),
    (
        "profiles/add",
        {"image_urls": ["https://h/a.jpg"], "tag": "t" * 129},
        {
            "type": "string_too_long",
            "loc": ["body", "tag"],
            "msg": "String should have at most 128 characters",
            "input": "t" * 129,
            "ctx": {"max_length": 128},
        },
    ),
    (
        "enhance",
        {"image": IMAGE, "profile_ids": ["no spaces"]},
        {
            "type": "string_pattern_mismatch",
            "loc": ["body", "profile_ids", 0],
            "msg": "String should match pattern '^[A-Za-z0-9_-]{1,64}$'",
            "input": "no spaces",
            "ctx": {"pattern": "^[A-Za-z0-9_-]{1,64}$"},
        },
    ),
    (
        "edit",
        {"prompt": "x", "images": "not a list"},
        {
            "type": "list_type",
            "loc": ["body", "images"],
            "msg": "Input should be a valid list",
            "input": "not a list",
        },
    ),
    (
        "edit",
        {"prompt": "x", "images": [IMAGE, 7]},
        {
            "type": "string_type",
            "loc": ["body", "images", 1],
            "msg": "Input should be a valid string",
            "input": 7,
        },
    ),
    (
        "generate",
        {"prompt": "x", "async": "maybe", "response_mode": "urls"},
        {
            "type": "bool_parsing",
            "loc": ["body", "async"],
            "msg": "Input should be a valid boolean, unable to interpret input",
            "input": "maybe",
        },
    ),
    (
        "generate",
        {"prompt": "x", "async": {}},
        {"type": "bool_type", "loc": ["body", "async"], "msg": "Input should be a valid boolean"},
    ),
    (
        "generate",
        {"prompt": "x", "profile_ids": ["abc"]},
        {
            "type": "extra_forbidden",
            "loc": ["body", "profile_ids"],
            "msg": "Extra inputs are not permitted",
        },
    ),
    (
        "generate",
        {"prompt": "x", "async": True},
        {
            "type": "value_error",
            "loc": ["body", "response_mode"],
            "msg": "Value error, async requires response_mode 'urls'",
        },
    ),
    (
        "generate",
        ["not", "an", "object"],
        {
            "type": "model_attributes_type",
            "loc": ["body"],
            "msg": "Input should be a valid dictionary or object to extract fields from",
        },
    ),
]


@pytest.mark.parametrize(
    ("endpoint", "body", "expected"), RULES, ids=[rule[2]["type"] for rule in RULES]
)
async def test_each_rule_answers_pydantic_s_error(
    http: aiohttp.ClientSession, endpoint: str, body: Any, expected: dict[str, Any]
) -> None:
    """A body breaking one rule answers 422 whose first detail is pydantic's entry for it."""
    async with http.post(f"{P}/{endpoint}", json=body) as resp:
        answer = await resp.json()
    assert resp.status == 422, answer
    assert answer["detail"][0] == expected


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_output_images", "2"), ("num_output_images", 2.0), ("num_output_images", " 2 ")],
)
async def test_lax_integers_are_coerced_as_pydantic_does(
    http: aiohttp.ClientSession, field: str, value: object
) -> None:
    """An integer sent as a numeric string or a whole float is accepted and used as that number."""
    async with http.post(f"{P}/generate", json={"prompt": "x", field: value}) as resp:
        answer = await resp.json()
    assert resp.status == 200, answer
    assert len(answer["images"]) == 2


async def test_every_bad_item_of_a_list_is_reported(http: aiohttp.ClientSession) -> None:
    """Each invalid element of a list gets its own entry, located by its index."""
    body = {"prompt": "x", "images": [1, IMAGE, 3]}
    async with http.post(f"{P}/edit", json=body) as resp:
        answer = await resp.json()
    assert [d["loc"] for d in answer["detail"]] == [["body", "images", 0], ["body", "images", 2]]


async def test_a_required_field_sent_as_null_is_of_the_wrong_type(
    http: aiohttp.ClientSession,
) -> None:
    """``"prompt": null`` on edit is pydantic's string_type with input null, not missing."""
    async with http.post(f"{P}/edit", json={"prompt": None, "images": [IMAGE]}) as resp:
        answer = await resp.json()
    assert resp.status == 422, answer
    assert answer["detail"] == [
        {
            "type": "string_type",
            "loc": ["body", "prompt"],
            "msg": "Input should be a valid string",
            "input": None,
        }
    ]


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("num_output_images", "\uff12", "int_parsing"),
        ("num_output_images", "2.", "int_parsing"),
        ("num_output_images", "9" * 5000, "int_parsing_size"),
        ("async", "true ", "bool_parsing"),
    ],
)
async def test_strings_pydantic_refuses_are_refused(
    http: aiohttp.ClientSession, field: str, value: str, kind: str
) -> None:
    """Full-width digits, a bare trailing dot, 5000 digits or a padded boolean answer 422."""
    async with http.post(f"{P}/generate", json={"prompt": "x", field: value}) as resp:
        answer = await resp.json()
    assert resp.status == 422, answer
    assert answer["detail"][0]["type"] == kind


async def test_an_integer_string_with_underscores_is_read_as_pydantic_does(
    http: aiohttp.ClientSession,
) -> None:
    """``"1_0"`` is ten, as pydantic reads it: over the limit of 4, not unparsable."""
    async with http.post(f"{P}/generate", json={"prompt": "x", "num_output_images": "1_0"}) as r:
        answer = await r.json()
    assert r.status == 422, answer
    assert answer["detail"][0]["type"] == "less_than_equal"
