"""examples/fastapi_service.py under a real uvicorn server on loopback, called over real HTTP,
with the Phota emulator behind it: its endpoints, and the answers it gives when Phota throttles,
loses an answer or refuses."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from aiobotocore.session import get_session

import phota_async
from phota_async.testing import PhotaEmulator
from tests.asgi.servers import uvicorn_server
from tests.helpers import jpeg_bytes

EXAMPLE = Path(__file__).parent.parent.parent / "examples" / "fastapi_service.py"

pytestmark = pytest.mark.phota_emulator(
    training_seconds=0.2, validation_seconds=0.02, job_queue_seconds=0.01, job_run_seconds=0.02
)


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_fastapi_service", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example(phota_emulator: PhotaEmulator, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The example module, its client configured for the test's emulator by environment."""
    monkeypatch.setenv("PHOTA_API_KEY", phota_emulator.api_key)
    monkeypatch.setenv("PHOTA_BASE_URL", phota_emulator.base_url)
    for name in ("PHOTA_S3_BUCKET", "PHOTA_S3_ENDPOINT_URL", "PHOTA_CALLBACK_URL"):
        monkeypatch.delenv(name, raising=False)
    return load_example()


@pytest.fixture
def no_backoff() -> Iterator[None]:
    """The service's retries happen without their waits (it runs in this process)."""
    with phota_async.set_testing():
        yield


@pytest.fixture
async def service(example: ModuleType, no_backoff: None) -> AsyncIterator[httpx.AsyncClient]:
    """The example app under uvicorn, and an HTTP client pointed at it."""
    async with (
        uvicorn_server(example.create_app()) as origin,
        httpx.AsyncClient(base_url=origin, timeout=30) as http,
    ):
        yield http


def photo(i: int = 0) -> tuple[str, bytes, str]:
    return (f"photo-{i}.jpg", jpeg_bytes(i), "image/jpeg")


async def _until(http: httpx.AsyncClient, path: str, field: str, value: str) -> dict[str, str]:
    """GET ``path`` until its JSON ``field`` equals ``value`` (at most 10 s)."""
    for _ in range(500):
        answer = (await http.get(path)).json()
        if answer.get(field) == value:
            return answer  # type: ignore[no-any-return]
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path}: {field} never became {value}; last {answer}")


async def test_edit_answers_the_edited_jpeg_of_a_named_subject(
    service: httpx.AsyncClient, phota_emulator: PhotaEmulator
) -> None:
    """POST /edit with an uploaded photo and a ``[[profile_id]]`` prompt answers a JPEG, and
    the subject is recognised (billed as such)."""
    pid = phota_emulator.add_profile()
    resp = await service.post(
        "/edit", files={"photo": photo()}, data={"prompt": f"make [[{pid}]] smile"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.content[:3] == b"\xff\xd8\xff"
    assert resp.headers["x-phota-request-id"]
    assert [c["endpoint"] for c in phota_emulator.charges()] == ["edit"]


async def test_an_input_the_sdk_refuses_is_a_422_and_sends_nothing(
    service: httpx.AsyncClient, phota_emulator: PhotaEmulator
) -> None:
    """A photo that is not an image is refused by the SDK before any request: the service
    answers 422 and Phota is never called."""
    files = {"photo": ("notes.txt", b"not an image at all", "text/plain")}
    resp = await service.post("/edit", files=files, data={"prompt": "warmer"})
    assert resp.status_code == 422
    assert resp.json()["error"] == "InvalidRequestError"
    assert [r for r in phota_emulator.requests if r["method"] == "POST"] == []


async def test_uploaded_photos_train_a_profile_through_the_emulator_store(
    service: httpx.AsyncClient,
) -> None:
    """POST /profiles with five photos answers 202 with a profile id, whose status the
    service reports until READY."""
    files = [("photos", photo(i)) for i in range(5)]
    resp = await service.post("/profiles", files=files, data={"tier": "fast"})
    assert resp.status_code == 202, resp.text
    profile_id = resp.json()["profile_id"]
    ready = await _until(service, f"/profiles/{profile_id}", "status", "READY")
    assert ready["profile_id"] == profile_id


async def test_training_never_reads_an_upload_whole_into_memory(
    service: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /profiles hands the SDK the spooled upload files (read a few photos at a time),
    never a photo read whole through UploadFile.read."""
    from starlette.datastructures import UploadFile

    async def refuse(self: UploadFile, size: int = -1) -> bytes:
        raise AssertionError(f"{self.filename} was read whole into memory")

    monkeypatch.setattr(UploadFile, "read", refuse)
    files = [("photos", photo(i)) for i in range(5)]
    resp = await service.post("/profiles", files=files, data={"tier": "fast"})
    assert resp.status_code == 202, resp.text


async def test_a_photo_over_the_cap_is_refused_before_training(
    service: httpx.AsyncClient, example: ModuleType, phota_emulator: PhotaEmulator
) -> None:
    """A training photo over MAX_PHOTO bytes answers 413 and no training is requested."""
    big = ("big.jpg", jpeg_bytes(9) + bytes(example.MAX_PHOTO), "image/jpeg")
    files = [("photos", photo(i)) for i in range(4)] + [("photos", big)]
    resp = await service.post("/profiles", files=files, data={"tier": "fast"})
    assert resp.status_code == 413, resp.text
    assert "big.jpg" in resp.text
    assert [r for r in phota_emulator.requests if "profiles/add" in r["path"]] == []


async def test_uploaded_photos_train_a_profile_through_s3(
    example: ModuleType,
    no_backoff: None,
    s3_env: str,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With PHOTA_S3_BUCKET set, the uploaded photos go to that bucket (presigned URLs for
    Phota) and the profile trains to READY."""
    monkeypatch.setenv("PHOTA_S3_BUCKET", bucket)
    monkeypatch.setenv("PHOTA_S3_PREFIX", "train/")
    monkeypatch.setenv("PHOTA_S3_ENDPOINT_URL", s3_env)
    async with (
        uvicorn_server(example.create_app()) as origin,
        httpx.AsyncClient(base_url=origin, timeout=30) as http,
    ):
        files = [("photos", photo(i)) for i in range(5)]
        resp = await http.post("/profiles", files=files, data={"tier": "fast"})
        assert resp.status_code == 202, resp.text
        await _until(http, f"/profiles/{resp.json()['profile_id']}", "status", "READY")
    async with get_session().create_client("s3", endpoint_url=s3_env) as s3:
        listed = await s3.list_objects_v2(Bucket=bucket)
    keys = [o["Key"] for o in listed.get("Contents", [])]
    assert len(keys) == 5
    assert all(key.startswith("train/") for key in keys)


async def test_an_unknown_profile_is_a_404(service: httpx.AsyncClient) -> None:
    """GET /profiles/{id} for a profile Phota does not know answers 404."""
    resp = await service.get("/profiles/nobody")
    assert resp.status_code == 404
    assert resp.json()["error"] == "NotFoundError"


async def test_a_submitted_job_is_called_back_and_served(
    service: httpx.AsyncClient, phota_emulator: PhotaEmulator
) -> None:
    """POST /jobs answers 202 with a job id; the job's signed callback reaches the service's
    webhook route, and its image is served."""
    resp = await service.post("/jobs", files={"photo": photo()}, data={"prompt": "blur"})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]
    image = await service.get(f"/jobs/{job_id}/image")
    assert image.status_code == 200
    assert image.content[:3] == b"\xff\xd8\xff"
    status = await _until(service, f"/jobs/{job_id}", "called_back", "SUCCEEDED")
    assert status["status"] == "SUCCEEDED"
    assert [c["status"] for c in phota_emulator.callbacks] == [204]


async def test_a_forged_callback_is_refused(service: httpx.AsyncClient) -> None:
    """The service's webhook route answers 401 to a delivery with a wrong signature."""
    body = b'{"job_id": "job_1", "status": "SUCCEEDED"}'
    resp = await service.post(
        "/phota-hook", content=body, headers={"X-Phota-Signature": "t=1,v1=" + "0" * 64}
    )
    assert resp.status_code == 401


async def test_throttling_is_a_503_with_retry_after_and_nothing_billed(
    service: httpx.AsyncClient, phota_emulator: PhotaEmulator
) -> None:
    """When Phota answers 429 to every attempt, the service answers 503 with Phota's
    Retry-After, and nothing is charged."""
    phota_emulator.add_fault("/edit", status=429, retry_after=7, times=10)
    resp = await service.post("/edit", files={"photo": photo()}, data={"prompt": "warmer"})
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "7"
    assert resp.json()["error"] == "RateLimitError"
    assert not resp.json()["request_id"].startswith("svc_")  # Phota's own, from its answer
    assert phota_emulator.charges() == []


async def test_a_lost_answer_is_a_502_that_says_the_outcome_is_unknown(
    service: httpx.AsyncClient, phota_emulator: PhotaEmulator
) -> None:
    """When Phota processes a paid edit but its answer is lost, the service answers 502
    saying the outcome is unknown, and does not send (and pay for) the edit again."""
    phota_emulator.add_fault("/edit", drop="after")
    resp = await service.post("/edit", files={"photo": photo()}, data={"prompt": "warmer"})
    assert resp.status_code == 502
    body = resp.json()
    assert (body["error"], body["outcome"]) == ("OutcomeUnknownError", "unknown")
    assert body["request_id"].startswith("svc_")  # no answer, so no Phota request id
    assert len(phota_emulator.charges()) == 1


async def test_a_lost_job_submit_answer_is_retried_without_a_second_charge(
    service: httpx.AsyncClient, phota_emulator: PhotaEmulator
) -> None:
    """A job submit whose answer is lost is retried under its idempotency key: the service
    answers 202 and Phota charged for one job."""
    phota_emulator.add_fault("/edit", drop="after")
    resp = await service.post("/jobs", files={"photo": photo()}, data={"prompt": "blur"})
    assert resp.status_code == 202, resp.text
    assert len(phota_emulator.jobs()) == 1
    assert len(phota_emulator.charges()) == 1


async def test_a_client_retry_with_the_same_idempotency_key_pays_once(
    service: httpx.AsyncClient, phota_emulator: PhotaEmulator
) -> None:
    """Two POST /jobs carrying the same Idempotency-Key answer the same job, charged once."""
    answers = [
        await service.post(
            "/jobs",
            files={"photo": photo()},
            data={"prompt": "blur"},
            headers={"Idempotency-Key": "order-42"},
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [202, 202], answers[-1].text
    assert answers[0].json()["job_id"] == answers[1].json()["job_id"]
    assert len(phota_emulator.jobs()) == 1
    assert len(phota_emulator.charges()) == 1


@pytest.mark.parametrize("key", ["has space", "x" * 257, "\u00e9t\u00e9"])
async def test_an_invalid_idempotency_key_is_a_422_and_sends_nothing(
    service: httpx.AsyncClient, phota_emulator: PhotaEmulator, key: str
) -> None:
    """An Idempotency-Key that is not 1-256 printable ASCII characters answers 422 before
    anything is sent to Phota."""
    resp = await service.post(
        "/jobs",
        files={"photo": photo()},
        data={"prompt": "blur"},
        headers={"Idempotency-Key": key.encode()},
    )
    assert resp.status_code == 422, resp.text
    assert [r for r in phota_emulator.requests if r["method"] == "POST"] == []


async def test_exhausted_credit_is_a_402(
    service: httpx.AsyncClient, phota_emulator: PhotaEmulator
) -> None:
    """When the account's prepaid credit is exhausted, the service answers 402."""
    phota_emulator.balance = 0.0
    resp = await service.post("/edit", files={"photo": photo()}, data={"prompt": "warmer"})
    assert resp.status_code == 402
    assert resp.json()["error"] == "InsufficientCreditError"


async def test_a_request_body_over_the_cap_is_a_413(
    example: ModuleType, no_backoff: None, phota_emulator: PhotaEmulator
) -> None:
    """A request body over the service's cap is refused with 413 before it reaches Phota."""
    example.MAX_BODY = 10_000
    async with (
        uvicorn_server(example.create_app()) as origin,
        httpx.AsyncClient(base_url=origin, timeout=30) as http,
    ):
        big = ("big.jpg", jpeg_bytes(0) + b"\0" * 20_000, "image/jpeg")
        declared = await http.post("/edit", files={"photo": big}, data={"prompt": "warmer"})

        async def chunked() -> AsyncIterator[bytes]:
            yield b'--b\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n\r\n'
            for _ in range(50):
                yield b"x" * 4096

        form = {"Content-Type": "multipart/form-data; boundary=b"}
        streamed = await http.post("/edit", content=chunked(), headers=form)
    assert declared.status_code == 413
    assert streamed.status_code == 413  # no Content-Length: counted as it streams
    assert [r for r in phota_emulator.requests if r["method"] == "POST"] == []


def test_json_answers_are_typed_in_the_openapi_schema(example: ModuleType) -> None:
    """Every JSON endpoint declares its answer's model, so clients see its fields in OpenAPI."""
    paths = example.create_app().openapi()["paths"]
    declared = {
        (path, method): answer["content"]["application/json"]["schema"].get("$ref", "")
        for path, methods in paths.items()
        for method, op in methods.items()
        for code, answer in op["responses"].items()
        if code.startswith("2") and path != "/edit" and not path.endswith("/image")
    }
    assert declared == {
        ("/profiles", "post"): "#/components/schemas/TrainingStarted",
        ("/profiles/{profile_id}", "get"): "#/components/schemas/ProfileState",
        ("/jobs", "post"): "#/components/schemas/JobSubmitted",
        ("/jobs/{job_id}", "get"): "#/components/schemas/JobState",
    }
