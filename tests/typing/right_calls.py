"""Calls that ``mypy --strict`` must accept (checked by ``tests/typing/test_mypy.py``).

Every accepted input form and option, as a user's program writes them. Never run.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from phota_async import (
    BatchItem,
    BatchRun,
    EnhanceOptions,
    ImageInput,
    Job,
    Model,
    PhotaClient,
)


async def right_calls(
    phota: PhotaClient, photo: Path, urls: list[str], pid: str, subjects: Sequence[str]
) -> None:
    model: Model = "gpt-image-2"
    await phota.generate(f"[[{pid}]] in a garden", n=4, aspect_ratio="16:9", resolution="4K")
    await phota.generate("a cat", base_model=model, quality="high", response_mode="urls")
    await phota.edit("make [[p]] smile", images=[photo, urls[0]], profile_ids=[pid])
    await phota.edit("warmer", images=(photo,), profile_ids=(pid,), via_job=True, timeout=60)
    await phota.enhance(photo.read_bytes(), prompt="brighter", output_format="png")
    await phota.enhance(bytearray(b"..."))
    await phota.enhance(io.BytesIO(b"..."))
    with photo.open("rb") as handle:
        await phota.enhance(handle, profile_ids=None)
    await phota.enhance(Image.new("RGB", (8, 8)))
    await phota.remix(photo, reference=urls[0], n=2)
    await phota.enhance(photo, profile_ids=subjects)  # a Sequence[str] from the caller's code
    await phota.jobs.submit_edit("x", images=[photo], profile_ids=subjects)
    phota.remix_many([photo], reference=photo, profile_ids=subjects)
    options: EnhanceOptions = {"n": 2, "profile_ids": [pid]}
    await phota.enhance(photo, **options)
    loose: dict[str, Any] = {"output_format": "jpg"}  # as a CLI builds them from argparse
    await phota.enhance(photo, **loose)
    job: Job = await phota.jobs.submit_generate("a cat", n=1, callback_url="https://x.test/h")
    await job.wait()
    await phota.jobs.submit_remix(photo, reference=photo, client_request_id="k1")
    await phota.profiles.create(urls, tier="fast", tag="me")
    paths: list[Path] = [photo]
    run: BatchRun[Path] = phota.enhance_many(paths, concurrency=4, n=2, prompt="x")
    async for item in run:
        back: Path = item.input
        print(back)
    first: list[BatchItem[str]] = await phota.edit_many("x", urls, base_model="flux-2").collect()
    print(first)
    mixed: list[ImageInput] = [photo, b"...", urls[0]]
    await phota.remix_many(mixed, reference=photo, out_dir="out").collect()


def right_blocking_calls(photo: Path, pid: str) -> None:
    """The blocking facade: the same arguments, synchronous returns."""
    from phota_async import sync

    with sync.PhotaClient(budget=5.0) as phota:
        result: sync.ImageResult = phota.enhance(photo, profile_ids=[pid], n=2)
        saved: list[Path] = result.save("out/")
        first: bytes = result.read(0)
        job: sync.Job = phota.jobs.submit_remix(photo, reference=photo)
        done: sync.ImageResult = job.wait(timeout=60, on_update=lambda j: print(j.status))
        run: sync.BatchRun[Path] = phota.enhance_many([photo], concurrency=2, out_dir="out")
        for item in run:
            item_input: Path = item.input
        del saved, first, done, item_input
