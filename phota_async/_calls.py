"""Studio calls from user arguments: validated, with their images checked and described.

Shared by the synchronous calls on ``PhotaClient`` and the job submits on ``phota.jobs``. Only
file headers are read here (to check formats); image bytes are read later, while streaming.
"""

from __future__ import annotations

from typing import Any

from . import _protocol as proto
from ._inputs import prepare_image
from ._protocol import StudioCall


async def edit_call(prompt: Any, images: Any, **options: Any) -> StudioCall:
    """Validate an edit (prompt and image count first, then each image) into a ``StudioCall``."""
    proto.check_prompt(prompt)
    listed = proto.check_edit_images(images)
    sources = [await prepare_image(img, f"images[{i}]") for i, img in enumerate(listed)]
    fields = proto.edit_fields(prompt, sources, **options)
    return StudioCall("/edit", fields, fields["output_format"])


async def enhance_call(image: Any, **options: Any) -> StudioCall:
    """Validate an enhance into a ``StudioCall``."""
    fields = proto.enhance_fields(await prepare_image(image, "image"), **options)
    return StudioCall("/enhance", fields, fields["output_format"])


async def remix_call(image: Any, reference: Any, **options: Any) -> StudioCall:
    """Validate a remix into a ``StudioCall``."""
    content = await prepare_image(image, "image")
    style = await prepare_image(reference, "reference")
    fields = proto.remix_fields(content, style, **options)
    return StudioCall("/remix", fields, fields["output_format"])
