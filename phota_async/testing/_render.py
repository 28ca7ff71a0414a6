"""Turning a validated studio request into output images, with Pillow, off the event loop.

``prepare`` decodes the request's inputs (downloading URLs through the function it is given)
and returns the work for one output; ``produce`` runs that work for every output in a worker
thread, so the emulator's loop stays free to answer other calls while images are made.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from PIL import Image

from . import _images
from ._failure import APIFailure

Fetch = Callable[[str, str], Awaitable[bytes]]  # (url, field name) -> bytes
Work = Callable[[int], Image.Image]  # output index -> image


async def load_image(value: str, field_name: str, fetch: Fetch) -> Image.Image:
    """Decode an image input given as base64 or an http(s) URL.

    Raises:
        APIFailure: 400 when the input cannot be downloaded or decoded.
    """
    if value.startswith(("http://", "https://")):
        data = await fetch(value, field_name)
    else:
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise APIFailure(
                400, "INVALID_IMAGE", f"{field_name}: neither a URL nor valid base64"
            ) from exc
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, _images.decode, data)
    except _images.ImageDecodeError as exc:
        raise APIFailure(400, "INVALID_IMAGE", f"{field_name}: {exc}") from exc


async def prepare(
    endpoint: str,
    body: dict[str, Any],
    faces: Sequence[Image.Image],
    cap: int | None,
    fetch: Fetch,
) -> Work:
    """Decode the inputs of a studio call; return what makes its ``i``-th output."""
    if endpoint == "enhance":
        image = await load_image(body["image"], "image", fetch)
        return partial(_enhance_one, image, cap)
    if endpoint == "remix":
        content = await load_image(body["input_image"], "input_image", fetch)
        style = await load_image(body["reference_image"], "reference_image", fetch)
        return partial(_remix_one, content, style, cap)
    if endpoint == "edit":
        images = [
            await load_image(value, f"images.{i}", fetch) for i, value in enumerate(body["images"])
        ]
        size = _images.target_size(
            body.get("aspect_ratio") or "auto", body.get("resolution") or "1K", images[0].size, cap
        )
        return partial(_edit_one, images, body.get("prompt") or "", size)
    ratio = body.get("aspect_ratio") or "auto"
    size = _images.target_size(
        "1:1" if ratio == "auto" else ratio, body.get("resolution") or "1K", (1, 1), cap
    )
    return partial(_generate_one, body.get("prompt") or "", size, list(faces))


async def produce(work: Work, count: int, fmt: str) -> list[bytes]:
    """Make and encode ``count`` outputs as ``png`` or ``jpg``, one worker-thread hop each."""
    loop = asyncio.get_running_loop()
    return [await loop.run_in_executor(None, _encode_one, work, i, fmt) for i in range(count)]


def _enhance_one(image: Image.Image, cap: int | None, _i: int) -> Image.Image:
    if cap is not None and max(image.size) > cap:
        image = image.resize(_images.fit_side(image.size, cap))  # work at the output size
    return _images.enhance(image)


def _remix_one(content: Image.Image, style: Image.Image, cap: int | None, _i: int) -> Image.Image:
    side = 2048 if cap is None else min(2048, cap)
    return _images.remix(content.resize(_images.fit_side(content.size, side)), style)


def _edit_one(
    images: list[Image.Image], prompt: str, size: tuple[int, int], _i: int
) -> Image.Image:
    out = _images.edit(images, prompt)
    return out.resize(_images.fit_side(out.size, max(size))) if out.size != size else out


def _generate_one(
    prompt: str, size: tuple[int, int], faces: list[Image.Image], i: int
) -> Image.Image:
    return _images.generate(prompt, size, faces, seed=i)


def _encode_one(work: Work, i: int, fmt: str) -> bytes:
    return _images.encode(work(i), fmt)
