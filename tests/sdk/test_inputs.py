"""Image inputs are checked before any request is sent, and every accepted form works."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

from phota_async import MockTransport, PhotaClient, _files, _inputs
from phota_async._inputs import prepare_image, sniff_format
from phota_async._protocol import Response
from phota_async.errors import InvalidRequestError, PhotaError
from tests.conftest import jpeg_bytes, local_server, png_bytes


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
    assert _inputs.read_all(source) == data


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


def _big_jpeg(tmp_path: Path, repeat: int = 2) -> tuple[Path, bytes]:
    """A file spanning ``repeat + 1`` chunks, the last one short."""
    photo = jpeg_bytes()  # filler goes before the end-of-image marker, so the file stays whole
    data = photo[:-2] + bytes(range(256)) * (repeat * _inputs.CHUNK // 256 + 7) + photo[-2:]
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
    data = jpeg_bytes()[:-2] + b"\x01" * (_inputs.CHUNK + 3) + b"\xff\xd9"
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


# -- truncated files: cheap structural checks of the file's ends -------------------------


def _webp_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 90)).save(buf, format="WEBP")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("whole", "message"),
    [
        (jpeg_bytes(), "end-of-image marker"),
        (png_bytes(), "IEND"),
        (_webp_bytes(), "says it is"),
    ],
    ids=["jpeg", "png", "webp"],
)
@pytest.mark.parametrize("form", ["path", "bytes", "file object"])
async def test_half_truncated_image_is_refused_naming_it(
    tmp_path: Path, whole: bytes, message: str, form: str
) -> None:
    """An image cut in half is refused before anything is sent, naming the input."""
    half = whole[: len(whole) // 2]
    path = tmp_path / "half.img"
    path.write_bytes(half)
    value = {"path": path, "bytes": half, "file object": io.BytesIO(half)}[form]
    phota, _ = nothing_sent()
    with pytest.raises(InvalidRequestError, match=f"^images\\[1\\]: .*{message}") as info:
        await phota.edit("x", images=["https://x/a.jpg", value])
    assert info.value.field == "images[1]"
    if form == "path":
        assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "data",
    [jpeg_bytes(), jpeg_bytes() + b"\0" * 300, jpeg_bytes() + b"\r\n", png_bytes(), _webp_bytes()],
    ids=["jpeg", "jpeg+zero padding", "jpeg+newline", "png", "webp"],
)
async def test_whole_images_pass_the_structural_check(tmp_path: Path, data: bytes) -> None:
    """Whole images, JPEGs with trailing padding included, are accepted."""
    path = tmp_path / "whole.img"
    path.write_bytes(data)
    blob = await prepare_image(path, "image")
    assert isinstance(blob, _inputs.ImageBlob)
    assert blob.size == len(data)


# -- files that block: FIFOs, swapped paths, stalled reads --------------------------------


async def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO named as an input is refused at once, not read (which would wait for a writer)."""
    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    phota, _ = nothing_sent()
    with pytest.raises(InvalidRequestError, match="not a regular file"):
        await phota.enhance(fifo, timeout=30)


async def test_path_swapped_for_a_fifo_after_its_check_is_refused(tmp_path: Path) -> None:
    """A file replaced by a FIFO between its check and its streaming is refused, not read."""
    path, _ = _big_jpeg(tmp_path)
    blob = await prepare_image(path, "image")
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(InvalidRequestError, match="not a regular file"):
        await _text(blob)


async def test_path_swapped_for_another_file_is_refused(tmp_path: Path) -> None:
    """A file replaced by another one after its check is refused rather than sent unchecked."""
    path, data = _big_jpeg(tmp_path)
    blob = await prepare_image(path, "image")
    other = tmp_path / "other.jpg"
    other.write_bytes(data + b"more")
    other.replace(path)
    with pytest.raises(InvalidRequestError, match="replaced"):
        await _text(blob)


async def test_many_fifo_swaps_do_not_starve_a_later_call(tmp_path: Path, emu: object) -> None:
    """Twelve inputs swapped for FIFOs leave the shared I/O threads free for a later call."""
    from phota_async.testing import PhotaEmulator

    assert isinstance(emu, PhotaEmulator)
    blobs = []
    for i in range(12):
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(jpeg_bytes(i))
        blobs.append(await prepare_image(path, "image"))
        path.unlink()
        os.mkfifo(path)
    for blob in blobs:
        with pytest.raises(InvalidRequestError):
            await _text(blob)
    good = tmp_path / "good.jpg"
    good.write_bytes(jpeg_bytes())
    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as fresh:
        assert len(await fresh.enhance(good, timeout=20)) == 1


class _StalledFile(io.RawIOBase):
    """A non-seekable file whose reads hang until released (a stalled network mount)."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.release.wait(60)
        return 0


async def test_stalled_reads_are_bounded_by_the_deadline_and_starve_nothing(
    tmp_path: Path,
) -> None:
    """Reads that hang fail at the call's deadline, and meanwhile other inputs are still read."""
    stalled = [_StalledFile() for _ in range(6)]
    path = tmp_path / "ok.jpg"
    path.write_bytes(jpeg_bytes())
    phota, _ = nothing_sent()
    try:
        calls = [phota.enhance(f, timeout=0.5) for f in stalled]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(o, InvalidRequestError) for o in outcomes)
        assert "could not be read within the call's 0.5 s deadline" in str(outcomes[0])
        assert isinstance(await prepare_image(path, "image", 5.0), _inputs.ImageBlob)
    finally:
        for f in stalled:
            f.release.set()


# -- cancelled uploads close their files at once -------------------------------------------


def _open_copies(path: Path) -> int:
    """How many descriptors of this process have ``path`` open."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return count


async def _io_threads_idle() -> None:
    """Return once every SDK I/O thread has finished the work it was given before."""
    barrier = threading.Barrier(_files._IO_THREADS)
    await asyncio.gather(*(_files.off_loop(barrier.wait, 30) for _ in range(_files._IO_THREADS)))


def _stalling_app(read: int) -> web.Application:
    """A server that reads ``read`` bytes of each body, then stalls until the client gives up."""

    async def handle(request: web.Request) -> web.Response:
        await request.content.read(read) if read else await request.read()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    app = web.Application(client_max_size=1 << 30)
    app.router.add_post("/enhance", handle)
    return app


@pytest.mark.parametrize("read", [0, 64 * 1024], ids=["whole body read", "body half read"])
async def test_cancelled_uploads_close_their_files_at_once(tmp_path: Path, read: int) -> None:
    """Fifty uploads cut by deadlines at different moments leave no input file open."""
    path, _ = _big_jpeg(tmp_path, repeat=12)
    async with (
        local_server(_stalling_app(read), shutdown_timeout=0.1) as origin,
        PhotaClient(api_key="k", base_url=origin) as phota,
    ):
        calls = [phota.enhance(path, timeout=0.02 * (i % 10 + 1)) for i in range(50)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(o, PhotaError) for o in outcomes)
        await _io_threads_idle()  # a read already running in a thread closes on its return
        assert _open_copies(path) == 0


async def test_cancelling_a_stream_at_each_moment_closes_the_file(tmp_path: Path) -> None:
    """A file stream abandoned after any number of chunks, or closed, holds no descriptor."""
    path, _ = _big_jpeg(tmp_path)
    blob = await prepare_image(path, "image")
    assert isinstance(blob, _inputs.ImageBlob)
    for taken in range(blob.chunk_count + 1):
        chunks = _inputs.encoded_chunks(blob)
        for _ in range(taken):
            await anext(chunks)
        assert _open_copies(path) == (1 if 0 < taken < blob.chunk_count else 0)
        del chunks  # dropped unfinished, as a cancelled upload's body is
        assert _open_copies(path) == 0
