"""The emulated service's own HTTP calls: downloading input URLs and delivering callbacks.

Emulator decisions:

- An input or training URL that does not answer 200, cannot be reached, or serves more than
  ``max_bytes`` answers 400 ``IMAGE_DOWNLOAD_FAILED`` (or ends the profile in ``ERROR``).
- A callback is tried three times, ``0.2 s`` then ``0.4 s`` apart on the emulator's clock,
  until the receiver answers 2xx. Its ``t=`` stamp is real Unix time (not the emulator's
  clock): the receiver checks it against its own wall clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import aiohttp

from ._clock import Clock
from ._failure import APIFailure

CALLBACK_ATTEMPTS = 3
CALLBACK_BACKOFF = 0.2  # seconds before the second attempt; the n-th waits n times this


def sign(body: bytes, secret: str, stamp: int) -> str:
    """The ``X-Phota-Signature`` header for ``body``: ``t=<stamp>,v1=<hex HMAC-SHA256>``."""
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
    return f"t={stamp},v1={mac.hexdigest()}"


class Outbound:
    """One lazily opened client session for every request the emulator itself sends."""

    def __init__(self, clock: Clock, max_bytes: int) -> None:
        self._clock = clock
        self._max_bytes = max_bytes
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def download(self, url: str, field_name: str) -> bytes:
        """GET an input or training URL; any failure is a 400 naming the field."""
        try:
            async with self.session.get(url) as resp:
                if resp.status != 200:
                    raise APIFailure(
                        400, "IMAGE_DOWNLOAD_FAILED", f"{field_name}: {resp.status} from {url}"
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise APIFailure(
                            400,
                            "IMAGE_DOWNLOAD_FAILED",
                            f"{field_name}: {url} serves more than {self._max_bytes} bytes",
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise APIFailure(
                400, "IMAGE_DOWNLOAD_FAILED", f"{field_name}: cannot download {url} ({exc!r})"
            ) from exc

    async def deliver(
        self, url: str, job: dict[str, Any], secret: str, log: list[dict[str, Any]]
    ) -> None:
        """POST a finished job to its callback URL, signed; best effort, a few tries.

        Every attempt is appended to ``log``.
        """
        body = json.dumps(job).encode()
        for attempt in range(1, CALLBACK_ATTEMPTS + 1):
            header = sign(body, secret, int(time.time()))
            record: dict[str, Any] = {
                "job_id": job["job_id"],
                "url": url,
                "attempt": attempt,
                "signature": header,
            }
            try:
                async with self.session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json", "X-Phota-Signature": header},
                ) as resp:
                    record["status"] = resp.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                record["error"] = repr(exc)
            log.append(record)
            if 200 <= record.get("status", 0) < 300 or attempt == CALLBACK_ATTEMPTS:
                return
            await self._clock.sleep(CALLBACK_BACKOFF * attempt)
