"""Edit, remix and generate pipelines, and photos read as image arrays: each row paid once."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from PIL import Image

from phota_async.ray import (
    PhotaEdit,
    PhotaEnhance,
    PhotaGenerate,
    PhotaRemix,
    close_governor,
)
from tests.ray.conftest import write_photos
from tests.ray.emulator_process import EmulatorProcess
from tests.ray.test_pipeline import constructor

pytestmark = [
    pytest.mark.ray,
    pytest.mark.usefixtures("ray_session"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"),
]


@pytest.fixture
def run_id() -> Iterator[str]:
    """A fresh run id; its governor is ended after the test."""
    name = f"test-{uuid.uuid4().hex[:8]}"
    yield name
    close_governor(name)


def run(ds: Any, udf: type, emulator: EmulatorProcess, run_id: str, **kwargs: Any) -> list[Any]:
    """``ds`` through ``udf`` on two actors; the rows."""
    out = ds.map_batches(
        udf,
        fn_constructor_kwargs=constructor(emulator, run_id, **kwargs),
        concurrency=2,
        batch_size=4,
        num_cpus=0.25,
    )
    return list(out.take_all())


def assert_paid_once(emulator: EmulatorProcess, rows: list[Any], count: int) -> None:
    """``count`` rows, no error, one charge per row, every output a whole image."""
    assert len(rows) == count
    assert [r["error"] for r in rows if r["error"]] == []
    ledger = emulator.ledger()
    assert ledger["charges"] == count
    assert set(ledger["keys"]) == {r["client_request_id"] for r in rows}
    for row in rows:
        assert len(row["output"]) == 1
        with Image.open(io.BytesIO(row["output"][0])) as image:
            image.load()


def test_an_edit_pipeline_pays_once_per_photo(
    emulator: EmulatorProcess, tmp_path: Path, run_id: str
) -> None:
    """PhotaEdit applies one prompt to 8 photos: 8 charges, 8 whole outputs."""
    write_photos(tmp_path / "in", 8)
    ds = ray.data.read_binary_files(str(tmp_path / "in"), include_paths=True)
    rows = run(ds, PhotaEdit, emulator, run_id, prompt="make it brighter")
    assert_paid_once(emulator, rows, 8)


def test_a_remix_pipeline_pays_once_per_photo(
    emulator: EmulatorProcess, tmp_path: Path, run_id: str
) -> None:
    """PhotaRemix restyles 8 photos after one reference path: 8 charges, 8 whole outputs."""
    photos = write_photos(tmp_path / "in", 9)
    reference = photos.pop()
    reference.rename(tmp_path / "style.jpg")
    ds = ray.data.read_binary_files(str(tmp_path / "in"), include_paths=True)
    rows = run(ds, PhotaRemix, emulator, run_id, reference=str(tmp_path / "style.jpg"))
    assert_paid_once(emulator, rows, 8)


def test_a_generate_pipeline_pays_once_per_prompt(emulator: EmulatorProcess, run_id: str) -> None:
    """PhotaGenerate over a dataset of 8 prompts: 8 charges, the prompts kept in the rows."""
    prompts = [f"a lighthouse at dusk, take {i}" for i in range(8)]
    ds = ray.data.from_items([{"prompt": p} for p in prompts])
    rows = run(ds, PhotaGenerate, emulator, run_id)
    assert_paid_once(emulator, rows, 8)
    assert sorted(r["prompt"] for r in rows) == sorted(prompts)


def test_photos_read_as_image_arrays_are_each_paid_once(
    emulator: EmulatorProcess, tmp_path: Path, run_id: str
) -> None:
    """read_images rows (decoded arrays, with paths) are enhanced: 8 charges, 8 outputs."""
    write_photos(tmp_path / "in", 8)
    ds = ray.data.read_images(str(tmp_path / "in"), include_paths=True)
    rows = run(ds, PhotaEnhance, emulator, run_id)
    assert_paid_once(emulator, rows, 8)
    assert all("image" not in r for r in rows)


async def test_an_image_array_row_is_keyed_by_its_pixels_not_its_png_encoding(
    run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read_images row's identity is a digest of its pixels, so workers whose Pillow or zlib
    encode PNG differently still derive the same key (a retried task is not paid twice)."""
    import numpy as np

    from phota_async.ray import _udf

    pixels = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    udf = PhotaEnhance(run_id=run_id)
    _, first = await udf._value({"image": pixels})
    plain = _udf._png
    monkeypatch.setattr(_udf, "_png", lambda array: plain(array) + b"\0")
    _, second = await udf._value({"image": pixels})
    assert first == second
