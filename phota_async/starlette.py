"""Phota callbacks in Starlette and FastAPI apps (the ``[fastapi]`` extra).

``webhook_endpoint()`` returns an ASGI endpoint with the same guarantees as the aiohttp
``webhook_handler()``, both being thin adapters of ``phota_async.webhooks.WebhookReceiver``:
the raw body is read up to a cap and verified in constant time before it is parsed (401 for a
bad signature), replays and out-of-order deliveries are dropped (204, nothing called), and the
client's waiters on the job are nudged. Use it as a FastAPI route or a Starlette ``Route``:

```python
from phota_async.starlette import webhook_endpoint

hook = webhook_endpoint(phota.webhook_secret, on_job, client=phota)
app.add_api_route("/phota-hook", hook, methods=["POST"])
# or: Starlette(routes=[Route("/phota-hook", hook, methods=["POST"])])
```

Importing ``phota_async`` never imports this module (nor Starlette).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from .webhooks import (
    DEFAULT_MAX_BODY,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_REMEMBER,
    DEFAULT_TOLERANCE,
    SIGNATURE_HEADER,
    OnJob,
    SecretSource,
    WebhookReceiver,
)

if TYPE_CHECKING:
    from ._client import PhotaClient

__all__ = ["webhook_endpoint"]


class _SenderLeft(Exception):
    """The sender disconnected before its body ended."""


async def _body(request: Request) -> AsyncIterator[bytes]:
    # Only a disconnect while reading is translated: one raised by ``on_job`` stays a 500.
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise _SenderLeft from None


def webhook_endpoint(
    secret: SecretSource,
    on_job: OnJob | None = None,
    *,
    client: PhotaClient | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    remember: int = DEFAULT_REMEMBER,
    max_body: int = DEFAULT_MAX_BODY,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette/FastAPI endpoint for Phota callbacks.

    Each delivery's body is streamed in up to ``max_body`` bytes (413 past it), verified
    (401 for every missing, malformed or wrong signature, without parsing), parsed (400 if it
    is not a job), checked against the replays and steps back already seen (204 without calling
    anything), then ``client``'s waiters on the job are nudged and ``on_job(job)`` is awaited;
    the answer is 204. If ``on_job`` raises, the error propagates (the server answers 500) and
    the delivery is forgotten, so that the sender's retry is handled.

    Args:
        secret: the webhook secret, several during a rotation, or an async function returning
            it (``phota.webhook_secret``, cached by the client).
        on_job: called with each verified, new, in-order job.
        client: a ``PhotaClient`` whose waiters should be woken.
        tolerance: accepted clock difference, in seconds.
        remember: how many deliveries and jobs to remember for dropping replays and steps
            back (the memory is bounded by it).
        max_body: the largest body read, in bytes.
        read_timeout: the most seconds a body may take to arrive (408 past it), and the most
            an async ``secret`` source may take (503 past it, as when it raises).

    Returns:
        An async endpoint taking a Starlette ``Request`` and returning a ``Response``: pass
        it to FastAPI's ``app.add_api_route()`` or to Starlette's ``Route()``, with
        ``methods=["POST"]``.

    Raises:
        InvalidRequestError: ``tolerance``, ``max_body`` or ``read_timeout`` is invalid.
    """
    receiver = WebhookReceiver(
        secret,
        on_job,
        client=client,
        tolerance=tolerance,
        remember=remember,
        max_body=max_body,
        read_timeout=read_timeout,
    )

    async def phota_webhook(request: Request) -> Response:
        try:
            reply = await receiver.handle(
                _body(request),
                request.headers.get(SIGNATURE_HEADER),
                request.headers.get("content-length"),
            )
        except _SenderLeft:
            # Nothing was handed over, and anybody can do it unsigned: not a server error.
            return Response(status_code=400)
        if reply.detail is None:
            return Response(status_code=reply.status)
        return JSONResponse({"detail": reply.detail}, status_code=reply.status)

    return phota_webhook
