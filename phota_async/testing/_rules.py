"""The rules the emulated service applies beyond the schema, in one place.

Where ``phota-api.md`` is silent, these are the emulator's decisions; code written against the
emulator should not depend on them more than on the real service.

**Schema** (``_schema``): pydantic v2's 422 error types, messages and ``ctx`` for every field
rule; unknown fields ignored; lax coercion (``"2"`` counts as ``2``).

**Semantics** (``check_semantics``, 400 unless said otherwise):

- ``quality`` with a model other than ``gpt-image-2``: ``QUALITY_NOT_SUPPORTED``.
- A resolution the model cannot make (``qwen-image-2`` and ``flux-2``: 1K/2K; ``reve``: 1K):
  ``UNSUPPORTED_RESOLUTION``.
- Moderation: a prompt containing any of the emulator's ``blocked_words`` (case-insensitive,
  as a substring; by default the single word ``forbidden-content``) answers
  ``CONTENT_MODERATION`` and is not charged.
- ``callback_url`` must be https, except for loopback hosts (tests run receivers locally):
  422 ``url_scheme`` otherwise.

**Subjects** (``named_profiles``): ``profile_ids`` and ``[[token]]`` prompt tokens are merged,
each profile once. An unknown id is 404 ``PROFILE_NOT_FOUND``; a profile that is not READY is
400 ``PROFILE_NOT_READY``; a token that is not a valid id is 422 ``value_error``. Each named
profile is counted in ``known_subjects`` once per output image.

**Training** (``_service``): ``standard`` takes 10-50 photos, ``fast`` 5-10. A photo that
cannot be downloaded or decoded ends the profile in ``ERROR`` ("training image rejected: ...").
A photo *shows a subject* unless it is flat: the spread (standard deviation) of its grey
levels is under 4 of 255, as in a single-colour picture. A set in which no photo shows a
subject ends in ``ERROR`` with the message "no subject found in the training images"; the
first photo that does becomes the profile's picture and the face drawn into generated images.

**Prices** (``_billing``): training $2.90 standard, $1.49 fast; enhance and remix $0.12 per
output image, $0.15 when a trained subject is named; edit and generate per output image by
model (nb2 $0.08, gpt-image-2 $0.19, qwen-image-2 $0.05, flux-2 $0.06, reve $0.04) times 1,
1.5 or 2 for 1K, 2K or 4K. Charged before the work starts; a 504, a failed call or a failed
job is refunded; a repeated ``client_request_id`` pays nothing.

**Timings** (``PhotaEmulator`` options; the real service in brackets): validation at least
``validation_seconds`` (0.05 s), then ``QUEUING`` for a quarter of ``training_seconds``
(1 s by default; ``phota emulator``: 20 s) and ``IN_PROGRESS`` for the rest [about 20 min];
jobs ``QUEUED`` for ``job_queue_seconds`` (0.05 s) and ``RUNNING`` for ``job_run_seconds``
(0.1 s); synchronous calls answer 504 past ``sync_timeout`` (600 s, as the real service).

**Outputs** (``_render``): generate and edit at ``aspect_ratio`` and ``resolution``
(1K/2K/4K = 1024/2048/4096 px on the longer side; edit's ``auto`` keeps the input's shape,
generate's is square); enhance at the input's size up to 2048 px; remix at 2048 px in the
content's shape; all capped by ``max_output_side``. Each output is a variant of one picture
(slight crop, tone and grain), different per index and per call.

**Seed**: ``PhotaEmulator(seed=N)`` (``phota emulator --seed N``) derives each call's variants
from N, the request's content and how often that same request was seen, so the same sequence
of calls gives the same bytes even when concurrent calls arrive in another order. Without a
seed every call differs.
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
