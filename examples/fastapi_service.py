"""A FastAPI service that shares one PhotaClient for its whole lifetime.

Endpoints:
    POST /edit                 form: photo (file), prompt naming [[profile_id]], profile_id?
                               answers the edited JPEG
    POST /profiles             form: photos (5-50 files), tier?; starts training, answers 202
    GET  /profiles/{id}        the profile's status
    POST /jobs                 form: photo, prompt, profile_id?; submits an edit job whose
                               callback comes back here, answers 202 with its id. An
                               ``Idempotency-Key`` header becomes the job's client_request_id:
                               a client's retry with the same key gets the same job, unbilled
    GET  /jobs/{id}            the job's status (and whether its callback arrived)
    GET  /jobs/{id}/image      waits (briefly) for the job and answers the edited JPEG
    POST /phota-hook           Phota's signed job callbacks (phota_async.starlette)

SDK errors become HTTP answers the caller can act on: throttled -> 503 with Retry-After,
budget or credit exhausted -> 402, invalid input -> 422, unknown outcome of a paid call ->
502 that says so and names a request id (so that nobody retries blindly and pays twice).

Training photos go to S3 when ``PHOTA_S3_BUCKET`` is set (``PHOTA_S3_PREFIX``,
``PHOTA_S3_ENDPOINT_URL`` for MinIO/R2; the ``[s3]`` extra), else to the local emulator's
store. Behind a proxy, set ``PHOTA_CALLBACK_URL`` to this service's public webhook URL.

Run it against the local emulator:
    phota emulator --port 8080   # then export the two variables it prints
    python examples/fastapi_service.py
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phota_async import Job, PhotaClient, RetryPolicy, Uploader, emulator_uploader
from phota_async.errors import (
    BadRequestError,
    BudgetExceededError,
    InsufficientCreditError,
    InvalidRequestError,
    NotFoundError,
    OutcomeUnknownError,
    PhotaError,
    ProfileNotReadyError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
    WaitTimeoutError,
)
from phota_async.starlette import webhook_endpoint

MAX_BODY = 200 * 1024 * 1024  # a whole request: up to 50 training photos
MAX_PHOTO = 20 * 1024 * 1024
MAX_PHOTOS = 50
PROFILE_ID = r"^[A-Za-z0-9_-]{1,64}$"

log = logging.getLogger("phota_service")


class TrainingStarted(BaseModel):
    profile_id: str
    status: str


class ProfileState(BaseModel):
    profile_id: str
    status: str
    message: str | None


class JobSubmitted(BaseModel):
    job_id: str
    status: str


class JobState(BaseModel):
    job_id: str
    status: str
    called_back: str | None  # the status its callback reported, once one arrived


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """One client (one connection pool) for the app's lifetime, closed on shutdown."""
    async with AsyncExitStack() as stack:
        # A caller is waiting on the other end: retry a throttled call once, then hand the
        # Retry-After to the caller (503) rather than hold its request for a minute.
        phota = await stack.enter_async_context(
            PhotaClient(retry=RetryPolicy(max_attempts=2, max_retry_after=5.0))
        )
        app.state.phota = phota
        app.state.called_back = {}
        app.state.uploader = await _uploader(phota, stack)
        app.state.webhook = webhook_endpoint(
            phota.webhook_secret, _remember(app.state.called_back), client=phota
        )
        yield


async def _uploader(phota: PhotaClient, stack: AsyncExitStack) -> Uploader:
    bucket = os.environ.get("PHOTA_S3_BUCKET")
    if not bucket:
        return emulator_uploader(phota)
    from phota_async.storage import S3Uploader  # the [s3] extra, only when configured

    s3 = S3Uploader(
        bucket,
        os.environ.get("PHOTA_S3_PREFIX", "phota/"),
        endpoint_url=os.environ.get("PHOTA_S3_ENDPOINT_URL") or None,
    )
    return await stack.enter_async_context(s3)


def _remember(called_back: dict[str, str]) -> Any:
    async def on_job(job: Job) -> None:
        called_back[job.id] = job.status  # a real service would update its database here

    return on_job


def get_phota(request: Request) -> PhotaClient:
    """The app's client, for routes (``phota: Phota``)."""
    client: PhotaClient = request.app.state.phota
    return client


Phota = Annotated[PhotaClient, Depends(get_phota)]
Photo = Annotated[UploadFile, File(description="JPEG, PNG, WebP or HEIC")]
Prompt = Annotated[str, Form(min_length=1, max_length=4000)]
ProfileId = Annotated[str | None, Form(pattern=PROFILE_ID)]


async def _read(upload: UploadFile) -> bytes:
    data = await upload.read(MAX_PHOTO + 1)
    if len(data) > MAX_PHOTO:
        raise HTTPException(413, f"{upload.filename}: over {MAX_PHOTO} bytes")
    return data


def _spooled(upload: UploadFile) -> BinaryIO:
    """The upload's spooled file (on disk past 1 MB), size-checked, rewound: the SDK reads
    it a few photos at a time, so a 50-photo request never sits in memory whole."""
    size = upload.size
    if size is None:
        size = upload.file.seek(0, os.SEEK_END)
    if size > MAX_PHOTO:
        raise HTTPException(413, f"{upload.filename}: over {MAX_PHOTO} bytes")
    upload.file.seek(0)
    return upload.file


# Printable ASCII, as the SDK's client_request_id takes it (1-256 characters).
IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", pattern=r"^[\x21-\x7e]{1,256}$")
]


def _profiles(profile_id: str | None) -> dict[str, Any]:
    return {"profile_ids": [profile_id]} if profile_id else {}


async def edit(
    phota: Phota, photo: Photo, prompt: Prompt, profile_id: ProfileId = None
) -> Response:
    """Edit the uploaded photo synchronously and answer the result."""
    image = await _read(photo)
    async with await phota.edit(prompt, images=[image], **_profiles(profile_id)) as result:
        jpeg = await result.read()
    return Response(
        jpeg, media_type="image/jpeg", headers={"X-Phota-Request-Id": result.request_id or ""}
    )


async def train(
    request: Request,
    phota: Phota,
    photos: Annotated[list[UploadFile], File()],
    tier: Annotated[Literal["standard", "fast"], Form()] = "fast",
) -> TrainingStarted:
    """Start training a profile from the uploaded photos."""
    if len(photos) > MAX_PHOTOS:
        raise HTTPException(422, f"at most {MAX_PHOTOS} photos")
    images = [_spooled(photo) for photo in photos]
    profile = await phota.profiles.create(images, tier=tier, uploader=request.app.state.uploader)
    return TrainingStarted(profile_id=profile.id, status=profile.status)


async def profile_status(phota: Phota, profile_id: str) -> ProfileState:
    """A profile's current status."""
    profile = await phota.profiles.get(profile_id)
    return ProfileState(profile_id=profile.id, status=profile.status, message=profile.message)


async def submit(
    request: Request,
    phota: Phota,
    photo: Photo,
    prompt: Prompt,
    profile_id: ProfileId = None,
    idempotency_key: IdempotencyKey = None,
) -> JobSubmitted:
    """Submit an edit job whose callback comes back to this service; a retry carrying the
    same ``Idempotency-Key`` answers the same job and is not billed again."""
    callback = os.environ.get("PHOTA_CALLBACK_URL") or str(request.url_for("phota_hook"))
    image = await _read(photo)
    job = await phota.jobs.submit_edit(
        prompt,
        images=[image],
        callback_url=callback,
        client_request_id=idempotency_key,
        **_profiles(profile_id),
    )
    return JobSubmitted(job_id=job.id, status=job.status)


async def job_status(request: Request, phota: Phota, job_id: str) -> JobState:
    """A job's status, and the status its callback reported, if one arrived."""
    job = await phota.jobs.get(job_id)
    called_back = request.app.state.called_back.get(job.id)
    return JobState(job_id=job.id, status=job.status, called_back=called_back)


async def job_image(phota: Phota, job_id: str) -> Response:
    """Wait for a job (confirmed early by its callback) and answer its image."""
    async with await phota.jobs.wait(job_id, timeout=60) as result:
        jpeg = await result.read()
    return Response(jpeg, media_type="image/jpeg")


async def phota_hook(request: Request) -> Response:
    """Phota's signed callbacks: verified, de-duplicated, and waiters nudged."""
    response: Response = await request.app.state.webhook(request)
    return response


def phota_error(request: Request, exc: Exception) -> JSONResponse:
    """An SDK error as an answer the caller can act on."""
    assert isinstance(exc, PhotaError)
    # Phota's request id when an answer came back, else one of ours; logged either way, so
    # that a support ticket can be matched to this service's logs and to Phota's.
    request_id = exc.request_id or f"svc_{uuid.uuid4().hex}"
    log.warning("%s %s -> %s [%s]", request.method, request.url.path, exc, request_id)
    body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
    body["request_id"] = request_id
    headers: dict[str, str] = {}
    if isinstance(exc, (RateLimitError, ServiceUnavailableError)):
        status = 503
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after or 1)))
    elif isinstance(exc, (BudgetExceededError, InsufficientCreditError)):
        status = 402
    elif isinstance(exc, ProfileNotReadyError):
        status = 409
    elif isinstance(exc, (InvalidRequestError, BadRequestError, UnprocessableEntityError)):
        status = 422
    elif isinstance(exc, NotFoundError):
        status = 404
    elif isinstance(exc, WaitTimeoutError):
        status = 504
    elif isinstance(exc, OutcomeUnknownError):
        # The call may have been charged: say so, and how to find out, rather than retry.
        status = 502
        body["outcome"] = "unknown"
        body["client_request_id"] = exc.client_request_id
    else:
        status = 502  # Phota or the network failed; the caller's request was fine
    return JSONResponse(body, status_code=status, headers=headers)


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, declared or streamed (uploads are
    spooled to disk by the form parser, which bounds neither)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse({"detail": "request body too large"}, 413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, limited, send)


def create_app() -> FastAPI:
    """The service, with its client opened and closed by the app's lifespan."""
    app = FastAPI(title="Phota example", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.add_exception_handler(PhotaError, phota_error)
    app.post("/edit", response_class=Response)(edit)
    app.post("/profiles", status_code=202)(train)
    app.get("/profiles/{profile_id}")(profile_status)
    app.post("/jobs", status_code=202)(submit)
    app.get("/jobs/{job_id}")(job_status)
    app.get("/jobs/{job_id}/image", response_class=Response)(job_image)
    app.post("/phota-hook", name="phota_hook", include_in_schema=False)(phota_hook)
    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
