"""The 400-class rules beyond the schema: model capabilities, moderation, callback URLs, and
which trained subjects a request names.

Emulator decisions:

- A prompt containing one of ``blocked_words`` answers 400 ``CONTENT_MODERATION``.
- ``callback_url`` must be https, except for loopback hosts (tests run receivers locally).
- A ``[[token]]`` or ``profile_ids`` entry naming an unknown profile is 404; one naming a
  profile that is not READY is 400 ``PROFILE_NOT_READY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ._failure import APIFailure, invalid
from ._records import ProfileRecord
from ._schema import ID_PATTERN, MODEL_RESOLUTIONS, prompt_tokens

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


def check_semantics(endpoint: str, body: dict[str, Any], blocked_words: tuple[str, ...]) -> None:
    """Refuse a schema-valid studio request that the service would still refuse."""
    model = body.get("base_model") or "nb2"
    if endpoint in ("edit", "generate"):
        if body.get("quality") is not None and model != "gpt-image-2":
            raise APIFailure(
                400,
                "QUALITY_NOT_SUPPORTED",
                f"quality is only supported by gpt-image-2, not {model}",
            )
        resolution = body.get("resolution") or "1K"
        if resolution not in MODEL_RESOLUTIONS[model]:
            raise APIFailure(
                400, "UNSUPPORTED_RESOLUTION", f"{model} cannot produce {resolution} images"
            )
    callback = body.get("callback_url")
    if callback is not None:
        parts = urlsplit(callback)
        loopback = parts.hostname in LOOPBACK_HOSTS
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise invalid("callback_url", "URL scheme should be 'https'", "url_scheme")
    lowered = (body.get("prompt") or "").lower()
    if any(word in lowered for word in blocked_words):
        raise APIFailure(400, "CONTENT_MODERATION", "the prompt was refused by content moderation")


def named_profiles(
    body: dict[str, Any], profiles: Mapping[str, ProfileRecord], now: float
) -> list[ProfileRecord]:
    """Profiles named by ``profile_ids`` and ``[[id]]`` tokens, each once, checked READY."""
    names: list[str] = list(body.get("profile_ids") or [])
    for token in prompt_tokens(body.get("prompt") or ""):
        if not ID_PATTERN.fullmatch(token):
            raise invalid(
                "prompt", f"Value error, [[{token[:70]}]] is not a valid profile id", "value_error"
            )
        names.append(token)
    records = []
    for name in dict.fromkeys(names):
        record = profiles.get(name)
        if record is None:
            raise APIFailure(404, "PROFILE_NOT_FOUND", f"profile {name} does not exist")
        status, _ = record.status(now)
        if status != "READY":
            raise APIFailure(400, "PROFILE_NOT_READY", f"profile {name} is {status}, not READY")
        records.append(record)
    return records
