"""A hostile server that echoes the API key back cannot make the SDK show it anywhere; every
public error survives pickling."""

from __future__ import annotations

import inspect
import json
import logging
import pickle
import traceback
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from phota_async import PhotaClient, errors
from phota_async._cli import main
from phota_async._redact import Secret
from phota_async.errors import PhotaError
from phota_async.models import Job, JobError, Profile
from phota_async.testing import PhotaEmulator
from tests.conftest import jpeg_bytes, local_server

KEY = "sk_live_Hostile0123456789abcdefXYZ"
JSON_ESCAPED = "".join(f"\\u{ord(c):04x}" for c in KEY)  # as a server may write it in JSON


def _texts(error: BaseException) -> list[str]:
    """Every text a user could see of an error: str, repr, traceback, and its fields."""
    fields = [repr(v) for v in vars(error).values()]
    return [str(error), repr(error), "".join(traceback.format_exception(error)), *fields]


def _hostile_app() -> web.Application:
    """Each route echoes the key its own way: raw, URL-encoded, JSON-escaped, partly, in a
    header, cut by truncation, or inside a job's or a profile's server text."""

    async def raw(request: web.Request) -> web.Response:
        key = request.headers["X-API-Key"]
        body = {"code": "BAD", "detail": f"key {key} refused", "echo": {"k": [key]}}
        return web.json_response(body, status=400, headers={"X-Request-Id": key})

    async def escaped(request: web.Request) -> web.Response:
        text = f'{{"code": "BAD", "detail": "key {JSON_ESCAPED} refused"}}'
        return web.Response(text=text, status=400, content_type="application/json")

    async def url_encoded(request: web.Request) -> web.Response:
        key = quote(request.headers["X-API-Key"], safe="")
        upper = "".join(f"%{b:02X}" for b in request.headers["X-API-Key"].encode())
        return web.Response(text=f"<html>{key} {upper}</html>", status=403)

    async def cut(request: web.Request) -> web.Response:
        detail = "x" * 480 + request.headers["X-API-Key"]  # straddles the 500-character cut
        return web.json_response({"code": "NOT_FOUND", "detail": detail}, status=404)

    async def partial(request: web.Request) -> web.Response:
        return web.json_response({"detail": f"key {KEY[:16]}... refused"}, status=401)

    async def job(request: web.Request) -> web.Response:
        error = {"code": "BOOM", "detail": "used " + request.headers["X-API-Key"]}
        return web.json_response({"job_id": "job_1", "status": "FAILED", "error": error})

    async def profile(request: web.Request) -> web.Response:
        message = "trained with " + request.headers["X-API-Key"]
        return web.json_response({"profile_id": "p_1", "status": "ERROR", "message": message})

    async def echoed_success(request: web.Request) -> web.Response:
        result = {"known_subjects": {"counts": {}}, "images": [], "download_urls": []}
        return web.json_response(result, headers={"X-Request-Id": request.headers["X-API-Key"]})

    app = web.Application()
    app.router.add_post("/generate", raw)
    app.router.add_post("/enhance", echoed_success)
    app.router.add_post("/edit", escaped)
    app.router.add_get("/profiles/ids", url_encoded)
    app.router.add_delete("/profiles/cut", cut)
    app.router.add_get("/profiles/partial/status", partial)
    app.router.add_get("/jobs/job_1", job)
    app.router.add_get("/profiles/p_1/status", profile)
    return app


@pytest.fixture
async def hostile() -> AsyncIterator[PhotaClient]:
    """A client of the key-echoing server."""
    async with (
        local_server(_hostile_app()) as origin,
        PhotaClient(api_key=KEY, base_url=origin) as client,
    ):
        yield client


async def _error_of(call: Any) -> PhotaError:
    with pytest.raises(PhotaError) as info:
        await call
    return info.value


async def test_raw_echo_in_body_and_request_id_is_scrubbed(hostile: PhotaClient) -> None:
    """A key echoed raw in the detail, nested in the body and as the request id is masked."""
    error = await _error_of(hostile.generate("x"))
    assert isinstance(error, errors.BadRequestError)
    assert "***" in error.detail
    assert error.request_ids == ("***",)
    assert [t for t in _texts(error) if KEY in t] == []


async def test_json_escaped_echo_is_scrubbed(hostile: PhotaClient) -> None:
    """A key written with JSON \\u escapes is masked once the body is decoded."""
    error = await _error_of(hostile.edit("x", images=["https://example.com/a.jpg"]))
    assert isinstance(error, errors.APIError)
    assert error.detail == "key *** refused"
    assert [t for t in _texts(error) if KEY in t or JSON_ESCAPED in t] == []


async def test_url_encoded_echo_in_a_non_json_body_is_scrubbed(hostile: PhotaClient) -> None:
    """A key URL-encoded (either hex case) in an HTML error page is masked."""
    error = await _error_of(hostile.profiles.list())
    assert isinstance(error, errors.APIError)
    assert error.body == "<html>*** ***</html>"
    assert [t for t in _texts(error) if "%5F" in t.upper()] == []


async def test_echo_cut_by_truncation_leaves_no_part_of_the_key(hostile: PhotaClient) -> None:
    """A key straddling the detail's length cut is masked before the cut."""
    error = await _error_of(hostile.profiles.delete("cut"))
    assert isinstance(error, errors.NotFoundError)
    assert error.detail.endswith("***")
    assert KEY[:6] not in error.detail


async def test_partial_echo_is_scrubbed(hostile: PhotaClient) -> None:
    """A long enough fragment of the key (here its first 16 characters) is masked."""
    error = await _error_of(hostile.profiles.get("partial"))
    assert isinstance(error, errors.AuthenticationError)
    assert error.detail == "key ***... refused"


async def test_job_failure_detail_is_scrubbed(hostile: PhotaClient) -> None:
    """A failed job whose server detail echoes the key raises an error without it."""
    job = await hostile.jobs.get("job_1")
    error = await _error_of(job.wait(timeout=5))
    assert isinstance(error, errors.JobFailedError)
    assert error.detail == "used ***"
    assert [t for t in _texts(error) if KEY in t] == []


async def test_profile_failure_message_is_scrubbed(hostile: PhotaClient) -> None:
    """A failed profile whose server message echoes the key raises an error without it."""
    error = await _error_of(hostile.profiles.wait_ready("p_1", timeout=5))
    assert isinstance(error, errors.ProfileTrainingError)
    assert error.profile.message == "trained with ***"
    assert [t for t in _texts(error) if KEY in t] == []


async def test_snapshots_and_results_never_show_the_key(hostile: PhotaClient) -> None:
    """A successful answer echoing the key in X-Request-Id or a status message shows it nowhere."""
    result = await hostile.enhance(jpeg_bytes())
    profile = await hostile.profiles.get("p_1")
    job = await hostile.jobs.get("job_1")
    texts = [repr(result), str(result.request_id), repr(profile), repr(job), str(job.error)]
    assert [t for t in texts if KEY in t] == []


async def test_debug_log_lines_never_show_the_key(
    hostile: PhotaClient, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG log lines about answers that echo the key show it masked."""
    caplog.set_level(logging.DEBUG, logger="phota_async")
    for call in (hostile.generate("x"), hostile.profiles.list()):
        await _error_of(call)
    lines = [record.getMessage() for record in caplog.records]
    assert lines
    assert [line for line in lines if KEY in line] == []
    assert any("***" in line for line in lines)


def test_cli_error_line_never_shows_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI's one-line error for an answer echoing the key shows it masked."""
    with PhotaEmulator(api_key=KEY) as emu:
        emu.add_fault("/profiles/ids", status=401, body={"detail": f"bad key {quote(KEY)}"})
        code = main(["profiles", "list", "--api-key", KEY, "--base-url", emu.base_url])
    err = capsys.readouterr().err
    assert code == 1
    assert "AuthenticationError" in err
    assert KEY not in err
    assert "***" in err


def test_scrubbing_covers_mixed_encodings_and_leaves_other_text() -> None:
    """Mixed URL and JSON escapes are masked; text without the key is returned unchanged."""
    secret = Secret(KEY)
    mixed = "%73" + KEY[1:5] + f"\\u{ord(KEY[5]):04X}" + KEY[6:]
    assert secret.scrub(f"a {mixed} b") == "a *** b"
    assert secret.scrub("an ordinary 100% sure line\\n") == "an ordinary 100% sure line\\n"
    assert KEY not in repr(secret)


# -- pickling ----------------------------------------------------------------------------

SAMPLE_ARGS: dict[str, Any] = {
    "message": "went wrong",
    "field": "images[0]",
    "status": 418,
    "code": "TEAPOT",
    "detail": "short and stout",
    "body": {"detail": "short and stout", "extra": [1, 2]},
    "request_ids": ["req_1", "req_2"],
    "last": Profile(id="p_1", status="IN_PROGRESS"),
    "profile": Profile(id="p_1", status="ERROR", message="no face"),
    "job": Job(id="job_1", status="FAILED", error=JobError("BOOM", "it broke")),
    "endpoint": "enhance",
    "estimate": 0.12,
    "spent": 1.0,
    "reserved": 0.5,
    "limit": 1.5,
    "scope": "client",
}


def _public_errors() -> list[type[BaseException]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, PhotaError) and not cls.__name__.startswith("_")
    ]


def _sample(cls: type[BaseException]) -> BaseException:
    params = list(inspect.signature(cls).parameters.values())
    args = [SAMPLE_ARGS[p.name] for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    kwargs = {p.name: SAMPLE_ARGS[p.name] for p in params if p.kind is p.KEYWORD_ONLY}
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        args = [SAMPLE_ARGS["message"]]
    return cls(*args, **kwargs)


@pytest.mark.parametrize("cls", _public_errors(), ids=lambda c: c.__name__)
def test_every_error_pickles_to_the_same_type_message_and_fields(
    cls: type[BaseException],
) -> None:
    """Each public error class round-trips through pickle with its message and attributes."""
    error = _sample(cls)
    error.attempts = 3  # type: ignore[attr-defined]
    if not isinstance(error, errors.APIError):
        error.request_ids = ("req_9",)  # type: ignore[attr-defined]
    else:
        error.retry_after = 2.5
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert vars(copy) == vars(error)


def test_a_bound_job_in_an_error_pickles_unbound() -> None:
    """A failed job bound to a live client pickles without the client, keeping its data."""
    client = PhotaClient(api_key=KEY, base_url="http://127.0.0.1:9")
    job = Job(id="job_1", status="FAILED", error=JobError("BOOM", "x"), backend=client.jobs)
    copy = pickle.loads(pickle.dumps(errors.JobFailedError(job)))
    assert copy.job == job
    assert copy.code == "BOOM"
    with pytest.raises(ValueError, match="not bound"):
        copy.job._bound()


def test_a_huge_error_body_is_kept_only_in_part() -> None:
    """An error body of 8 MiB keeps only its first ERROR_BODY_LIMIT characters as text."""
    from phota_async import _protocol as proto

    huge = json.dumps({"detail": "x" * (8 << 20)}).encode()
    error = proto.error_from(proto.Response(500, {}, huge))
    assert isinstance(error.body, str)
    assert len(error.body) == proto.ERROR_BODY_LIMIT
    assert len(str(error)) < 1000


def test_keys_sharing_a_long_prefix_are_each_masked_whole() -> None:
    """With two live keys that share a long prefix, each echo is masked whole, not in part."""
    from phota_async import _redact

    first = _redact.register("sk_test_ABCDEFGHIJKLMNOP_XYZ")
    second = _redact.register("sk_test_ABCDEFGHIJKLMNOP_QRS")
    text = "a sk_test_ABCDEFGHIJKLMNOP_XYZ b %73k_test_ABCDEFGHIJKLMNOP_QRS c"
    assert _redact.scrub(text) == "a *** b *** c"
    del first, second


def test_repeated_echoes_are_each_found_once() -> None:
    """64 KiB of back-to-back echoes is scanned one step per echo, not one per key fragment."""
    echoes = 64 * 1024 // len(KEY)
    secret = Secret(KEY)
    assert len(secret._fragment_spans(KEY * echoes)) == echoes
    assert secret.scrub(f"a {KEY * echoes} b {KEY[3:20]} c") == "a *** b *** c"


@given(
    key=st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789_-", min_size=6, max_size=60
    ),
    data=st.data(),
)
def test_any_long_run_of_the_key_is_masked(key: str, data: st.DataObject) -> None:
    """Whatever run of at least 12 key characters (or the whole of a shorter key) a text holds,
    it is masked: the quick anchor test never lets one through."""
    from phota_async import _redact

    size = min(12, len(key))
    start = data.draw(st.integers(0, len(key) - size))
    end = data.draw(st.integers(start + size, len(key)))
    secret = _redact.Secret(key)
    assert key[start:end] not in secret.scrub(f"<<{key[start:end]}>>")
