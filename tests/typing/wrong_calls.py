"""Calls that ``mypy --strict`` must refuse (checked by ``tests/typing/test_mypy.py``).

Each line ending in ``# E: <code>`` must raise that mypy error code, and no other line may
raise any. Never imported or run: not collected by pytest, left out of ruff.
"""

from __future__ import annotations

from pathlib import Path

from phota_async import PhotaClient


async def wrong_calls(phota: PhotaClient, photo: Path) -> None:
    await phota.generate("a cat", base_model="dall-e")  # E: arg-type
    await phota.generate("a cat", n=7)  # E: arg-type
    await phota.generate("a cat", aspect_ratio="2:1")  # E: arg-type
    await phota.generate("a cat", resolution="8K")  # E: arg-type
    await phota.generate("[[pid]] in a garden", profile_ids=["pid"])  # E: call-arg
    await phota.enhance(12345)  # E: arg-type
    await phota.enhance(photo, output_format="jpeg")  # E: arg-type
    await phota.enhance(photo, promt="brighter")  # E: call-arg
    await phota.remix(photo, reference=photo, quality="high")  # E: call-arg
    await phota.edit("make [[p]] smile", images=[photo], profile_ids="p")  # E: arg-type
    await phota.edit("make [[p]] smile", images=[photo], profile_ids=[1, 2])  # E: arg-type
    await phota.enhance(photo, profile_ids={"p"})  # E: arg-type
    await phota.generate("a cat", aspec_ratio="1:1")  # E: call-arg
    await phota.edit("x", images=[photo], base_modle="nb2")  # E: call-arg
    await phota.jobs.submit_generate("a cat", resolutoin="2K")  # E: call-arg
    await phota.jobs.submit_edit("x", images=[photo], qualty="high")  # E: call-arg
    await phota.jobs.submit_remix(photo, reference=photo, n=5)  # E: arg-type
    await phota.jobs.submit_remix(photo, reference=photo, promt="x")  # E: call-arg
    phota.remix_many([photo], reference=photo, outptu_format="png")  # E: call-arg
    await phota.edit("make it warmer", images=[12345])  # E: list-item
    await phota.jobs.submit_enhance(photo, response_mode="stream")  # E: arg-type
    await phota.jobs.submit_edit("x", images=[photo], base_model="gpt-5")  # E: arg-type
    phota.enhance_many([photo], promt="brighter")  # E: call-arg
    phota.edit_many("x", [photo], n=0)  # E: arg-type
    phota.remix_many([photo], reference=photo, via_jobs=True)  # E: call-arg
    phota.enhance_many([12345])  # E: type-var
    await phota.profiles.create([photo], tier="slow")  # E: arg-type
    async for item in phota.enhance_many([photo]):
        name: str = item.input  # E: assignment
        print(name)


def wrong_blocking_calls(photo: Path) -> None:
    from phota_async import sync

    with sync.PhotaClient() as phota:
        phota.enhance(photo, promt="brighter")  # E: call-arg
        phota.generate("a cat", n=7)  # E: arg-type
        data: bytes = phota.enhance(photo)  # E: assignment
