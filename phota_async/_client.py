"""``PhotaClient``: the front door. Builds requests with ``_protocol``, sends them through the
retry wrapper over the transport seam, and decodes the answers into models."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from . import _protocol as proto
from . import _retry
from ._batch import BatchRun, Manifest, Progress
from ._bound import Bound
from ._calls import edit_call, enhance_call, remix_call
from ._deadline import Deadlines
from ._files import off_loop, temp_beside
from ._jobs import Jobs
from ._poll import PollBudget, Poller, PollPolicy
from ._profiles import Profiles
from ._protocol import FileBody, Request, Response, StudioCall
from ._retry import RetryPolicy
from ._transport import MAX_IMAGE_BYTES, MAX_RESPONSE_BYTES, AiohttpTransport, Transport
from .errors import (
    InvalidRequestError,
    OutcomeUnknownError,
    PhotaError,
    ReadTimeoutError,
)
from .models import ImageResult, Job, ResultBody, image_result, sniff_extension

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - an input type
log = logging.getLogger("phota_async")

DEFAULT_BASE_URL = "https://api.photalabs.com/v1/phota"
DEFAULT_TIMEOUT = 900.0


def _find_key(api_key: str | None) -> str:
    key = api_key or os.environ.get("PHOTA_API_KEY") or os.environ.get("PHOTA_KEY")
    if not key:
        raise InvalidRequestError(
            "api_key", "no API key: pass api_key=... or set the PHOTA_API_KEY environment variable"
        )
    return key


class PhotaClient:
    """An asyncio client for the Phota API.

    Use it as an async context manager, one per event loop, shared by every task::

        async with PhotaClient() as phota:
            result = await phota.enhance(Path("dark.jpg"))
            await result.save("out/")

    Args:
        api_key: the API key; by default ``PHOTA_API_KEY`` (or ``PHOTA_KEY``) from the environment.
        base_url: the API root; by default ``PHOTA_BASE_URL`` or the production URL.
        session: an ``aiohttp.ClientSession`` to borrow; it is never closed by the client.
        transport: a ``Transport`` to use instead (``MockTransport`` in unit tests).
        connect_timeout: seconds allowed to open a connection.
        read_timeout: seconds allowed between bytes of a response.
        timeout: seconds allowed for a whole call, retries and waits included (overridable per
            call with ``timeout=``).
        max_concurrency: the most requests in flight at once from this client.
        retry: the ``RetryPolicy``.
        poll: the ``PollPolicy`` for waits (intervals and the client-wide poll budget).
        ssl: passed to aiohttp (``True``, ``False`` or an ``ssl.SSLContext``).
        trust_env: honour proxy environment variables.
        max_response_bytes: the largest response body held in memory, counted after
            decompression (default 64 MiB); for a bytes-mode studio result, its JSON besides
            the images. Past it: ``ResponseTooLargeError``.
        max_image_bytes: the largest output image (default 64 MiB): each one decoded from a
            bytes-mode result (large ones go to temporary files, not memory) and each
            download. Past it: ``ResponseTooLargeError``.

    Raises:
        InvalidRequestError: no API key was given or found, or a limit is not positive.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        session: aiohttp.ClientSession | None = None,
        transport: Transport | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 630.0,
        timeout: float = DEFAULT_TIMEOUT,
        max_concurrency: int = 32,
        retry: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        ssl: bool | ssl_module.SSLContext = True,
        trust_env: bool = True,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_image_bytes: int = MAX_IMAGE_BYTES,
    ) -> None:
        self._api_key = _find_key(api_key)
        self.base_url = (base_url or os.environ.get("PHOTA_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        if not self.base_url.startswith(("http://", "https://")):
            raise InvalidRequestError("base_url", "must start with http:// or https://")
        self._api = proto.Api(self.base_url, self._api_key)
        if max_concurrency < 1:
            raise InvalidRequestError("max_concurrency", "must be at least 1")
        self._transport: Transport = transport or AiohttpTransport(
            session,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            ssl=ssl,
            trust_env=trust_env,
            limit=max(100, max_concurrency),
            max_response_bytes=max_response_bytes,
            max_image_bytes=max_image_bytes,
        )
        self.timeout = timeout
        self._retry = retry or RetryPolicy()
        self._bound = Bound(max_concurrency)
        self._deadlines = Deadlines()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._secret: str | None = None
        self.poll_policy = poll or PollPolicy()
        self.poller = Poller(PollBudget(self.poll_policy.max_polls_per_second))
        self.profiles = Profiles(self)
        self.jobs = Jobs(self)

    def __repr__(self) -> str:
        return f"<PhotaClient base_url={self.base_url!r} api_key=***>"

    async def __aenter__(self) -> PhotaClient:
        self._check_usable()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections this client opened. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        await self._transport.aclose()

    # -- the one path every request takes ------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise PhotaError("this PhotaClient is closed; create a new one")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise PhotaError(
                "this PhotaClient belongs to another event loop; create one client per loop"
            )

    async def _attempt(
        self, request: Request, decode: Callable[[Response], T], number: int, into: Path | None
    ) -> T:
        """One attempt: send (or download ``into`` a file) under the concurrency bound, log it,
        decode the answer."""
        debug = log.isEnabledFor(logging.DEBUG)
        started = time.perf_counter() if debug else 0.0
        if not self._bound.try_take():
            await self._bound.take()
        try:
            if into is None:
                response = await self._transport.send(request)
            else:
                response = await self._transport.download(request, into)
        except PhotaError as exc:
            if debug:
                log.debug(
                    "%s %s attempt %d failed: %s", request.method, request.endpoint, number, exc
                )
            raise
        finally:
            self._bound.give()
        if debug:
            log.debug(
                "%s %s attempt %d -> %d %s in %.1f ms",
                request.method,
                request.endpoint,
                number,
                response.status,
                response.request_id,
                (time.perf_counter() - started) * 1000,
            )
        return decode(response)

    async def _send(
        self,
        request: Request,
        decode: Callable[[Response], T],
        timeout: float | None = None,
        *,
        into: Path | None = None,
    ) -> T:
        """Send with retries and a deadline over the whole call; decode the answer.

        With ``into``, the body is streamed into that file and ``decode`` sees its first bytes.
        """
        self._check_usable()
        deadline = self.timeout if timeout is None else timeout
        try:
            with self._deadlines.after(deadline):
                try:
                    return await self._attempt(request, decode, 1, into)
                except PhotaError as first:
                    # Only a failed first attempt pays for the retry machinery.
                    numbers = itertools.count(2)
                    return await _retry.call(
                        lambda: self._attempt(request, decode, next(numbers), into),
                        retry=request.retry,
                        endpoint=request.endpoint,
                        policy=self._retry,
                        first_failure=first,
                    )
        except TimeoutError:
            if request.retry == "paid":
                raise OutcomeUnknownError(
                    f"{request.method} {request.endpoint}: no answer within the {deadline:g} s "
                    "deadline; the call may have been processed and charged. Run long calls as "
                    "jobs (phota.jobs.submit_*)."
                ) from None
            raise ReadTimeoutError(
                f"{request.method} {request.endpoint}: not finished within the {deadline:g} s deadline"
            ) from None

    # -- downloads -----------------------------------------------------------------------

    async def _fetch(self, url: str) -> bytes:
        return await self._send(proto.download(url), proto.decode_image)

    async def _save(self, url: str, target: Path) -> str:
        """Stream a signed URL to ``target`` + the real extension, atomically; return the ext.

        A body that is not an image (a cut-short or garbled answer) fails its attempt like any
        other broken download, and is fetched again.
        """
        tmp = await off_loop(temp_beside, target)
        try:
            head = await self._send(proto.download(url), proto.decode_image, into=tmp)
            ext = sniff_extension(head, target.suffix.lstrip(".") or "jpg")
            await off_loop(os.replace, tmp, target.with_suffix(f".{ext}"))
            return ext
        finally:
            await off_loop(lambda: tmp.unlink(missing_ok=True))

    async def put_file(
        self, put_url: str, data: bytes | Path, content_type: str, timeout: float | None = None
    ) -> None:
        """PUT raw bytes or a file (streamed from disk) to a presigned URL; retried as safe."""
        if isinstance(data, Path):
            size = (await off_loop(data.stat)).st_size
            body: bytes | FileBody = FileBody(data, size)
        else:
            body = data
        await self._send(proto.upload(put_url, body, content_type), proto.check, timeout)

    def image_result(
        self, body: ResultBody, output_format: str, request_id: str | None
    ) -> ImageResult:
        """An ``ImageResult`` whose URL outputs download through this client."""
        return image_result(
            body,
            output_format,
            request_id,
            proto.decode_base64_image,
            fetch=self._fetch,
            save=self._save,
        )

    async def run(self, call: StudioCall, *, via_job: bool, timeout: float | None) -> ImageResult:
        """Send a studio call synchronously, or as a job awaited here, within one deadline."""
        deadline = self.timeout if timeout is None else timeout
        if via_job:
            started = time.monotonic()
            job = await self.jobs.submit(call, timeout=deadline)
            return await job.wait(timeout=max(0.0, deadline - (time.monotonic() - started)))
        request = self._api.post(call.path, call.fields, "paid")
        return await self._send(
            request,
            lambda r: self.image_result(proto.decode_result(r), call.output_format, r.request_id),
            deadline,
        )

    # -- studio calls --------------------------------------------------------------------

    async def generate(
        self,
        prompt: str,
        *,
        n: int = 1,
        aspect_ratio: str = "auto",
        resolution: str = "1K",
        base_model: str = "nb2",
        quality: str | None = None,
        output_format: str = "jpg",
        response_mode: str = "bytes",
        profile_ids: Sequence[str] | None = None,
        via_job: bool = False,
        timeout: float | None = None,
    ) -> ImageResult:
        """Draw new images from a prompt; name trained subjects as ``[[profile_id]]`` in it.

        Args:
            prompt: what to draw. ``[[profile_id]]`` tokens bring in trained subjects.
            n: number of images, 1-4.
            aspect_ratio: ``auto``, ``1:1``, ``3:4``, ``4:3``, ``9:16`` or ``16:9``.
            resolution: ``1K``, ``2K`` or ``4K`` (as far as ``base_model`` can).
            base_model: ``nb2``, ``gpt-image-2``, ``qwen-image-2``, ``flux-2`` or ``reve``.
            quality: ``auto``/``low``/``medium``/``high``; ``gpt-image-2`` only.
            output_format: ``jpg`` or ``png``.
            response_mode: ``bytes`` (images inline) or ``urls`` (signed download URLs).
            profile_ids: refused: generate names subjects only inside the prompt.
            via_job: run the call as an asynchronous job and wait for it here: safe to retry,
                no 600 s limit.
            timeout: deadline for the whole call (submit and waiting included), in seconds.

        Returns:
            The ``ImageResult``.

        Raises:
            InvalidRequestError: a parameter is invalid (nothing was sent).
            APIError: the API refused the call.
            OutcomeUnknownError: the answer was lost and the call may have been charged.
            JobFailedError: with ``via_job``, the job failed.
        """
        call = StudioCall(
            "/generate",
            proto.generate_fields(
                prompt,
                profile_ids=profile_ids,
                aspect_ratio=aspect_ratio,
                resolution=resolution,
                base_model=base_model,
                quality=quality,
                n=n,
                output_format=output_format,
                response_mode=response_mode,
            ),
            output_format,
        )
        return await self.run(call, via_job=via_job, timeout=timeout)

    async def edit(
        self,
        prompt: str,
        *,
        images: Sequence[Any],
        profile_ids: Sequence[str] | None = None,
        aspect_ratio: str = "auto",
        resolution: str = "1K",
        base_model: str = "nb2",
        quality: str | None = None,
        n: int = 1,
        output_format: str = "jpg",
        response_mode: str = "bytes",
        via_job: bool = False,
        timeout: float | None = None,
    ) -> ImageResult:
        """Edit 1-10 images following a prompt, keeping named subjects recognisable.

        Args:
            prompt: the instruction; ``[[profile_id]]`` tokens name trained subjects.
            images: 1-10 inputs, each a ``Path``, an http(s) URL, ``bytes``, a binary file
                object or a PIL image.
            profile_ids: trained subjects to apply (merged with the prompt's tokens).
            aspect_ratio, resolution, base_model, quality, n, output_format, response_mode,
                via_job, timeout: as for ``generate``.

        Returns:
            The ``ImageResult``.

        Raises:
            InvalidRequestError: a parameter or an image is invalid (nothing was sent).
            APIError: the API refused the call.
            OutcomeUnknownError: the answer was lost and the call may have been charged.
            JobFailedError: with ``via_job``, the job failed.
        """
        call = await edit_call(
            prompt,
            images,
            profile_ids=profile_ids,
            aspect_ratio=aspect_ratio,
            resolution=resolution,
            base_model=base_model,
            quality=quality,
            n=n,
            output_format=output_format,
            response_mode=response_mode,
        )
        return await self.run(call, via_job=via_job, timeout=timeout)

    async def enhance(
        self,
        image: Any,
        *,
        profile_ids: Sequence[str] | None = None,
        prompt: str | None = None,
        n: int = 1,
        output_format: str = "jpg",
        response_mode: str = "bytes",
        via_job: bool = False,
        timeout: float | None = None,
    ) -> ImageResult:
        """Improve a photo (light, colour, noise, sharpness), keeping named subjects true.

        Args:
            image: a ``Path``, an http(s) URL, ``bytes``, a binary file object or a PIL image.
            profile_ids: trained subjects who appear in the photo.
            prompt: optional guidance.
            n, output_format, response_mode, via_job, timeout: as for ``generate``.

        Returns:
            The ``ImageResult``.

        Raises:
            InvalidRequestError: a parameter or the image is invalid (nothing was sent).
            APIError: the API refused the call.
            OutcomeUnknownError: the answer was lost and the call may have been charged.
            JobFailedError: with ``via_job``, the job failed.
        """
        call = await enhance_call(
            image,
            profile_ids=profile_ids,
            prompt=prompt,
            n=n,
            output_format=output_format,
            response_mode=response_mode,
        )
        return await self.run(call, via_job=via_job, timeout=timeout)

    async def remix(
        self,
        image: Any,
        *,
        reference: Any,
        profile_ids: Sequence[str] | None = None,
        prompt: str | None = None,
        n: int = 1,
        output_format: str = "jpg",
        response_mode: str = "bytes",
        via_job: bool = False,
        timeout: float | None = None,
    ) -> ImageResult:
        """Restyle ``image`` (the content) after ``reference`` (the style); 2K output.

        Args:
            image: the content photo, in any accepted input form.
            reference: the style photo, in any accepted input form.
            profile_ids, prompt, n, output_format, response_mode, via_job, timeout: as for
                ``enhance``.

        Returns:
            The ``ImageResult``.

        Raises:
            InvalidRequestError: a parameter or an image is invalid (nothing was sent).
            APIError: the API refused the call.
            OutcomeUnknownError: the answer was lost and the call may have been charged.
            JobFailedError: with ``via_job``, the job failed.
        """
        call = await remix_call(
            image,
            reference,
            profile_ids=profile_ids,
            prompt=prompt,
            n=n,
            output_format=output_format,
            response_mode=response_mode,
        )
        return await self.run(call, via_job=via_job, timeout=timeout)

    # -- many calls at once --------------------------------------------------------------

    def map(
        self,
        call: Callable[[I], Awaitable[ImageResult]],
        inputs: Iterable[I],
        *,
        kind: str = "custom",
        concurrency: int = 16,
        out_dir: str | Path | None = None,
        manifest: str | Path | Manifest | None = None,
        on_progress: Progress | None = None,
    ) -> BatchRun[I]:
        """Run ``call`` on every input, ``concurrency`` at a time; items arrive as they finish.

        Args:
            call: an async function of one input returning an ``ImageResult``.
            inputs: the inputs.
            kind: ``enhance``/``remix``/... for the cost summary.
            concurrency: the most calls in flight.
            out_dir: save each result's images there (atomically) as they arrive.
            manifest: a JSONL file recording finished inputs; a rerun skips them. Needs
                ``out_dir`` and ``Path`` or URL inputs.
            on_progress: called as ``on_progress(summary, item)`` after each item.

        Returns:
            A ``BatchRun``: ``async with phota.map(...) as run: async for item in run: ...``.
        """
        return BatchRun(
            self, kind, inputs, call, concurrency=concurrency, out_dir=out_dir,
            manifest=manifest, submit=None, on_progress=on_progress,
        )  # fmt: skip

    def enhance_many(
        self,
        inputs: Iterable[Any],
        *,
        concurrency: int = 16,
        out_dir: str | Path | None = None,
        manifest: str | Path | Manifest | None = None,
        via_job: bool = False,
        on_progress: Progress | None = None,
        **options: Any,
    ) -> BatchRun[Any]:
        """Enhance many photos; ``options`` are those of ``enhance``, other arguments of ``map``.

        With ``via_job=True`` each photo runs as a job whose id is recorded in the manifest as
        soon as it is submitted, so a rerun after a crash resumes it instead of paying again.
        """

        async def one(image: Any) -> ImageResult:
            return await self.enhance(image, **options)

        async def submit(image: Any) -> Job:
            return await self.jobs.submit_enhance(image, **options)

        return BatchRun(
            self, "enhance", inputs, one, concurrency=concurrency, out_dir=out_dir,
            manifest=manifest, submit=submit if via_job else None, on_progress=on_progress,
        )  # fmt: skip

    def edit_many(
        self,
        prompt: str,
        inputs: Iterable[Any],
        *,
        concurrency: int = 16,
        out_dir: str | Path | None = None,
        manifest: str | Path | Manifest | None = None,
        via_job: bool = False,
        on_progress: Progress | None = None,
        **options: Any,
    ) -> BatchRun[Any]:
        """Apply one edit prompt to each photo; arguments as for ``enhance_many`` and ``edit``."""

        async def one(image: Any) -> ImageResult:
            return await self.edit(prompt, images=[image], **options)

        async def submit(image: Any) -> Job:
            return await self.jobs.submit_edit(prompt, images=[image], **options)

        return BatchRun(
            self, "edit", inputs, one, concurrency=concurrency, out_dir=out_dir,
            manifest=manifest, submit=submit if via_job else None, on_progress=on_progress,
        )  # fmt: skip

    def remix_many(
        self,
        inputs: Iterable[Any],
        *,
        reference: Any,
        concurrency: int = 16,
        out_dir: str | Path | None = None,
        manifest: str | Path | Manifest | None = None,
        via_job: bool = False,
        on_progress: Progress | None = None,
        **options: Any,
    ) -> BatchRun[Any]:
        """Restyle each photo after one reference; arguments as for ``enhance_many``, ``remix``."""

        async def one(image: Any) -> ImageResult:
            return await self.remix(image, reference=reference, **options)

        async def submit(image: Any) -> Job:
            return await self.jobs.submit_remix(image, reference=reference, **options)

        return BatchRun(
            self, "remix", inputs, one, concurrency=concurrency, out_dir=out_dir,
            manifest=manifest, submit=submit if via_job else None, on_progress=on_progress,
        )  # fmt: skip

    async def webhook_secret(self, *, refresh: bool = False) -> str:
        """The account's webhook signing secret (fetched once, then cached).

        Args:
            refresh: fetch it again, after a rotation.
        """
        if self._secret is None or refresh:
            request = self._api.get("/webhook-secret")
            self._secret = await self._send(request, proto.decode_secret)
        return self._secret
