"""Hostile input, with hypothesis: decoders, ids, files, prompts and webhook headers."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phota_async import MockTransport, PhotaClient
from phota_async import _protocol as proto
from phota_async._protocol import Response
from phota_async.errors import InvalidRequestError, PhotaError
from phota_async.webhooks import WebhookVerificationError, sign, verify_signature

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
FIELDS = ["profile_id", "status", "message", "tag", "profiles", "job_id", "result", "error", "known_subjects",
          "counts", "images", "download_urls", "created_at", "secret", "code", "detail", "request_id"]  # fmt: skip
hostile = st.one_of(
    json_values,
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8),
    st.dictionaries(
        st.sampled_from(FIELDS), st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4)
    ),
)
DECODERS = [
    proto.decode_profile, proto.decode_profiles, proto.decode_result, proto.decode_job,
    proto.decode_job_handle, proto.decode_secret, proto.decode_created_profile_id, proto.decode_image,
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=hostile, status=st.sampled_from([200, 201, 202, 400, 404, 422, 429, 500, 503]))
def test_decoders_raise_only_typed_errors(body: object, status: int) -> None:
    """Any JSON in any decoder gives a model or a PhotaError, never KeyError or TypeError."""
    response = Response(status, {"retry-after": "x"}, json.dumps(body).encode())
    for decode in DECODERS:
        with contextlib.suppress(PhotaError):
            decode(response)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200))
def test_decoders_survive_raw_bytes(raw: bytes) -> None:
    """Arbitrary bytes (not JSON) only ever raise PhotaError."""
    for status in (200, 500):
        for decode in DECODERS:
            with contextlib.suppress(PhotaError):
                decode(Response(status, {}, raw))


@settings(max_examples=200, deadline=None)
@given(profile_id=st.text(max_size=80))
def test_ids_outside_the_pattern_never_reach_a_url(profile_id: str) -> None:
    """Every id is either a plain [A-Za-z0-9_-]{1,64} path segment or refused."""
    try:
        path = proto.profile_path(profile_id, "/status")
    except InvalidRequestError:
        return
    assert path == f"/profiles/{profile_id}/status"
    assert 1 <= len(profile_id) <= 64
    assert all(c.isascii() and (c.isalnum() or c in "_-") for c in profile_id)


@pytest.mark.parametrize("bad", ["../x", "a/b", "%2e%2e", "", "x" * 1000, "a?b", "a#b", "a\nb"])
async def test_hostile_ids_are_refused_before_any_request(bad: str) -> None:
    """Hostile ids raise InvalidRequestError and nothing is sent."""
    transport = MockTransport(lambda r: pytest.fail("sent"))
    async with PhotaClient(api_key="k", base_url="https://api.test", transport=transport) as phota:
        for call in (
            phota.profiles.get,
            phota.profiles.delete,
            phota.profiles.picture,
            phota.jobs.get,
        ):
            with pytest.raises(InvalidRequestError):
                await call(bad)
        with pytest.raises(InvalidRequestError):
            await phota.generate(f"portrait of [[{bad}]]") if bad else await phota.generate("[[]]")
    assert transport.requests == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\xff\xd8", "not a JPEG"),
        (b"GIF89a" + b"\0" * 100, "not a JPEG"),
        (b"%PDF-1.7 a document", "not a JPEG"),
    ],
)
async def test_bad_files_are_refused(tmp_path: Path, content: bytes, message: str) -> None:
    """Zero-byte, truncated and non-image files raise a clear error and send nothing."""
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    transport = MockTransport(lambda r: pytest.fail("sent"))
    async with PhotaClient(api_key="k", base_url="https://api.test", transport=transport) as phota:
        with pytest.raises(InvalidRequestError, match=message):
            await phota.enhance(path)


async def test_huge_file_is_refused(tmp_path: Path) -> None:
    """A file over the size limit is refused without being read."""
    path = tmp_path / "huge.jpg"
    with path.open("wb") as handle:
        handle.write(b"\xff\xd8\xff\xe0")
        handle.truncate(60 * 1024 * 1024)
    transport = MockTransport(lambda r: pytest.fail("sent"))
    async with PhotaClient(api_key="k", base_url="https://api.test", transport=transport) as phota:
        with pytest.raises(InvalidRequestError, match="larger than"):
            await phota.enhance(path)


async def test_hundred_kilobyte_prompt_reaches_the_server(emu: object) -> None:
    """A 100 KB prompt is sent intact (the server decides), and answers normally."""
    from phota_async.testing import PhotaEmulator

    assert isinstance(emu, PhotaEmulator)
    prompt = "a very long scene description " * 3500
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
        result = await phota.generate(prompt)
    assert len(result) == 1
    assert len(emu.requests[-1]["json"]["prompt"]) > 80


BODY = b'{"job_id": "job_1", "status": "SUCCEEDED"}'
NOW = 1_800_000_000


@settings(max_examples=300, deadline=None)
@given(header=st.text(max_size=200))
def test_random_signature_headers_are_refused(header: str) -> None:
    """Arbitrary header text never verifies and only raises WebhookVerificationError."""
    with pytest.raises(WebhookVerificationError):
        verify_signature(BODY, header, "whsec_x", now=NOW)


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300), flip=st.integers(min_value=0, max_value=299))
def test_any_tampering_is_refused(body: bytes, flip: int) -> None:
    """Changing any byte of a signed body breaks the signature."""
    header = sign(body, "whsec_x", NOW)
    assert verify_signature(body, header, "whsec_x", now=NOW) == NOW
    if body:
        i = flip % len(body)
        tampered = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1 :]
        with pytest.raises(WebhookVerificationError):
            verify_signature(tampered, header, "whsec_x", now=NOW)


def test_replayed_delivery_is_refused_once_old() -> None:
    """The same valid delivery replayed after the tolerance is refused."""
    header = sign(BODY, "whsec_x", NOW)
    assert verify_signature(BODY, header, "whsec_x", now=NOW + 10) == NOW
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify_signature(BODY, header, "whsec_x", now=NOW + 301)


def test_duplicated_signature_entries_need_one_match() -> None:
    """A header with several v1 entries verifies when one of them matches."""
    good = sign(BODY, "whsec_x", NOW).split(",")[1]
    header = f"t={NOW},v1={'0' * 64},{good}"
    assert verify_signature(BODY, header, "whsec_x", now=NOW) == NOW
