"""An aiohttp.web service that shares one PhotaClient for its whole lifetime.

Endpoints:
    POST /edit?prompt=...     body: an image; answers the edited JPEG
    POST /jobs?prompt=...     body: an image; submits an edit job with a callback, answers its id
    GET  /jobs/{job_id}       waits (briefly) for the job and answers the edited JPEG
    POST /phota-hook          Phota's signed job callbacks

Run it against the local emulator:
    phota emulator --port 8080   # then export the two variables it prints
    python examples/web_service.py
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from aiohttp import web

from phota_async import Job, PhotaClient
from phota_async.errors import InvalidRequestError, PhotaError
from phota_async.webhooks import webhook_handler

CLIENT = web.AppKey("phota", PhotaClient)
FINISHED = web.AppKey("finished", dict)


async def phota_client(app: web.Application) -> AsyncIterator[None]:
    """One client (one connection pool) for the app's lifetime, closed on shutdown."""
    async with PhotaClient() as phota:
        app[CLIENT] = phota
        app[FINISHED] = {}
        app.router.add_post(
            "/phota-hook", webhook_handler(phota.webhook_secret, on_job(app), client=phota)
        )
        yield


def on_job(app: web.Application):  # type: ignore[no-untyped-def]
    async def remember(job: Job) -> None:
        app[FINISHED][job.id] = job.status

    return remember


async def edit(request: web.Request) -> web.Response:
    """Edit the posted image synchronously and answer the result."""
    phota = request.app[CLIENT]
    try:
        result = await phota.edit(request.query.get("prompt", ""), images=[await request.read()])
    except InvalidRequestError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    except PhotaError as exc:
        raise web.HTTPBadGateway(text=str(exc)) from exc
    return web.Response(body=await result.read(), content_type="image/jpeg")


async def submit(request: web.Request) -> web.Response:
    """Submit an edit job whose callback comes back to this service."""
    phota = request.app[CLIENT]
    callback = str(request.url.with_path("/phota-hook").with_query(None))
    job = await phota.jobs.submit_edit(
        request.query.get("prompt", ""), images=[await request.read()], callback_url=callback
    )
    return web.json_response({"job_id": job.id}, status=202)


async def job_result(request: web.Request) -> web.Response:
    """Wait for a job (confirmed early by its callback) and answer its image."""
    phota = request.app[CLIENT]
    result = await phota.jobs.wait(request.match_info["job_id"], timeout=60)
    return web.Response(body=await result.read(), content_type="image/jpeg")


def create_app() -> web.Application:
    app = web.Application(client_max_size=50 * 1024 * 1024)
    app.cleanup_ctx.append(phota_client)
    app.router.add_post("/edit", edit)
    app.router.add_post("/jobs", submit)
    app.router.add_get("/jobs/{job_id}", job_result)
    return app


if __name__ == "__main__":
    web.run_app(create_app(), host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
