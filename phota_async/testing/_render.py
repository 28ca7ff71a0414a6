"""Turning a validated studio request into output images, with Pillow, off the event loop.

``prepare`` decodes the request's inputs (downloading URLs through the function it is given)
at no more than the size its outputs need, and returns the work for one output; ``produce``
runs that work for every output in a worker thread, so the emulator's loop stays free to
answer other calls while images are made. Each output is a variant (``_images.vary``) drawn
from the call's seed and its index, so ``num_output_images: 2`` gives two different images
and the same request twice gives different bytes, unless the emulator was given a ``seed``.

Output sizes (``cap`` is the emulator's ``max_output_side``):

- generate and edit: ``aspect_ratio`` at ``resolution`` (1K = 1024 px on the longer side);
  edit's ``auto`` keeps the first input's shape, generate's ``auto`` is square.
- enhance: the input's size, at most 2048 px on the longer side.
- remix: 2K (2048 px) on the longer side, in the content image's shape.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import random
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from PIL import Image

from . import _images
from ._failure import APIFailure

Fetch = Callable[[str, str], Awaitable[bytes]]  # (url, field name) -> bytes
Work = Callable[[random.Random], Image.Image]  # the variant's random source -> image

ENHANCE_SIDE = 2048
REMIX_SIDE = 2048
# Every picture is decoded and processed at most this large, then scaled once to its output
# size and encoded once: an emulator's outputs need the right size, not the detail.
PROCESS_SIDE = 1024


class Seeds:
    """Where each call's seed comes from.

    Without an emulator seed every call draws a fresh random one. With one, a call's seed is
    derived from it, the request's content and how many times that same request was seen
    before: the same sequence of calls gives the same bytes (whatever order concurrent calls
    arrive in), and a repeated request still gets new variants.
    """

    MEMORY = 65_536  # distinct requests remembered; beyond that the oldest are forgotten
    # Fields that say how an answer is delivered, not what it shows: the SDK makes a fresh
    # client_request_id for every job submit, which must not make a seeded run unrepeatable.
    DELIVERY = frozenset({"async", "callback_url", "client_request_id", "response_mode"})

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._seen: OrderedDict[bytes, int] = OrderedDict()

    def draw(self, endpoint: str, body: dict[str, Any]) -> int:
        """The seed of one call of ``endpoint`` with ``body``."""
        if self.seed is None:
            return secrets.randbits(64)
        picture = {name: value for name, value in body.items() if name not in self.DELIVERY}
        content = json.dumps(picture, sort_keys=True, default=str).encode()
        key = hashlib.sha256(f"{self.seed}:{endpoint}:".encode() + content).digest()
        count = self._seen.pop(key, 0)
        self._seen[key] = count + 1
        while len(self._seen) > self.MEMORY:
            self._seen.popitem(last=False)
        return int.from_bytes(hashlib.sha256(key + count.to_bytes(8, "big")).digest()[:8], "big")


async def load_image(
    value: str, field_name: str, fetch: Fetch, max_side: int = _images.MAX_INPUT_SIDE
) -> Image.Image:
    """Decode an image input given as base64 or an http(s) URL, no larger than ``max_side``.

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
        return await loop.run_in_executor(None, _images.decode, data, max_side)
    except _images.ImageDecodeError as exc:
        raise APIFailure(400, "INVALID_IMAGE", f"{field_name}: {exc}") from exc


def _capped(side: int, cap: int | None) -> int:
    return side if cap is None else min(side, cap)


async def prepare(
    endpoint: str,
    body: dict[str, Any],
    faces: Sequence[Image.Image],
    cap: int | None,
    fetch: Fetch,
) -> Work:
    """Decode the inputs of a studio call; return what makes one output variant."""
    if endpoint == "enhance":
        side = _capped(ENHANCE_SIDE, cap)
        image = await load_image(body["image"], "image", fetch, min(side, PROCESS_SIDE))
        source = image.info.get("source_size", image.size)
        size = _images.fit_side(source, min(side, max(source)))
        return partial(_enhance_one, image, size)
    if endpoint == "remix":
        side = _capped(REMIX_SIDE, cap)
        content = await load_image(body["input_image"], "input_image", fetch, PROCESS_SIDE)
        style = await load_image(body["reference_image"], "reference_image", fetch, 256)
        source = content.info.get("source_size", content.size)
        return partial(_remix_one, content, style, _images.fit_side(source, side))
    ratio = body.get("aspect_ratio") or "auto"
    resolution = body.get("resolution") or "1K"
    if endpoint == "edit":
        # Decode big enough for any crop the aspect ratio may ask for, and no bigger.
        images = [
            await load_image(value, f"images.{i}", fetch, PROCESS_SIDE * 2)
            for i, value in enumerate(body["images"])
        ]
        first = images[0].info.get("source_size", images[0].size)
        size = _images.target_size(ratio, resolution, first, cap)
        return partial(_edit_one, images, body.get("prompt") or "", size)
    size = _images.target_size("1:1" if ratio == "auto" else ratio, resolution, (1, 1), cap)
    return partial(_generate_one, body.get("prompt") or "", size, list(faces))


async def produce(work: Work, count: int, fmt: str, seed: int = 0) -> list[bytes]:
    """Make and encode ``count`` variants as ``png`` or ``jpg``, one worker-thread hop each.

    Variant ``i`` is drawn from ``seed`` and ``i`` alone.
    """
    loop = asyncio.get_running_loop()
    return [
        await loop.run_in_executor(None, _encode_one, work, random.Random(f"{seed}:{i}"), fmt)
        for i in range(count)
    ]


def _processing_size(size: tuple[int, int]) -> tuple[int, int]:
    return _images.fit_side(size, min(max(size), PROCESS_SIDE))


def _enhance_one(image: Image.Image, size: tuple[int, int], rng: random.Random) -> Image.Image:
    # No grain in the variants: enhance takes grain away.
    return _images.vary(_images.enhance(image, PROCESS_SIDE), rng, size, grain=0.0)


def _remix_one(
    content: Image.Image, style: Image.Image, size: tuple[int, int], rng: random.Random
) -> Image.Image:
    return _images.vary(_images.remix(content, style), rng, size)


def _edit_one(
    images: list[Image.Image], prompt: str, size: tuple[int, int], rng: random.Random
) -> Image.Image:
    return _images.vary(_images.edit(images, prompt, _processing_size(size)), rng, size)


def _generate_one(
    prompt: str, size: tuple[int, int], faces: list[Image.Image], rng: random.Random
) -> Image.Image:
    return _images.vary(_images.generate(prompt, _processing_size(size), faces), rng, size)


def _encode_one(work: Work, rng: random.Random, fmt: str) -> bytes:
    return _images.encode(work(rng), fmt)
