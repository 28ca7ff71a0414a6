"""The emulated service's own HTTP calls: downloading input URLs and delivering callbacks.

Emulator decisions:

- An input or training URL that does not answer 200, cannot be reached, or serves more than
  ``max_bytes`` answers 400 ``IMAGE_DOWNLOAD_FAILED`` (or ends the profile in ``ERROR``).
- URLs are fetched exactly as given: a presigned URL's query string is signed byte for byte,
  so it is sent without any re-quoting (``%2F`` stays ``%2F``).
- The failure's text says why, in words a user can act on, and names the URL without its
  query string (``?***``): a presigned query is a bearer secret, and the text ends up in a
  profile's ``message``. A refusal from object storage is read from its XML error body
  (``<Code>``, ``<Message>``, at most ``ERROR_BODY_BYTES``): 403 ``Request has expired`` says
  the URL expired; another 403 that it was refused (signature, permissions) or expired; a 404
  that the photo is gone. The real service's texts are not documented; these are ours.
- A callback is tried three times, ``0.2 s`` then ``0.4 s`` apart on the emulator's clock,
  until the receiver answers 2xx. Its ``t=`` stamp is real Unix time (not the emulator's
  clock): the receiver checks it against its own wall clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from yarl import URL

from ._clock import Clock
from ._failure import APIFailure

CALLBACK_ATTEMPTS = 3
CALLBACK_BACKOFF = 0.2  # seconds before the second attempt; the n-th waits n times this
ERROR_BODY_BYTES = 4096  # the most of a refusal's body read to explain it
_XML_FIELD = re.compile(r"<(Code|Message)>([^<]{0,200})</\1>")


def shown_url(url: str) -> str:
    """``url`` as a message may show it: scheme, host and path, the query masked.

    A presigned URL's query string (``X-Amz-Signature``, ``X-Amz-Credential`` ...) lets
    anyone read the object until it expires; the bucket and key are what a reader needs.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<an unparsable URL>"
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _refusal(status: int, body: bytes) -> str:
    """Why storage refused a download, from its status and (S3-style XML) error body."""
    fields = dict(_XML_FIELD.findall(body.decode("utf-8", "replace")))
    code, message = fields.get("Code", ""), fields.get("Message", "").strip()
    said = f"storage answered {status}" + (f" {code}" if code else "")
    if message:
        said += f' "{message}"'
    if status == 403 and ("expired" in message.lower() or code == "ExpiredToken"):
        return f"{said}: the URL has expired"
    if status in (401, 403):
        return (
            f"{said}: the URL was refused (it may have expired, or its signature or "
            "permissions are not accepted)"
        )
    if status in (404, 410):
        return f"{said}: the photo is not there (deleted, or a wrong URL)"
    return said


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
        """GET an input or training URL; any failure is a 400 naming the field.

        The URL is sent byte for byte as given (``encoded=True``): re-quoting its query would
        break a presigned URL's signature.
        """
        where = shown_url(url)
        failed = f"{field_name} could not be downloaded"
        try:
            target = URL(url, encoded=True)
        except ValueError:
            raise APIFailure(400, "IMAGE_DOWNLOAD_FAILED", f"{failed}: not a URL") from None
        try:
            async with self.session.get(target) as resp:
                if resp.status != 200:
                    body = await resp.content.read(ERROR_BODY_BYTES)
                    raise APIFailure(
                        400,
                        "IMAGE_DOWNLOAD_FAILED",
                        f"{failed}: {_refusal(resp.status, body)}; from {where}",
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise APIFailure(
                            400,
                            "IMAGE_DOWNLOAD_FAILED",
                            f"{failed}: {where} serves more than {self._max_bytes} bytes",
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise APIFailure(
                400,
                "IMAGE_DOWNLOAD_FAILED",
                f"{failed}: storage could not be reached ({type(exc).__name__}); from {where}",
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
