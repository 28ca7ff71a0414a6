"""Parameter validation: every mistake is an InvalidRequestError naming the option, raised before
anything is read or sent and before any batch starts."""

from __future__ import annotations

import ast
import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import pytest

from phota_async import MockTransport, Model, PhotaClient
from phota_async import _validate as validate
from phota_async.errors import InvalidRequestError
from tests.conftest import jpeg_bytes

PROTOCOL = Path(__file__).parents[2] / "phota_async" / "_protocol.py"


@pytest.fixture
async def idle() -> AsyncIterator[PhotaClient]:
    """A client whose transport fails the test if any request is sent."""
    transport = MockTransport(lambda r: pytest.fail(f"a request was sent: {r}"))
    async with PhotaClient(api_key="k", base_url="https://api.test", transport=transport) as c:
        yield c


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_bytes())
    return path


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n": 0}, "n"),
        ({"n": 5}, "n"),
        ({"n": True}, "n"),
        ({"output_format": "gif"}, "output_format"),
        ({"response_mode": "stream"}, "response_mode"),
        ({"aspect_ratio": "2:1"}, "aspect_ratio"),
        ({"resolution": "8K"}, "resolution"),
        ({"base_model": "dall-e"}, "base_model"),
        ({"quality": "high"}, "quality"),
        ({"base_model": "reve", "resolution": "2K"}, "resolution"),
        ({"base_model": "flux-2", "resolution": "4K"}, "resolution"),
        ({"profile_ids": ["prof_a"]}, "profile_ids"),
        ({"prompt": "see [[../etc/passwd]]"}, "prompt"),
        ({"prompt": ""}, "prompt"),
    ],
)
def test_generate_refuses_bad_values_naming_the_field(kwargs: dict[str, Any], field: str) -> None:
    """Every invalid generate parameter raises InvalidRequestError naming it."""
    options = dict(kwargs)
    prompt = options.pop("prompt", "a cat")
    with pytest.raises(InvalidRequestError) as info:
        validate.generate_call(prompt, options, "generate")
    assert info.value.field.startswith(field)


def test_quality_with_gpt_image_2_is_accepted() -> None:
    """quality passes with gpt-image-2."""
    fields = validate.model_fields("1:1", "4K", "gpt-image-2", "high")
    assert fields["quality"] == "high"


def test_generate_accepts_profile_ids_none_as_old_clients_send_it() -> None:
    """profile_ids=None on generate is left out of the body rather than refused."""
    call = validate.generate_call("a cat", {"profile_ids": None}, "generate")
    assert "profile_ids" not in call.fields


@pytest.mark.parametrize("count", [0, 11])
def test_edit_image_count_is_checked(count: int) -> None:
    """edit takes 1-10 images."""
    with pytest.raises(InvalidRequestError, match="images"):
        validate.check_edit_images(["https://x/a.jpg"] * count)


def test_training_fields_check_tier_counts() -> None:
    """The fast tier needs 5-10 photos."""
    with pytest.raises(InvalidRequestError, match="fast tier needs 5-10"):
        validate.training_fields(["https://x/a.jpg"] * 4, "fast", None)


def test_valid_values_come_from_the_public_literal_types() -> None:
    """The models refused at run time are exactly those the Model type leaves out."""
    assert get_args(Model) == validate.BASE_MODELS


async def test_misspelt_option_is_named_with_its_close_match(
    idle: PhotaClient, photo: Path
) -> None:
    """A misspelt option names itself and the option it resembles; nothing is sent."""
    with pytest.raises(InvalidRequestError, match=r"'promt'.*did you mean 'prompt'") as info:
        await idle.enhance(photo, promt="brighter")  # type: ignore[call-arg]
    assert info.value.field == "promt"


async def test_unknown_option_lists_the_valid_ones(idle: PhotaClient, photo: Path) -> None:
    """An option unlike any other is refused with the list of the endpoint's options."""
    with pytest.raises(InvalidRequestError, match=r"options are n, output_format, profile_ids"):
        await idle.enhance(photo, colour="blue")  # type: ignore[call-arg]


async def test_misspelt_call_argument_is_suggested(idle: PhotaClient, photo: Path) -> None:
    """A misspelt keyword of the method itself (via_jobs) suggests the right one."""
    with pytest.raises(InvalidRequestError, match="did you mean 'via_job'"):
        await idle.enhance(photo, via_jobs=True)  # type: ignore[call-arg]


async def test_wrong_value_suggests_the_close_valid_one(idle: PhotaClient) -> None:
    """A base_model close to a real one names that one."""
    with pytest.raises(InvalidRequestError, match="did you mean 'gpt-image-2'"):
        await idle.generate("a cat", base_model="gpt-image2")  # type: ignore[arg-type]


async def test_an_integer_is_not_an_image(idle: PhotaClient) -> None:
    """enhance(12345) is refused naming the image parameter; nothing is sent."""
    with pytest.raises(InvalidRequestError, match="unsupported image type int") as info:
        await idle.enhance(12345)  # type: ignore[arg-type]
    assert info.value.field == "image"


async def test_options_are_checked_before_the_image_is_read(
    idle: PhotaClient, tmp_path: Path
) -> None:
    """A bad option is reported even when the image would fail too: options come first."""
    with pytest.raises(InvalidRequestError) as info:
        await idle.enhance(tmp_path / "missing.jpg", n=9)  # type: ignore[arg-type]
    assert info.value.field == "n"


async def test_profile_ids_of_the_wrong_type_are_refused(idle: PhotaClient, photo: Path) -> None:
    """profile_ids that is no list at all is an InvalidRequestError, not a TypeError."""
    with pytest.raises(InvalidRequestError) as info:
        await idle.enhance(photo, profile_ids=5)  # type: ignore[arg-type]
    assert info.value.field == "profile_ids"


async def test_submit_twin_checks_options_alike(idle: PhotaClient, photo: Path) -> None:
    """jobs.submit_enhance refuses a misspelt option, naming itself as the call."""
    with pytest.raises(InvalidRequestError, match=r"submit_enhance\(\) takes no option 'promt'"):
        await idle.jobs.submit_enhance(photo, promt="x")  # type: ignore[call-arg]


async def test_batch_option_typo_is_raised_when_the_batch_is_made(
    idle: PhotaClient, photo: Path
) -> None:
    """enhance_many with a misspelt option raises at the call, before any item starts."""
    with pytest.raises(InvalidRequestError) as info:
        idle.enhance_many([photo] * 3, promt="x")  # type: ignore[call-arg]
    assert info.value.field == "promt"
    assert "enhance_many() takes no option 'promt'" in str(info.value)
    assert "enhance_fields" not in str(info.value)


async def test_batch_bad_count_is_raised_when_the_batch_is_made(
    idle: PhotaClient, photo: Path
) -> None:
    """enhance_many(n=7) raises naming n at the call, not as an item error or ExceptionGroup."""
    with pytest.raises(InvalidRequestError) as info:
        idle.enhance_many([photo], n=7)  # type: ignore[arg-type]
    assert info.value.field == "n"


async def test_edit_batch_bad_prompt_is_raised_when_the_batch_is_made(
    idle: PhotaClient, photo: Path
) -> None:
    """edit_many checks its prompt once, at the call."""
    with pytest.raises(InvalidRequestError) as info:
        idle.edit_many("  ", [photo])
    assert info.value.field == "prompt"


async def test_remix_batch_reference_of_no_image_type_is_refused_at_once(
    idle: PhotaClient, photo: Path
) -> None:
    """remix_many refuses a reference that is no kind of image before any item starts."""
    with pytest.raises(InvalidRequestError) as info:
        idle.remix_many([photo], reference=3.5)  # type: ignore[arg-type]
    assert info.value.field == "reference"


async def test_batch_timeout_is_checked_when_the_batch_is_made(
    idle: PhotaClient, photo: Path
) -> None:
    """A NaN per-item deadline is refused at the call, not by every item."""
    with pytest.raises(InvalidRequestError) as info:
        idle.enhance_many([photo], timeout=math.nan)
    assert info.value.field == "timeout"


async def test_batch_input_of_no_image_type_is_that_items_error(
    idle: PhotaClient, photo: Path
) -> None:
    """An input of the wrong type fails its own item; the batch itself starts."""
    items = await idle.enhance_many([12345]).collect()  # type: ignore[type-var]
    assert isinstance(items[0].error, InvalidRequestError)
    assert items[0].error.field == "image"


def test_protocol_imports_no_validation_or_file_reading() -> None:
    """_protocol.py, the pure wire code, imports neither the validators nor the input readers."""
    tree = ast.parse(PROTOCOL.read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert not imported & {"_inputs", "_validate", "_files", "_transport", "aiohttp"}


# -- a careless caller: wrong types and huge values, everywhere ---------------------------

HUGE = "x" * 10_000_000


def _huge_value_calls(phota: PhotaClient) -> dict[str, Any]:
    jpg = jpeg_bytes()
    return {
        "base_model": lambda: phota.generate("a cat", base_model=HUGE),
        "n": lambda: phota.enhance(jpg, n=HUGE),
        "aspect_ratio": lambda: phota.edit("x", images=[jpg], aspect_ratio=[HUGE]),
        "tier": lambda: phota.profiles.create([jpg] * 10, tier=HUGE),
        "client_request_id": lambda: phota.jobs.submit_enhance(jpg, client_request_id=HUGE),
        HUGE[:97] + "...": lambda: phota.jobs.submit_remix(jpg, reference=jpg, **{HUGE: 1}),
        "tag": lambda: phota.profiles.list(tag=HUGE),
    }


@pytest.mark.parametrize(
    "field",
    ["base_model", "n", "aspect_ratio", "tier", "client_request_id", "tag", HUGE[:97] + "..."],
    ids=["base_model", "n", "aspect_ratio", "tier", "client_request_id", "tag", "option_name"],
)
async def test_a_huge_wrong_value_makes_a_short_message(idle: PhotaClient, field: str) -> None:
    """A 10 MB string given as an option's value (or name) is refused with a message of a few
    hundred characters that still names the argument, before anything is sent."""
    with pytest.raises(InvalidRequestError) as info:
        await _huge_value_calls(idle)[field]()
    assert info.value.field == field
    assert len(str(info.value)) < 300


async def test_an_echoed_value_never_shows_the_key() -> None:
    """The API key given by mistake as an option's value is masked in the message."""
    key = "sk-live-0123456789abcdefghijklmnop"
    transport = MockTransport(lambda r: pytest.fail("a request was sent"))
    async with PhotaClient(api_key=key, base_url="https://api.test", transport=transport) as c:
        with pytest.raises(InvalidRequestError) as info:
            await c.generate("a cat", base_model="x" * 30 + key)  # type: ignore[arg-type]
    assert "0123456789abcdef" not in str(info.value)
    assert "***" in str(info.value)


@pytest.mark.parametrize("timeout", ["soon", math.nan, -1])
async def test_a_call_refuses_a_wrong_timeout_by_name(
    idle: PhotaClient, photo: Path, timeout: Any
) -> None:
    """A per-call timeout that is not a number of seconds >= 0 is an InvalidRequestError
    naming ``timeout``, on a call and on its submit twin alike."""
    for call in (idle.enhance, idle.jobs.submit_enhance):
        with pytest.raises(InvalidRequestError) as info:
            await call(photo, timeout=timeout)
        assert info.value.field == "timeout"


async def test_an_empty_client_request_id_is_refused(idle: PhotaClient, photo: Path) -> None:
    """An empty idempotency key is refused rather than silently replaced by a fresh one (which
    would make a caller's own retry pay again)."""
    with pytest.raises(InvalidRequestError) as info:
        await idle.jobs.submit_enhance(photo, client_request_id="")
    assert info.value.field == "client_request_id"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"concurrency": "8"}, "concurrency"),
        ({"concurrency": 0}, "concurrency"),
        ({"out_dir": 12}, "out_dir"),
        ({"manifest": "run.manifest"}, "manifest"),
        ({"manifest": 3, "out_dir": "out"}, "manifest"),
        ({"on_progress": 3}, "on_progress"),
    ],
    ids=["concurrency-str", "concurrency-0", "out_dir", "manifest-alone", "manifest-int", "cb"],
)
def test_a_batch_refuses_wrong_arguments_before_it_starts(
    idle: PhotaClient, photo: Path, kwargs: dict[str, Any], field: str
) -> None:
    """A batch's wrong ``concurrency``, ``out_dir``, ``manifest`` or ``on_progress`` is an
    InvalidRequestError naming it, raised by the call that makes the batch."""
    with pytest.raises(InvalidRequestError) as info:
        idle.enhance_many([photo], **kwargs)
    assert info.value.field == field


def test_map_refuses_a_call_that_is_not_callable(idle: PhotaClient, photo: Path) -> None:
    """``map`` with something that cannot be called is refused at once, naming ``call``."""
    with pytest.raises(InvalidRequestError) as info:
        idle.map(12, [photo])  # type: ignore[arg-type]
    assert info.value.field == "call"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"api_key": 12345}, "api_key"),
        ({"retry": "3"}, "retry"),
        ({"poll": 5}, "poll"),
        ({"transport": object()}, "transport"),
        ({"ssl": "no"}, "ssl"),
        ({"session": "shared"}, "session"),
    ],
)
def test_the_client_refuses_options_of_the_wrong_type_by_name(
    kwargs: dict[str, Any], field: str
) -> None:
    """A client option of the wrong type is an InvalidRequestError naming it, not an
    AttributeError from deep inside on first use."""
    kwargs.setdefault("api_key", "k")
    with pytest.raises(InvalidRequestError) as info:
        PhotaClient(base_url="https://api.test", **kwargs)
    assert info.value.field == field
