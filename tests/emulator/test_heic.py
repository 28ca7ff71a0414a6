"""Contract: HEIC/HEIF inputs are decoded (through pillow-heif, registered on first use)."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path

import aiohttp
import pillow_heif
from PIL import Image

from phota_async import PhotaClient
from phota_async.testing import PhotaEmulator
from tests.conftest import decode
from tests.emulator.helpers import P


def heic_bytes(
    size: tuple[int, int] = (96, 64), colour: tuple[int, int, int] = (200, 60, 40)
) -> bytes:
    """A real HEIC file made by pillow-heif's encoder."""
    img = Image.new("RGB", size, colour)
    buf = io.BytesIO()
    pillow_heif.from_pillow(img).save(buf, quality=90)
    data = buf.getvalue()
    assert data[4:12] == b"ftypheic"
    return data


async def test_enhance_accepts_a_heic_photo(http: aiohttp.ClientSession) -> None:
    """A HEIC input answers 200 with an image of the input's shape and colour."""
    body = {"image": base64.b64encode(heic_bytes()).decode(), "output_format": "png"}
    async with http.post(f"{P}/enhance", json=body) as resp:
        answer = await resp.json()
    assert resp.status == 200, answer
    out = decode(base64.b64decode(answer["images"][0])).convert("RGB")
    assert out.size == (96, 64)
    red, green, blue = out.getpixel((48, 32))  # type: ignore[misc]
    assert red > green
    assert red > blue


async def test_the_sdk_sends_a_heic_file_that_the_emulator_edits(
    emu: PhotaEmulator, tmp_path: Path
) -> None:
    """A .heic file given to the client comes back edited, end to end."""
    path = tmp_path / "photo.heic"
    path.write_bytes(heic_bytes((120, 90)))
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
        result = await phota.edit("make it brighter", images=[path], aspect_ratio="1:1")
        data = await result.read(0)
    assert decode(data).size == (128, 128)


def test_importing_the_emulator_does_not_load_pillow_heif() -> None:
    """pillow-heif is imported only when a HEIC input arrives."""
    code = "import sys, phota_async.testing; assert 'pillow_heif' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
