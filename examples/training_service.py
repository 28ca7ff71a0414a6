"""An aiohttp.web service that trains profiles from uploaded photos, through S3.

Phota trains only from photo URLs. This service takes the photos as a multipart upload,
stores them in a bucket with ``S3Uploader`` (presigned GET URLs, nothing public), starts the
training, and deletes the photos from the bucket once training has ended.

Endpoints:
    POST /profiles          multipart: files in "photo" fields (5-50), optional "tier", "tag";
                            answers 202 {"profile_id", "status"}
    GET  /profiles/{id}     answers {"profile_id", "status", "message"}

Configuration (environment):
    PHOTA_API_KEY, PHOTA_BASE_URL     the API (or the emulator: `phota emulator`)
    PHOTA_S3_BUCKET                   the bucket for training photos (it must exist)
    PHOTA_S3_PREFIX                   key prefix (default "phota-training/")
    PHOTA_S3_ENDPOINT_URL             an S3-compatible store (MinIO, R2, GCS); AWS when unset
    AWS_ACCESS_KEY_ID, ...            credentials, from the usual AWS chain

Run it:
    pip install 'phota-async[s3]'
    PHOTA_S3_BUCKET=my-bucket python examples/training_service.py
    curl -F photo=@a.jpg -F photo=@b.jpg ... -F tier=fast localhost:8000/profiles
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from phota_async import PhotaClient
from phota_async.errors import InvalidRequestError, PhotaError, ProfileTrainingError
from phota_async.storage import S3Uploader

MAX_PHOTOS = 50
MAX_PHOTO_BYTES = 25 * 1024 * 1024
CHUNK = 1 << 16

CLIENT = web.AppKey("phota", PhotaClient)
TRAINING = web.AppKey("training", dict)  # profile id -> the task waiting for it, then cleaning up


def uploader() -> S3Uploader:
    """A new uploader per profile: its cleanup deletes only that profile's photos."""
    return S3Uploader(
        os.environ["PHOTA_S3_BUCKET"],
        os.environ.get("PHOTA_S3_PREFIX", "phota-training/"),
        endpoint_url=os.environ.get("PHOTA_S3_ENDPOINT_URL") or None,
        cleanup=True,
    )


async def save_part(part: BodyPartReader, path: Path) -> None:
    """Stream one uploaded file to disk, refusing one larger than ``MAX_PHOTO_BYTES``."""
    size = 0
    with path.open("wb") as out:  # blocking writes of 64 KiB: short enough for an example
        while chunk := await part.read_chunk(CHUNK):
            size += len(chunk)
            if size > MAX_PHOTO_BYTES:
                raise web.HTTPRequestEntityTooLarge(max_size=MAX_PHOTO_BYTES, actual_size=size)
            out.write(chunk)


async def finish_training(phota: PhotaClient, s3: S3Uploader, profile_id: str) -> str:
    """Wait for the training to end, then delete its photos from the bucket."""
    try:
        profile = await phota.profiles.wait_ready(profile_id)
    except ProfileTrainingError as exc:
        profile = exc.profile
    await s3.finish(profile)
    return profile.status


async def create_profile(request: web.Request) -> web.Response:
    """Store the posted photos in S3 and start training a profile from them."""
    phota = request.app[CLIENT]
    fields: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="phota-upload-") as folder:
        photos: list[Path] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest(text="nested multipart is not accepted")
            if part.name == "photo":
                if len(photos) == MAX_PHOTOS:
                    raise web.HTTPBadRequest(text=f"at most {MAX_PHOTOS} photos")
                # Our own file names: the client's are not trusted as paths.
                suffix = Path(part.filename or "").suffix.lower()[:6] or ".jpg"
                path = Path(folder) / f"{len(photos):03d}{suffix}"
                await save_part(part, path)
                photos.append(path)
            elif part.name in ("tier", "tag"):
                fields[part.name] = (await part.text())[:200]
        s3 = uploader()
        try:
            profile = await phota.profiles.create(
                photos, tier=fields.get("tier", "standard"), tag=fields.get("tag"), uploader=s3
            )
        except InvalidRequestError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from exc
        except PhotaError as exc:
            raise web.HTTPBadGateway(text=str(exc)) from exc
    task = asyncio.create_task(finish_training(phota, s3, profile.id))
    request.app[TRAINING][profile.id] = task
    return web.json_response({"profile_id": profile.id, "status": profile.status}, status=202)


async def profile_status(request: web.Request) -> web.Response:
    """A profile's status as Phota reports it."""
    profile = await request.app[CLIENT].profiles.get(request.match_info["profile_id"])
    return web.json_response(
        {"profile_id": profile.id, "status": profile.status, "message": profile.message}
    )


def create_app(**client_options: Any) -> web.Application:
    """The service; ``client_options`` go to its ``PhotaClient`` (such as ``poll=``)."""

    async def phota_client(app: web.Application) -> AsyncIterator[None]:
        async with PhotaClient(**client_options) as phota:
            app[CLIENT] = phota
            app[TRAINING] = {}
            yield
            # Shutting down: trainings still running keep their photos (no cleanup yet).
            for task in app[TRAINING].values():
                task.cancel()
            await asyncio.gather(*app[TRAINING].values(), return_exceptions=True)

    app = web.Application(client_max_size=MAX_PHOTOS * MAX_PHOTO_BYTES)
    app.cleanup_ctx.append(phota_client)
    app.router.add_post("/profiles", create_profile)
    app.router.add_get("/profiles/{profile_id}", profile_status)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
