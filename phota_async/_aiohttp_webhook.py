"""The ``aiohttp.web`` adapter of ``webhooks.WebhookReceiver`` (behind ``webhook_handler``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from .webhooks import SIGNATURE_HEADER, WebhookReceiver


def aiohttp_handler(receiver: WebhookReceiver) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An ``aiohttp.web`` handler answering each delivery as ``receiver`` decides."""

    async def handle(request: web.Request) -> web.Response:
        reply = await receiver.handle(
            request.content.iter_any(),
            request.headers.get(SIGNATURE_HEADER),
            request.headers.get("Content-Length"),
        )
        if reply.detail is None:
            return web.Response(status=reply.status)
        return web.json_response({"detail": reply.detail}, status=reply.status)

    return handle
