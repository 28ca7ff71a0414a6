"""A storage gateway for tests: an aiohttp proxy in front of moto's S3 server that does what
moto's server does not.

moto (5.x, server mode) neither checks a presigned URL's signature nor its ``X-Amz-Expires``:
an expired URL still answers 200. The gateway enforces expiry the way S3 does (a 403
``AccessDenied`` "Request has expired" XML body), with a clock ``ahead`` seconds in the future
(as if validation had waited that long in a queue), refuses chosen keys with a plain 403
``AccessDenied``, and records every request's raw path and query as they arrived on the wire.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import aiohttp
import attrs
from aiohttp import web
from yarl import URL

EXPIRED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Request has expired</Message><X-Amz-Expires>{expires}</X-Amz-Expires>"
    "<RequestId>GW1</RequestId></Error>"
)
DENIED = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    "<Message>Access Denied</Message><RequestId>GW2</RequestId></Error>"
)
_HOP = {"content-length", "transfer-encoding", "connection", "host"}


@attrs.define
class Gateway:
    """What the gateway does and saw; change ``ahead`` and ``deny`` while it runs."""

    upstream: str
    ahead: float = 0.0
    deny: set[str] = attrs.Factory(set)  # object keys (no bucket) answered 403
    raw_gets: list[str] = attrs.Factory(list)  # raw path + query of each GET, as received
    put_headers: list[dict[str, str]] = attrs.Factory(list)  # each PUT's headers

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    def _expired(self, request: web.Request) -> str | None:
        query = request.query
        if "X-Amz-Date" not in query or "X-Amz-Expires" not in query:
            return None
        signed = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        expires = int(query["X-Amz-Expires"])
        if time.time() + self.ahead > signed.timestamp() + expires:
            return EXPIRED.format(expires=expires)
        return None

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.method == "PUT":
            self.put_headers.append(dict(request.headers))
        if request.method == "GET":
            self.raw_gets.append(request.raw_path)
            refusal = self._expired(request)
            key = request.path.split("/", 2)[-1]
            if refusal is None and key in self.deny:
                refusal = DENIED
            if refusal is not None:
                return web.Response(status=403, text=refusal, content_type="application/xml")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        url = self.upstream + request.raw_path
        async with (
            aiohttp.ClientSession(auto_decompress=False) as http,
            http.request(
                request.method, URL(url, encoded=True), data=body, headers=headers
            ) as resp,
        ):
            data = await resp.read()
            passed = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            return web.Response(status=resp.status, body=data, headers=passed)
