"""Studio calls from user arguments: validated, with their images checked and described.

Shared by the synchronous calls on ``PhotaClient`` and the job submits on ``phota.jobs``. Only
file headers and tails are read here (to check formats and that files are whole); image bytes
are read later, while streaming. Reading them is part of the call, so it runs inside the call's
deadline (``timeout``, in seconds), and what remains of it is left for sending (``left``).
"""

from __future__ import annotations

import math
import time
from typing import Any

from . import _protocol as proto
from ._inputs import prepare_image
from ._protocol import StudioCall


def left(budget: float, started: float) -> float:
    """What remains of ``budget`` seconds counted from ``started`` (``time.monotonic()``)."""
    if not math.isfinite(budget):
        return budget  # inf stays inf; nan is refused where deadlines are set
    return max(0.0, budget - (time.monotonic() - started))


async def edit_call(
    prompt: Any, images: Any, *, timeout: float | None = None, **options: Any
) -> StudioCall:
    """Validate an edit (prompt and image count first, then each image) into a ``StudioCall``."""
    proto.check_prompt(prompt)
    listed = proto.check_edit_images(images)
    started = time.monotonic()
    sources = [
        await prepare_image(img, f"images[{i}]", _rest(timeout, started))
        for i, img in enumerate(listed)
    ]
    fields = proto.edit_fields(prompt, sources, **options)
    return StudioCall("/edit", fields, fields["output_format"])


async def enhance_call(image: Any, *, timeout: float | None = None, **options: Any) -> StudioCall:
    """Validate an enhance into a ``StudioCall``."""
    fields = proto.enhance_fields(await prepare_image(image, "image", timeout), **options)
    return StudioCall("/enhance", fields, fields["output_format"])


async def remix_call(
    image: Any, reference: Any, *, timeout: float | None = None, **options: Any
) -> StudioCall:
    """Validate a remix into a ``StudioCall``."""
    started = time.monotonic()
    content = await prepare_image(image, "image", timeout)
    style = await prepare_image(reference, "reference", _rest(timeout, started))
    fields = proto.remix_fields(content, style, **options)
    return StudioCall("/remix", fields, fields["output_format"])


def _rest(timeout: float | None, started: float) -> float | None:
    return None if timeout is None else left(timeout, started)
