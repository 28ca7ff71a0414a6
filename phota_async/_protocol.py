"""The Phota wire protocol as pure functions: parameters in, ``Request`` out; ``Response`` in,
models or typed errors out. Nothing here does I/O or knows about aiohttp, so all of it is tested
synchronously against recorded payloads.
"""

from __future__ import annotations

import base64
import binascii
import json
import platform
import re
import secrets
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlencode, urlsplit

import attrs
from multidict import CIMultiDict, CIMultiDictProxy

from ._blob import ImageBlob, close_images, sniff_format
from ._converter import structure
from ._redact import register as register_secret
from ._redact import scrub, scrub_echoes, shown
from ._version import __version__
from .errors import (
    CODE_ERRORS,
    STATUS_ERRORS,
    APIError,
    InvalidRequestError,
    ResponseValidationError,
    ServerError,
)
from .models import Job, JobHandle, Profile, ResultBody, SpooledImage

Expect = Literal["json", "result", "image"]
"""What a 2xx body should be, which says how a transport reads it: ``json`` (held in memory up to
the response cap), ``result`` (a studio result, decoded as it streams in, see ``_decode``),
``image`` (an image download, held to the per-image cap)."""
RESULT_PATHS: Final = frozenset({"/generate", "/edit", "/enhance", "/remix"})

RetryClass = Literal["safe", "paid", "keyed"]
"""How a request may be retried: ``safe`` (GET/DELETE), ``paid`` (a POST that costs money and
carries no idempotency key), ``keyed`` (a paid POST that carries a ``client_request_id``)."""

ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
USER_AGENT: Final = f"phota_async/{__version__} python/{platform.python_version()}"


@attrs.frozen
class StreamedBody:
    """A JSON body whose image values are streamed as base64 from their blobs.

    ``parts`` alternate literal JSON bytes and blobs; each blob is written between the quotes
    that the literal parts already hold.
    """

    parts: tuple[bytes | ImageBlob, ...]

    @property
    def length(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p.encoded_size for p in self.parts)


@attrs.frozen
class FileBody:
    """A raw file sent as the whole body (training-photo uploads), streamed from disk."""

    path: Path
    size: int


Body = bytes | StreamedBody | FileBody


# Request and Response are built once per HTTP exchange, so they are plain slotted classes:
# a frozen attrs instance costs three times as much to build (one object.__setattr__ per field).
# Nothing changes them after construction.


@attrs.define
class Request:
    """One HTTP request, ready for a transport. Headers and body stay out of ``repr``."""

    method: str
    url: str
    endpoint: str
    headers: Mapping[str, str] = attrs.field(repr=False)
    body: Body | None = attrs.field(default=None, repr=False)
    retry: RetryClass = "safe"
    expect: Expect = "json"
    # Set by the transport once the current attempt has a connection, after which the request
    # may reach the server; the client resets it before each attempt.
    sent: bool = attrs.field(default=False, repr=False, eq=False)


@attrs.define
class Response:
    """One HTTP response. ``headers`` is looked up with lower-case names: transports pass a
    case-insensitive mapping (aiohttp's own) or a dict with lower-case keys."""

    status: int
    headers: Mapping[str, str] = attrs.field(repr=False)
    body: bytes = attrs.field(repr=False)
    decoded: tuple[Any, Mapping[str, bytes | SpooledImage]] | None = attrs.field(
        default=None, repr=False
    )
    """A studio result the transport decoded as it streamed in (``body`` is then empty): the
    JSON value and the images its markers stand for (``_decode.ResultDecoder``)."""

    @property
    def request_id(self) -> str | None:
        # Scrubbed: a server that echoes the key here would put it in every result's repr.
        found = self.headers.get("x-request-id")
        return None if found is None else scrub(found)


# -- request building ---------------------------------------------------------------------


def check_id(value: Any, field: str) -> str:
    """Accept a profile or job id, which also goes into URL paths; refuse anything else."""
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidRequestError(
            field, f"{shown(value, 40)} is not a valid id (1-64 of A-Z a-z 0-9 _ -)"
        )
    return value


def async_fields(client_request_id: str | None, callback_url: str | None) -> dict[str, Any]:
    """Fields that turn a studio call into a job submit."""
    check_async(client_request_id, callback_url)
    fields: dict[str, Any] = {"async": True, "response_mode": "urls"}
    fields["client_request_id"] = client_request_id or new_client_request_id()
    if callback_url is not None:
        fields["callback_url"] = callback_url
    return fields


MAX_REQUEST_KEY: Final = 256
"""The longest ``client_request_id`` sent (the API states none; real keys are ids or hashes)."""


def check_async(client_request_id: object, callback_url: object) -> None:
    """Accept a job submit's own arguments: ``None`` or a non-empty key of at most
    ``MAX_REQUEST_KEY`` characters (an empty one would silently become a fresh key on every
    call, and a retry of the caller's would pay again), and ``None`` or an https callback.

    Raises:
        InvalidRequestError: either argument is wrong, named.
    """
    if client_request_id is not None and (
        not isinstance(client_request_id, str) or not 1 <= len(client_request_id) <= MAX_REQUEST_KEY
    ):
        raise InvalidRequestError(
            "client_request_id",
            f"must be a string of 1-{MAX_REQUEST_KEY} characters, got {shown(client_request_id)}",
        )
    if callback_url is not None and (
        not isinstance(callback_url, str) or not _callback_allowed(callback_url)
    ):
        raise InvalidRequestError(
            "callback_url", "must be an https:// URL (plain http only to a loopback host)"
        )


def _callback_allowed(callback_url: str) -> bool:
    parts = urlsplit(callback_url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    return bool(parts.netloc) and (parts.scheme == "https" or (parts.scheme == "http" and loopback))


def new_client_request_id() -> str:
    """A fresh idempotency key for one logical submit."""
    return "cr_" + secrets.token_hex(16)


def json_body(fields: Mapping[str, Any]) -> Body:
    """Serialise a body; image blobs become streamed parts instead of inline base64."""
    blobs: list[ImageBlob] = []
    marker = "\x00blob" + secrets.token_hex(4) + ":"

    def swap(value: Any) -> Any:
        if isinstance(value, ImageBlob):
            blobs.append(value)
            return f"{marker}{len(blobs) - 1}"
        if isinstance(value, list):
            return [swap(v) for v in value]
        return value

    encoded = json.dumps({k: swap(v) for k, v in fields.items()}, separators=(",", ":"))
    if not blobs:
        return encoded.encode()
    parts: list[bytes | ImageBlob] = []
    escaped = json.dumps(marker)[1:-1]  # the marker as it appears inside a JSON string
    pieces = encoded.split(escaped)
    parts.append(pieces[0].encode())
    for piece in pieces[1:]:
        index, rest = piece.split('"', 1)
        parts.append(blobs[int(index)])
        parts.append(('"' + rest).encode())
    return StreamedBody(tuple(parts))


def _header_set(headers: dict[str, str]) -> Mapping[str, str]:
    """A read-only, case-insensitive header mapping (HTTP header names ignore case); it is
    multidict's, which aiohttp takes as it is instead of copying it into one per request."""
    return CIMultiDictProxy(CIMultiDict(headers))


class Api:
    """Builds the requests of one account. The base URL and the two header sets (with and
    without a JSON body) are worked out once here rather than on every call; the key lives only
    in those read-only mappings, which no ``repr`` shows, and in ``secret``, which registers it
    for scrubbing from every error and log line while this ``Api`` lives (``_redact``)."""

    __slots__ = ("base_url", "headers", "json_headers", "secret")

    def __init__(self, base_url: str, api_key: str) -> None:
        self.secret = register_secret(api_key)
        self.base_url = base_url.rstrip("/")
        common = {"X-API-Key": api_key, "User-Agent": USER_AGENT, "Accept": "application/json"}
        self.headers = _header_set(common)
        self.json_headers = _header_set({**common, "Content-Type": "application/json"})

    def __repr__(self) -> str:
        return f"Api({self.base_url!r})"

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Request:
        url = f"{self.base_url}{path}?{urlencode(query)}" if query else self.base_url + path
        return Request("GET", url, path, self.headers)

    def delete(self, path: str) -> Request:
        return Request("DELETE", self.base_url + path, path, self.headers)

    def post(self, path: str, fields: Mapping[str, Any], retry: RetryClass) -> Request:
        """A POST with a JSON body (image blobs streamed, see ``json_body``). A synchronous
        studio call's answer is read as a result (``Expect``); a job submit's is not."""
        expect: Expect = "result" if path in RESULT_PATHS and not fields.get("async") else "json"
        return Request(
            "POST", self.base_url + path, path, self.json_headers, json_body(fields), retry, expect
        )


DOWNLOAD_HEADERS: Final = _header_set({"User-Agent": USER_AGENT})


def download(signed_url: str) -> Request:
    """A GET of a signed output URL. It carries no API key: the URL is its own credential.

    Raises:
        ResponseValidationError: the server's URL is not an absolute http(s) URL with a host
            and a valid port (checked here, so that no other layer meets a URL it cannot open).
    """
    try:
        parts = urlsplit(signed_url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        valid = False
    if not valid:
        raise ResponseValidationError(
            f"the server sent a download URL that cannot be fetched: {shown(scrub(signed_url))}"
        )
    return Request("GET", signed_url, "download", DOWNLOAD_HEADERS, expect="image")


def profile_path(profile_id: str, suffix: str = "") -> str:
    # A checked id is only [A-Za-z0-9_-], so it needs no quoting in a path.
    return f"/profiles/{check_id(profile_id, 'profile_id')}{suffix}"


def job_path(job_id: str) -> str:
    return f"/jobs/{check_id(job_id, 'job_id')}"


# -- response decoding --------------------------------------------------------------------


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (``None`` when absent or bad)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        from datetime import datetime

        if when.tzinfo is None:  # "-0000": RFC 5322's "UTC, origin unknown"; HTTP dates are UTC
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if seconds == seconds else None  # NaN guard


def _text(value: Any, limit: int = 500) -> str:
    # Scrubbed before it is cut short, so that a cut cannot leave part of an echoed key that
    # is too short to be recognised afterwards.
    text = scrub(value if isinstance(value, str) else json.dumps(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


ERROR_BODY_LIMIT: Final = 64 * 1024
"""The most of an error body an ``APIError`` keeps: real error bodies are a few hundred bytes,
and every text an error keeps is scanned for the API key (up to about 2 ms per 64 KiB)."""


def error_from(response: Response) -> APIError:
    """The typed ``APIError`` for an error response, whatever its body looks like (a body
    over ``ERROR_BODY_LIMIT`` is kept as the text of its start)."""
    body: Any
    raw = response.body
    try:
        if len(raw) > ERROR_BODY_LIMIT:
            raise ValueError("too long to keep whole")
        body = json.loads(raw) if raw else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        body = raw[:ERROR_BODY_LIMIT].decode("utf-8", "replace")
    code: str | None = None
    detail: str
    request_id = response.request_id
    if isinstance(body, Mapping):
        raw_code = body.get("code")
        code = raw_code if isinstance(raw_code, str) else None
        raw_detail = body.get("detail")
        if isinstance(raw_detail, list):
            detail = "; ".join(_describe_422(d) for d in raw_detail) or "validation failed"
        elif raw_detail is None:
            detail = _text(body.get("message") or body)
        else:
            detail = _text(raw_detail)
        if request_id is None and isinstance(body.get("request_id"), str):
            request_id = body["request_id"]
    elif isinstance(body, str) and body.strip():
        detail = _text(" ".join(body.split()), 200)
    else:
        detail = "no detail given"
    if response.status == 404 and _no_such_route(code, detail):
        detail += f" (no such API route: is base_url right? it should end in {API_PATH})"
    cls = CODE_ERRORS.get(code or "") or STATUS_ERRORS.get(response.status)
    if cls is None:
        cls = ServerError if response.status >= 500 else APIError
    error = cls(
        response.status,
        code,
        detail,
        body=body,
        request_ids=[request_id] if request_id else [],
    )
    error.retry_after = parse_retry_after(response.headers.get("retry-after"))
    return error


API_PATH: Final = "/v1/phota"
_GENERIC_NOT_FOUND: Final = re.compile(r"(404)?\W*not\W*found\W*", re.IGNORECASE)


def _no_such_route(code: str | None, detail: str) -> bool:
    """Whether a 404 is a router's "no such path" (a wrong base URL), not an API answer.

    The API names what it did not find, with a code (``PROFILE_NOT_FOUND``); a router or a
    proxy answers a bare "Not Found" (FastAPI, aiohttp, nginx), HTML or nothing.
    """
    return code is None or _GENERIC_NOT_FOUND.fullmatch(detail) is not None


def _describe_422(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return _text(entry, 100)
    loc = entry.get("loc")
    where = ".".join(str(p) for p in loc if p != "body") if isinstance(loc, list) else "?"
    return f"{where}: {entry.get('msg', 'invalid')}"


def json_of(response: Response, what: str) -> Any:
    """The JSON of a success response, or ``ResponseValidationError``."""
    if response.decoded is not None:
        return response.decoded[0]
    try:
        return json.loads(response.body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ResponseValidationError(
            f"{what}: the {response.status} response is not valid JSON ({exc})"
        ) from None


def check(response: Response) -> Response:
    """Raise the typed error for a non-2xx response; return the response otherwise."""
    if not 200 <= response.status < 300:
        raise error_from(response)
    return response


def decode_profile(response: Response) -> Profile:
    # A status message is server text that may echo the key: kept scrubbed, like errors.
    profile: Profile = scrub_echoes(
        structure(json_of(check(response), "profile"), Profile, "profile"), response.body
    )
    return profile


def decode_profiles(response: Response) -> list[Profile]:
    """``{"profiles": [...]}`` whose elements are objects or plain id strings."""
    data = json_of(check(response), "profiles")
    items = data.get("profiles") if isinstance(data, Mapping) else None
    if not isinstance(items, list):
        raise ResponseValidationError("profiles: expected an object with a 'profiles' list")
    out = []
    for i, item in enumerate(items):
        if isinstance(item, str):
            out.append(Profile(id=item))
        else:
            out.append(structure(item, Profile, f"profiles[{i}]"))
    return out


def _string_field(response: Response, what: str, key: str) -> str:
    """One non-empty string field of a JSON object answer."""
    data = json_of(check(response), what)
    value = data.get(key) if isinstance(data, Mapping) else None
    if not isinstance(value, str) or not value:
        raise ResponseValidationError(f"{what}: the answer has no {key}")
    return value


def decode_created_profile_id(response: Response) -> str:
    return _string_field(response, "profile", "profile_id")


def decode_image(response: Response) -> bytes:
    """The body of an image download (an output or a profile picture), checked to be one.

    For a download streamed into a file the body is the file's first bytes, checked alike.
    """
    if sniff_format(check(response).body[:16]) is None:
        raise ResponseValidationError("download: the body is not an image")
    return response.body


def decode_result(response: Response) -> ResultBody:
    """A studio result; images the transport decoded as they streamed in ride along with it
    (and are closed if the answer turns out invalid)."""
    if response.decoded is None:
        return structure(json_of(check(response), "result"), ResultBody, "result")
    value, images = response.decoded
    try:
        body = structure(value, ResultBody, "result")
    except BaseException:
        close_images(images.values())
        raise
    return attrs.evolve(body, decoded=images) if images else body


def decode_job_handle(response: Response) -> JobHandle:
    return structure(json_of(check(response), "job"), JobHandle, "job")


def decode_job(response: Response) -> Job:
    job: Job = scrub_echoes(structure(json_of(check(response), "job"), Job, "job"), response.body)
    return job


def decode_secret(response: Response) -> str:
    return _string_field(response, "webhook secret", "secret")


def decode_base64_image(value: str) -> bytes:
    """Decode one base64 output image."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ResponseValidationError("result: an output image is not valid base64") from None


# -- studio calls -------------------------------------------------------------------------


@attrs.frozen
class StudioCall:
    """A validated studio call, ready to send synchronously or to submit as a job."""

    path: str
    fields: Mapping[str, Any]
    output_format: str

    def as_job(self, client_request_id: str | None, callback_url: str | None) -> dict[str, Any]:
        """The fields of the same call submitted asynchronously."""
        return {**self.fields, **async_fields(client_request_id, callback_url)}


def upload(put_url: str, body: bytes | FileBody, content_type: str) -> Request:
    """A PUT of one training photo to a presigned URL (no API key: the URL is the credential)."""
    return Request(
        "PUT", put_url, "upload", {"Content-Type": content_type, "User-Agent": USER_AGENT}, body
    )
