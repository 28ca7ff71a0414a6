"""Studio calls and training sets from user arguments: every option checked, images described.

Shared by the synchronous calls on ``PhotaClient``, the job submits on ``phota.jobs``, the
``*_many`` batches and ``profiles.create``. Options are checked first and synchronously (names,
then values), so that a typo or a wrong value is an ``InvalidRequestError`` naming the option
before any file is read, anything is sent, or any batch starts; a batch checks its options
once, not per item. Lists of valid names and values are read from the types in ``_options``
once, at import, never per call.

Then, for each call, images are described (``_inputs.prepare_image``: only file headers and
tails are read; image bytes are read later, while streaming). Reading them is part of the call,
so it runs inside the call's deadline (``timeout``, in seconds), and what remains of it is left
for sending (``left``).
"""

from __future__ import annotations

import asyncio
import difflib
import math
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final, get_args

from ._inputs import prepare_image
from ._options import (
    AspectRatio,
    EditOptions,
    EnhanceOptions,
    GenerateOptions,
    ImageCount,
    Model,
    OutputFormat,
    Quality,
    RemixOptions,
    Resolution,
    ResponseMode,
    TrainingTier,
)
from ._protocol import StudioCall, check_id
from ._redact import SHOWN, shown
from .errors import InvalidRequestError

TOKEN_PATTERN: Final = re.compile(r"\[\[([^\[\]]*)\]\]")
ASPECT_RATIOS: Final[tuple[str, ...]] = get_args(AspectRatio)
RESOLUTIONS: Final[tuple[str, ...]] = get_args(Resolution)
BASE_MODELS: Final[tuple[str, ...]] = get_args(Model)
QUALITIES: Final[tuple[str, ...]] = get_args(Quality)
OUTPUT_FORMATS: Final[tuple[str, ...]] = get_args(OutputFormat)
RESPONSE_MODES: Final[tuple[str, ...]] = get_args(ResponseMode)
TIERS: Final[tuple[str, ...]] = get_args(TrainingTier)
COUNTS: Final[tuple[int, ...]] = get_args(ImageCount)
TIER_COUNTS: Final = {"standard": (10, 50), "fast": (5, 10)}
MODEL_RESOLUTIONS: Final = {
    "nb2": ("1K", "2K", "4K"),
    "gpt-image-2": ("1K", "2K", "4K"),
    "qwen-image-2": ("1K", "2K"),
    "flux-2": ("1K", "2K"),
    "reve": ("1K",),
}
MAX_EDIT_IMAGES: Final = 10

# The option names each endpoint takes, from its TypedDict (sorted, for messages).
GENERATE_OPTIONS: Final = tuple(sorted(GenerateOptions.__optional_keys__))
EDIT_OPTIONS: Final = tuple(sorted(EditOptions.__optional_keys__))
ENHANCE_OPTIONS: Final = tuple(sorted(EnhanceOptions.__optional_keys__))
REMIX_OPTIONS: Final = tuple(sorted(RemixOptions.__optional_keys__))

# The keyword arguments the methods take besides their endpoint's options, offered as close
# matches for a misspelt name (``via_jobs=True`` lands among the options).
CALL_ARGUMENTS: Final = ("timeout", "via_job")
SUBMIT_ARGUMENTS: Final = ("callback_url", "client_request_id", "timeout")
BATCH_ARGUMENTS: Final = (
    "budget", "concurrency", "manifest", "on_progress", "out_dir", "timeout", "via_job",
)  # fmt: skip


def clock() -> float:
    """The running loop's clock, in seconds: the clock every call deadline is kept on (a
    loop with its own clock, such as a test's virtual one, then cuts calls off where the
    deadline it was given says)."""
    return asyncio.get_running_loop().time()


def left(budget: float, started: float) -> float:
    """What remains of ``budget`` seconds counted from ``started`` (a ``clock()`` reading)."""
    if not math.isfinite(budget):
        return budget  # inf stays inf; nan is refused where deadlines are set
    return max(0.0, budget - (clock() - started))


def _rest(timeout: float | None, started: float) -> float | None:
    return None if timeout is None else left(timeout, started)


# -- names and values ---------------------------------------------------------------------


def _close(value: object, choices: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` for a string close to one of ``choices``, else nothing."""
    if not isinstance(value, str) or len(value) > 2 * SHOWN:
        return ""  # nothing long is a near miss (and difflib's time grows with the length)
    found = difflib.get_close_matches(value, list(choices), n=1)
    return f" (did you mean {found[0]!r}?)" if found else ""


def check_names(
    options: Mapping[str, object], valid: Sequence[str], call: str, others: Sequence[str] = ()
) -> None:
    """Refuse an option ``call`` does not take, naming it, its close match and the valid ones.

    Args:
        options: the keyword arguments gathered as options.
        valid: the option names of the endpoint.
        call: the method's name, for the message.
        others: the method's other keyword arguments (offered as close matches too).

    Raises:
        InvalidRequestError: an unknown name; ``field`` is that name.
    """
    for name in options:
        if name not in valid:
            hint = _close(name, (*valid, *others)) or f"; its options are {', '.join(valid)}"
            raise InvalidRequestError(name, f"{call}() takes no option {shown(name)}{hint}")


def _choice(value: object, field: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InvalidRequestError(
            field, f"{shown(value)} is not one of {', '.join(choices)}{_close(value, choices)}"
        )
    return value


def _check_n(n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n not in COUNTS:
        raise InvalidRequestError(
            "n", f"must be an integer from {COUNTS[0]} to {COUNTS[-1]}, got {shown(n)}"
        )
    return n


def check_prompt(prompt: object, field: str = "prompt", *, required: bool = True) -> str | None:
    """Accept a prompt whose every ``[[token]]`` is a valid profile id."""
    if prompt is None and not required:
        return None
    if not isinstance(prompt, str) or (required and not prompt.strip()):
        raise InvalidRequestError(field, "a non-empty string is required")
    for token in TOKEN_PATTERN.findall(prompt):
        check_id(token, f"{field} [[{token[:20]}]]")
    return prompt


def check_profile_ids(profile_ids: object) -> list[str]:
    """Accept ``None`` or a list of profile ids (not one id as a string)."""
    if profile_ids is None:
        return []
    if isinstance(profile_ids, str):
        raise InvalidRequestError("profile_ids", "must be a list of ids, not one string")
    if not isinstance(profile_ids, Sequence):
        raise InvalidRequestError(
            "profile_ids", f"must be a list of ids, got {type(profile_ids).__name__}"
        )
    return [check_id(p, f"profile_ids[{i}]") for i, p in enumerate(profile_ids)]


def _output_fields(options: Mapping[str, object]) -> dict[str, Any]:
    """The output fields shared by the four studio endpoints, validated."""
    return {
        "num_output_images": _check_n(options.get("n", 1)),
        "output_format": _choice(
            options.get("output_format", "jpg"), "output_format", OUTPUT_FORMATS
        ),
        "response_mode": _choice(
            options.get("response_mode", "bytes"), "response_mode", RESPONSE_MODES
        ),
    }


def model_fields(
    aspect_ratio: object, resolution: object, base_model: object, quality: object
) -> dict[str, Any]:
    """aspect_ratio/resolution/base_model/quality, with the model capability rules."""
    fields: dict[str, Any] = {
        "aspect_ratio": _choice(aspect_ratio, "aspect_ratio", ASPECT_RATIOS),
        "resolution": _choice(resolution, "resolution", RESOLUTIONS),
        "base_model": _choice(base_model, "base_model", BASE_MODELS),
    }
    model = fields["base_model"]
    if resolution not in MODEL_RESOLUTIONS[model]:
        raise InvalidRequestError(
            "resolution",
            f"{model} cannot make {resolution} images "
            f"(it can make {', '.join(MODEL_RESOLUTIONS[model])})",
        )
    if quality is not None:
        fields["quality"] = _choice(quality, "quality", QUALITIES)
        if model != "gpt-image-2":
            raise InvalidRequestError("quality", f"only gpt-image-2 takes quality, not {model}")
    return fields


def _model_fields(options: Mapping[str, object]) -> dict[str, Any]:
    return model_fields(
        options.get("aspect_ratio", "auto"),
        options.get("resolution", "1K"),
        options.get("base_model", "nb2"),
        options.get("quality"),
    )


def _subject_fields(options: Mapping[str, object]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    ids = check_profile_ids(options.get("profile_ids"))
    if ids:
        fields["profile_ids"] = ids
    prompt = options.get("prompt")
    if prompt is not None:
        fields["prompt"] = check_prompt(prompt, required=False)
    return fields


# -- the four endpoints: options first (synchronous), then images --------------------------


def generate_call(
    prompt: object, options: Mapping[str, object], call: str, others: Sequence[str] = ()
) -> StudioCall:
    """A validated generate (it has no images to read).

    Raises:
        InvalidRequestError: an unknown option, a bad value, or non-empty ``profile_ids``.
    """
    if "profile_ids" in options:
        # Old clients send profile_ids=None to generate: harmless. A real list is a mistake.
        if options["profile_ids"]:
            raise InvalidRequestError(
                "profile_ids",
                "generate takes no profile_ids: name each subject in the prompt as [[profile_id]]",
            )
        options = {k: v for k, v in options.items() if k != "profile_ids"}
    check_names(options, GENERATE_OPTIONS, call, others)
    fields = {
        "prompt": check_prompt(prompt),
        **_model_fields(options),
        **_output_fields(options),
    }
    return StudioCall("/generate", fields, fields["output_format"])


def edit_fields(
    prompt: object, options: Mapping[str, object], call: str, others: Sequence[str] = ()
) -> dict[str, Any]:
    """The fields of an edit but its images, validated (see ``edit_call``)."""
    check_names(options, EDIT_OPTIONS, call, others)
    fields: dict[str, Any] = {"prompt": check_prompt(prompt)}
    ids = check_profile_ids(options.get("profile_ids"))
    if ids:
        fields["profile_ids"] = ids
    fields.update(_model_fields(options))
    fields.update(_output_fields(options))
    return fields


def enhance_fields(
    options: Mapping[str, object], call: str, others: Sequence[str] = ()
) -> dict[str, Any]:
    """The fields of an enhance but its image, validated (see ``enhance_call``)."""
    check_names(options, ENHANCE_OPTIONS, call, others)
    return {**_subject_fields(options), **_output_fields(options)}


def remix_fields(
    options: Mapping[str, object], call: str, others: Sequence[str] = ()
) -> dict[str, Any]:
    """The fields of a remix but its images, validated (see ``remix_call``)."""
    check_names(options, REMIX_OPTIONS, call, others)
    return {**_subject_fields(options), **_output_fields(options)}


def check_edit_images(images: object) -> list[object]:
    """Accept 1-10 edit images (before any of them is read)."""
    if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
        raise InvalidRequestError("images", "must be a list of images")
    if not 1 <= len(images) <= MAX_EDIT_IMAGES:
        raise InvalidRequestError(
            "images", f"edit takes 1-{MAX_EDIT_IMAGES} images, got {len(images)}"
        )
    return list(images)


async def edit_call(
    fields: Mapping[str, Any], images: object, timeout: float | None = None
) -> StudioCall:
    """An edit from its validated ``fields`` and its images (counted, then each described)."""
    listed = check_edit_images(images)
    started = clock()
    sources = [
        await prepare_image(img, f"images[{i}]", _rest(timeout, started))
        for i, img in enumerate(listed)
    ]
    body = {"prompt": fields["prompt"], "images": sources, **fields}
    return StudioCall("/edit", body, fields["output_format"])


async def enhance_call(
    image: object, fields: Mapping[str, Any], timeout: float | None = None
) -> StudioCall:
    """An enhance from its image and its validated ``fields``."""
    body = {"image": await prepare_image(image, "image", timeout), **fields}
    return StudioCall("/enhance", body, fields["output_format"])


async def remix_call(
    image: object, reference: object, fields: Mapping[str, Any], timeout: float | None = None
) -> StudioCall:
    """A remix from its content and style images and its validated ``fields``."""
    started = clock()
    content = await prepare_image(image, "image", timeout)
    style = await prepare_image(reference, "reference", _rest(timeout, started))
    body = {"input_image": content, "reference_image": style, **fields}
    return StudioCall("/remix", body, fields["output_format"])


# -- training -------------------------------------------------------------------------------


def check_training_set(count: int, tier: object, tag: object) -> None:
    """Accept a tier, a photo count within its range, and an optional 1-128 character tag."""
    tier = _choice(tier, "tier", TIERS)
    lo, hi = TIER_COUNTS[tier]
    if not lo <= count <= hi:
        raise InvalidRequestError("images", f"the {tier} tier needs {lo}-{hi} images, got {count}")
    check_tag(tag)


def check_tag(tag: object) -> None:
    """Accept ``None`` or a profile tag of 1-128 characters."""
    if tag is not None and (not isinstance(tag, str) or not 1 <= len(tag) <= 128):
        raise InvalidRequestError("tag", "must be a string of 1-128 characters")


def training_fields(urls: Sequence[str], tier: object, tag: object) -> dict[str, Any]:
    """The body of ``POST /profiles/add``, validated."""
    check_training_set(len(urls), tier, tag)
    fields: dict[str, Any] = {"image_urls": list(urls), "training_tier": tier}
    if tag is not None:
        fields["tag"] = tag
    return fields
