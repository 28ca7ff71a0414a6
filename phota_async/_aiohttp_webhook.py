"""The ``aiohttp.web`` adapter of ``webhooks.WebhookReceiver`` (behind ``webhook_handler``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from .webhooks import SIGNATURE_HEADER, WebhookReceiver


class _SenderLeft(Exception):
    """The sender disconnected before its body ended."""


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    # Only a disconnect while reading is translated: one raised by ``on_job`` stays a 500.
    try:
        async for chunk in request.content.iter_any():
            yield chunk
    except ConnectionResetError:
        raise _SenderLeft from None


def aiohttp_handler(receiver: WebhookReceiver) -> Callable[[web.Request], Awaitable[web.Response]]:
    """An ``aiohttp.web`` handler answering each delivery as ``receiver`` decides."""

    async def handle(request: web.Request) -> web.Response:
        try:
            reply = await receiver.handle(
                _body(request),
                request.headers.get(SIGNATURE_HEADER),
                request.headers.get("Content-Length"),
            )
        except _SenderLeft:
            # Nothing was handed over, and anybody can do it unsigned: not a server error.
            return web.Response(status=400)
        if reply.detail is None:
            return web.Response(status=reply.status)
        return web.json_response({"detail": reply.detail}, status=reply.status)

    return handle
