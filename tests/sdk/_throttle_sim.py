"""A token-bucket server for ``MockTransport``, for limiter tests on virtual time."""

from __future__ import annotations

import asyncio
import json

from phota_async._protocol import Request, Response

RESULT = json.dumps(
    {"known_subjects": {"counts": {}}, "images": [], "download_urls": ["https://x.test/o.jpg"]}
).encode()
REFUSED = b'{"code": "RATE_LIMITED", "detail": "slow down", "request_id": "r"}'


class BucketServer:
    """Answers studio POSTs from a token bucket of ``rate`` per second (``burst`` deep), after
    ``latency`` seconds; every other request succeeds. Logs ``(time, path, status)``."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        latency: float = 0.02,
        retry_after: float | None = None,
    ) -> None:
        self.rate = rate
        self.burst = rate if burst is None else burst
        self.latency = latency
        self.retry_after = retry_after
        self.tokens = self.burst
        self.at: float | None = None
        self.log: list[tuple[float, str, int]] = []

    def admit(self, now: float) -> bool:
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    async def __call__(self, request: Request) -> Response:
        now = asyncio.get_running_loop().time()
        ok = request.method != "POST" or self.admit(now)
        status = 200 if ok else 429
        self.log.append((now, request.endpoint, status))
        await asyncio.sleep(self.latency)
        headers = {"x-request-id": "r", "content-type": "application/json"}
        if not ok and self.retry_after is not None:
            headers["retry-after"] = f"{self.retry_after:g}"
        if request.method == "POST":
            return Response(status, headers, RESULT if ok else REFUSED)
        return Response(200, headers, b'{"profile_id": "p1", "status": "READY", "message": ""}')

    def sent(self, start: float, end: float, path: str = "/enhance") -> list[int]:
        """Statuses of the requests to ``path`` that arrived in ``[start, end)``."""
        return [s for t, p, s in self.log if start <= t < end and p == path]
