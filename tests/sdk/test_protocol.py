"""The pure protocol layer: request building and response decoding, without sockets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from phota_async import _protocol as proto
from phota_async._blob import ImageBlob
from phota_async._inputs import encoded_chunks
from phota_async._protocol import Response, StreamedBody
from phota_async.errors import (
    ContentModerationError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
    UnprocessableEntityError,
)
from phota_async.models import Job, ProfileStatus

SAMPLES = Path(__file__).parent.parent / "samples"
BASE = "https://api.example/v1/phota"


def sample(name: str, status: int = 200, **headers: str) -> Response:
    """A recorded payload as a Response."""
    return Response(
        status, {"x-request-id": "req_sample", **headers}, (SAMPLES / name).read_bytes()
    )


def test_profile_status_decodes() -> None:
    """A READY status answer becomes a ready Profile."""
    profile = proto.decode_profile(sample("profile_status_ready.json"))
    assert (profile.id, profile.status, profile.message) == ("prof_0001a1b2c3d4", "READY", None)
    assert profile.is_ready


def test_unknown_status_and_fields_are_kept_and_ignored() -> None:
    """A status the SDK does not know is kept; unknown fields are ignored."""
    profile = proto.decode_profile(sample("profile_status_future.json"))
    assert profile.status == "ARCHIVED"
    assert not profile.is_terminal


def test_error_profile_is_failed() -> None:
    """ERROR profiles report is_failed with their message."""
    profile = proto.decode_profile(sample("profile_status_error.json"))
    assert profile.is_failed
    assert profile.message == "no subject found in the training images"


@pytest.mark.parametrize("name", ["profiles_ids_objects.json", "profiles_ids_plain.json"])
def test_profile_list_accepts_both_shapes(name: str) -> None:
    """/profiles/ids answers of objects or of plain ids both give Profiles."""
    profiles = proto.decode_profiles(sample(name))
    assert [p.id for p in profiles] == ["prof_a", "prof_b"]


def test_plain_id_list_has_unknown_status() -> None:
    """Profiles from a plain id list have status UNKNOWN."""
    assert {p.status for p in proto.decode_profiles(sample("profiles_ids_plain.json"))} == {
        ProfileStatus.UNKNOWN
    }


def test_result_with_images_decodes() -> None:
    """A bytes-mode result has its base64 images and subject counts."""
    body = proto.decode_result(sample("result_bytes.json"))
    assert body.known_subjects.counts == {"prof_a": 2}
    assert proto.decode_base64_image(body.images[0]).startswith(b"\x89PNG")


def test_job_decodes_with_times_and_result() -> None:
    """A SUCCEEDED job has aware datetimes and its result body."""
    job = proto.decode_job(sample("job_succeeded.json"))
    assert job.status == "SUCCEEDED"
    assert job.created_at == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert job.result is not None
    assert job.result.download_urls == ["https://cdn.example/out/2.jpg?sig=def"]


def test_failed_job_keeps_its_error() -> None:
    """A FAILED job carries code and detail."""
    job = proto.decode_job(sample("job_failed.json"))
    assert job.error is not None
    assert (job.error.code, job.error.detail) == ("CONTENT_MODERATION", "refused")


def test_job_handle_decodes() -> None:
    """A 202 handle gives the job id and poll URL."""
    handle = proto.decode_job_handle(sample("job_handle.json", 202))
    assert handle.id == "job_0001"
    assert handle.poll_url is not None


def test_job_repr_hides_result_urls() -> None:
    """Signed URLs never appear in a Job's repr."""
    job = proto.decode_job(sample("job_succeeded.json"))
    assert "sig=" not in repr(job)
    assert isinstance(job, Job)


def test_422_becomes_unprocessable_with_field_detail() -> None:
    """A 422 names the field in the message and keeps the detail list."""
    error = proto.error_from(sample("error_422.json", 422))
    assert isinstance(error, UnprocessableEntityError)
    assert "num_output_images" in str(error)
    assert error.errors[0]["type"] == "less_than_equal"


def test_404_keeps_code_detail_and_request_id() -> None:
    """A coded error keeps status, code, detail and request id."""
    error = proto.error_from(sample("error_404.json", 404))
    assert isinstance(error, NotFoundError)
    assert (error.status, error.code, error.request_id) == (404, "PROFILE_NOT_FOUND", "req_sample")


def test_request_id_falls_back_to_the_body() -> None:
    """With no X-Request-Id header, the body's request_id is used."""
    response = Response(404, {}, (SAMPLES / "error_404.json").read_bytes())
    assert proto.error_from(response).request_id == "req_404"


def test_error_code_picks_the_subclass() -> None:
    """CONTENT_MODERATION maps to ContentModerationError."""
    assert isinstance(
        proto.error_from(sample("error_moderation.json", 400)), ContentModerationError
    )


def test_html_5xx_body_is_summarised() -> None:
    """A proxy's HTML 502 becomes a ServerError with readable detail and no code."""
    error = proto.error_from(sample("error_502.html", 502))
    assert isinstance(error, ServerError)
    assert error.code is None
    assert "502 Bad Gateway" in error.detail


def test_empty_error_body() -> None:
    """An empty error body still gives a typed error."""
    error = proto.error_from(Response(503, {}, b""))
    assert (error.status, error.detail) == (503, "no detail given")


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("0.5", 0.5), ("soon", None)])
def test_retry_after_is_parsed(header: str, expected: float | None) -> None:
    """Retry-After in seconds is parsed; nonsense is ignored."""
    error = proto.error_from(Response(429, {"retry-after": header}, b"{}"))
    assert isinstance(error, RateLimitError)
    assert error.retry_after == expected


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    """A Retry-After HTTP date in the past means no wait."""
    assert proto.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_malformed_success_body_is_a_validation_error() -> None:
    """A 200 whose body is not JSON raises ResponseValidationError."""
    with pytest.raises(ResponseValidationError, match="not valid JSON"):
        proto.decode_profile(Response(200, {}, b'{"profile_id": '))


def test_wrongly_typed_field_is_a_validation_error() -> None:
    """A 200 whose field has the wrong type raises ResponseValidationError naming it."""
    body = json.dumps({"profile_id": 12, "status": "READY"}).encode()
    with pytest.raises(ResponseValidationError, match=r"profile\.id"):
        proto.decode_profile(Response(200, {}, body))


def test_wrongly_typed_optional_field_is_a_validation_error() -> None:
    """An optional string field holding a number is refused, naming the field; null is kept."""
    body = json.dumps({"profile_id": "p", "status": "ERROR", "message": 5}).encode()
    with pytest.raises(ResponseValidationError, match=r"profile\.message"):
        proto.decode_profile(Response(200, {}, body))
    body = json.dumps({"profile_id": "p", "status": "ERROR", "message": None}).encode()
    assert proto.decode_profile(Response(200, {}, body)).message is None


def test_secret_decodes() -> None:
    """The webhook secret answer gives the secret."""
    assert proto.decode_secret(sample("webhook_secret.json")) == "whsec_0123456789abcdef"


def test_get_request_has_key_and_no_body() -> None:
    """A GET carries the key header, no body, and is retried as safe."""
    request = proto.Api(BASE, "k").get(proto.profile_path("prof_1", "/status"))
    assert request.url == f"{BASE}/profiles/prof_1/status"
    assert request.headers["X-API-Key"] == "k"
    assert (request.body, request.retry) == (None, "safe")


def test_get_request_encodes_its_query() -> None:
    """A GET with a query has it URL-encoded after the path; the endpoint stays the bare path."""
    request = proto.Api(BASE + "/", "k").get("/profiles/ids", {"tag": "a b&c"})
    assert request.url == f"{BASE}/profiles/ids?tag=a+b%26c"
    assert request.endpoint == "/profiles/ids"


def test_request_repr_hides_headers_and_body() -> None:
    """The API key never appears in a Request's repr."""
    request = proto.Api(BASE, "secret-key").post("/generate", {"prompt": "x"}, "paid")
    assert "secret-key" not in repr(request)


@pytest.mark.parametrize("bad", ["../x", "a/b", "%2e%2e", "", "x" * 65, "a b", None, 5])
def test_hostile_ids_are_refused(bad: object) -> None:
    """Ids that could escape the URL path are refused before a request exists."""
    with pytest.raises(InvalidRequestError, match="profile_id"):
        proto.profile_path(bad)  # type: ignore[arg-type]


def test_download_request_carries_no_key() -> None:
    """Signed URL downloads never send the API key."""
    assert "X-API-Key" not in proto.download("https://cdn.example/x").headers


def test_json_body_without_blobs_is_bytes() -> None:
    """A body without local images is plain compact JSON."""
    assert (
        proto.json_body({"prompt": "hé"})
        == json.dumps({"prompt": "hé"}, separators=(",", ":")).encode()
    )


async def _text(blob: ImageBlob) -> bytes:
    return b"".join([chunk async for chunk in encoded_chunks(blob)])


async def test_json_body_streams_blobs_between_quotes() -> None:
    """Image blobs become stream parts whose joined text is the same JSON."""
    blob = ImageBlob(size=5, format="png", data=b"\x89PNG!")
    body = proto.json_body({"images": [blob, "https://x/y.jpg"], "prompt": "a"})
    assert isinstance(body, StreamedBody)
    joined = b"".join([p if isinstance(p, bytes) else await _text(p) for p in body.parts])
    assert json.loads(joined) == {"images": ["iVBORyE=", "https://x/y.jpg"], "prompt": "a"}
    assert body.length == len(joined)


async def test_prompt_containing_the_marker_text_is_untouched() -> None:
    """User text that looks like a placeholder is never mistaken for a blob."""
    blob = ImageBlob(size=3, format="png", data=b"abc")
    body = proto.json_body({"image": blob, "prompt": "\\u0000blob0:0"})
    assert isinstance(body, StreamedBody)
    joined = b"".join([p if isinstance(p, bytes) else await _text(p) for p in body.parts])
    assert json.loads(joined)["prompt"] == "\\u0000blob0:0"


def test_async_fields_generate_an_idempotency_key() -> None:
    """A job submit gets a fresh client_request_id unless one is given."""
    a, b = proto.async_fields(None, None), proto.async_fields(None, None)
    assert a["client_request_id"] != b["client_request_id"]
    assert proto.async_fields("mine", None)["client_request_id"] == "mine"
    with pytest.raises(InvalidRequestError, match="callback_url"):
        proto.async_fields(None, "http://insecure/hook")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:99999/x.jpg",
        "http://127.0.0.1:port/x.jpg",
        "ftp://example.com/x.jpg",
        "/relative/x.jpg",
        "http:///x.jpg",
    ],
)
def test_a_download_url_that_cannot_be_fetched_is_a_response_error(url: str) -> None:
    """A server's download URL with a bad port, scheme or host is refused as a broken answer."""
    with pytest.raises(ResponseValidationError, match="download URL that cannot be fetched"):
        proto.download(url)
