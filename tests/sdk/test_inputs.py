"""Image inputs are checked before any request is sent, and every accepted form works."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from phota_async import MockTransport, PhotaClient, _inputs
from phota_async._inputs import prepare_image, sniff_format
from phota_async._protocol import Response
from phota_async.errors import InvalidRequestError
from tests.conftest import jpeg_bytes, png_bytes


def nothing_sent() -> tuple[PhotaClient, MockTransport]:
    transport = MockTransport(lambda r: pytest.fail(f"a request was sent: {r}"))
    return PhotaClient(api_key="k", base_url="https://api.test", transport=transport), transport


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\xff\xd8\xff\xe0" + b"\0" * 12, "jpeg"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "png"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "webp"),
        (b"\0\0\0\x18ftypheic\0\0\0\0", "heic"),
        (b"GIF89a" + b"\0" * 10, None),
    ],
)
def test_formats_are_sniffed_by_magic_bytes(head: bytes, fmt: str | None) -> None:
    """JPEG, PNG, WebP and HEIC are recognised by their first bytes; GIF is not accepted."""
    assert sniff_format(head) == fmt


async def test_missing_file_is_refused(tmp_path: Path) -> None:
    """A path that does not exist is an InvalidRequestError naming the field."""
    phota, _ = nothing_sent()
    with pytest.raises(InvalidRequestError, match="image: no such file"):
        await phota.enhance(tmp_path / "nope.jpg")


async def test_empty_file_is_refused(tmp_path: Path) -> None:
    """A zero-byte file is refused."""
    (tmp_path / "empty.jpg").write_bytes(b"")
    phota, _ = nothing_sent()
    with pytest.raises(InvalidRequestError, match="empty"):
        await phota.enhance(tmp_path / "empty.jpg")


async def test_non_image_file_is_refused(tmp_path: Path) -> None:
    """A file whose bytes are not an image is refused, whatever its name."""
    (tmp_path / "fake.jpg").write_text("hello, I am text")
    phota, _ = nothing_sent()
    with pytest.raises(InvalidRequestError, match="not a JPEG, PNG, WebP or HEIC"):
        await phota.enhance(tmp_path / "fake.jpg")


async def test_directory_is_refused(tmp_path: Path) -> None:
    """A directory is not an image."""
    phota, _ = nothing_sent()
    with pytest.raises(InvalidRequestError, match="not a regular file"):
        await phota.enhance(tmp_path)


async def test_plain_string_path_is_refused_with_a_hint() -> None:
    """A string that is not a URL asks for a Path instead."""
    phota, _ = nothing_sent()
    with pytest.raises(InvalidRequestError, match=r"pathlib\.Path"):
        await phota.enhance("photos/me.jpg")


async def test_bad_edit_image_names_its_index(tmp_path: Path) -> None:
    """The error for the third edit image names images[2]."""
    good = tmp_path / "a.jpg"
    good.write_bytes(jpeg_bytes())
    phota, _ = nothing_sent()
    with pytest.raises(InvalidRequestError) as info:
        await phota.edit("x", images=[good, good, b"junk"])
    assert info.value.field == "images[2]"


async def test_eleven_edit_images_are_refused() -> None:
    """More than 10 edit images is refused before reading any."""
    phota, _ = nothing_sent()
    with pytest.raises(InvalidRequestError, match="1-10 images"):
        await phota.edit("x", images=[b"x"] * 11)


async def test_unsupported_type_is_refused() -> None:
    """An int is not an image input."""
    phota, _ = nothing_sent()
    with pytest.raises(InvalidRequestError, match="unsupported image type int"):
        await phota.enhance(42)


async def test_file_object_is_streamed_from_its_position() -> None:
    """A seekable file object is read from where it stands."""
    data = png_bytes()
    handle = io.BytesIO(b"xxxx" + data)
    handle.seek(4)
    source = await prepare_image(handle, "image")
    assert not isinstance(source, str)
    assert source.size == len(data)
    assert source.read_all() == data


async def test_pil_image_is_accepted() -> None:
    """A PIL image becomes a PNG blob."""
    source = await prepare_image(Image.new("RGB", (8, 8)), "image")
    assert not isinstance(source, str)
    assert source.format == "png"


async def test_each_input_form_reaches_the_server(tmp_path: Path) -> None:
    """Path, bytes, file object, PIL image and URL all produce a request with the image."""
    path = tmp_path / "p.jpg"
    path.write_bytes(jpeg_bytes())
    bodies: list[bytes] = []

    def answer(request: object) -> Response:
        bodies.append(request.body)  # type: ignore[attr-defined]
        return Response(
            200, {}, b'{"known_subjects": {"counts": {}}, "images": [], "download_urls": []}'
        )

    async with PhotaClient(
        api_key="k", base_url="https://api.test", transport=MockTransport(answer)
    ) as phota:
        for value in (
            path,
            jpeg_bytes(),
            io.BytesIO(jpeg_bytes()),
            Image.new("RGB", (4, 4)),
            "https://x/y.jpg",
        ):
            await phota.enhance(value)
    assert len(bodies) == 5
    assert b'"image":"https://x/y.jpg"' in bodies[-1]
    assert all(b'"image":"' in b for b in bodies)


# -- streaming: the base64 text of every kind of blob ------------------------------------


def _big_jpeg(tmp_path: Path) -> tuple[Path, bytes]:
    """A file spanning three chunks, the last one short."""
    data = jpeg_bytes() + bytes(range(256)) * (2 * _inputs.CHUNK // 256 + 7)
    path = tmp_path / "big.jpg"
    path.write_bytes(data)
    return path, data


async def _text(blob: object) -> bytes:
    assert isinstance(blob, _inputs.ImageBlob)
    return b"".join([chunk async for chunk in _inputs.encoded_chunks(blob)])


async def test_file_is_streamed_as_its_base64(tmp_path: Path) -> None:
    """A file over several chunks streams exactly its base64 text."""
    path, data = _big_jpeg(tmp_path)
    assert await _text(await prepare_image(path, "image")) == base64.b64encode(data)


async def test_file_is_streamed_without_page_cache_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where non-blocking reads do not exist, every chunk is read in a worker thread."""
    monkeypatch.setattr(_inputs, "_NOWAIT", None)
    path, data = _big_jpeg(tmp_path)
    assert await _text(await prepare_image(path, "image")) == base64.b64encode(data)


async def test_partly_cached_chunk_is_completed_in_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the page cache holds only part of a chunk, the rest is read in a worker thread."""

    def half(fd: int, view: memoryview, offset: int) -> int:
        return os.preadv(fd, [view[: len(view) // 2]], offset)

    monkeypatch.setattr(_inputs, "_read_cached", half)
    path, data = _big_jpeg(tmp_path)
    assert await _text(await prepare_image(path, "image")) == base64.b64encode(data)


async def test_file_that_shrinks_while_sent_is_refused(tmp_path: Path) -> None:
    """A file cut short after it was checked raises InvalidRequestError naming the image."""
    path, data = _big_jpeg(tmp_path)
    blob = await prepare_image(path, "image")
    path.write_bytes(data[: _inputs.CHUNK + 10])
    with pytest.raises(InvalidRequestError, match=r"image.*shrank"):
        await _text(blob)


async def test_bytes_and_file_objects_stream_their_base64() -> None:
    """In-memory bytes and open file objects stream the same text as a file would."""
    data = jpeg_bytes() + b"\x01" * (_inputs.CHUNK + 3)
    assert await _text(await prepare_image(data, "image")) == base64.b64encode(data)
    assert await _text(await prepare_image(io.BytesIO(data), "image")) == base64.b64encode(data)


async def test_cached_file_is_read_without_a_worker_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose bytes are in the page cache is read on the loop, with no thread hop."""
    path, data = _big_jpeg(tmp_path)
    with path.open("rb") as probe:
        if _inputs._read_cached(probe.fileno(), memoryview(bytearray(16)), 0) != 16:
            pytest.skip("this system or file system has no non-blocking page-cache reads")

    def no_thread(*args: object) -> None:
        pytest.fail("a cached chunk was read in a worker thread")

    monkeypatch.setattr(_inputs, "_read_into", no_thread)
    assert await _text(await prepare_image(path, "image")) == base64.b64encode(data)
