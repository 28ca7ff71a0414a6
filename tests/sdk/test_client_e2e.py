"""The client end to end against the emulator: every endpoint, and each injected fault."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from phota_async import PhotaClient
from phota_async.errors import (
    AuthenticationError,
    ConnectError,
    GatewayTimeoutError,
    InsufficientCreditError,
    NotFoundError,
    OutcomeUnknownError,
    PhotaError,
    ProfileNotReadyError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
)
from phota_async.testing import PhotaEmulator
from tests.conftest import decode, jpeg_bytes, png_bytes
from tests.sdk.test_transport import free_port


async def train(phota: PhotaClient, emu: PhotaEmulator, **kwargs: object) -> str:
    """Create a fast profile from stored photos and wait (bounded) until it is READY."""
    urls = [emu.store_file(jpeg_bytes(i), "image/jpeg") for i in range(5)]
    profile = await phota.profiles.create(urls, tier="fast", **kwargs)  # type: ignore[arg-type]
    for _ in range(300):
        if (await phota.profiles.get(profile.id)).is_ready:
            return profile.id
        await asyncio.sleep(0.01)
    raise AssertionError("profile never became READY")


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_bytes(2, (120, 90)))
    return path


async def test_generate_returns_images(phota: PhotaClient) -> None:
    """generate gives n decodable images of the requested format."""
    result = await phota.generate("a lighthouse", n=2, output_format="png")
    assert len(result) == 2
    assert decode(await result.read(1)).format == "PNG"
    assert result.request_id is not None


async def test_edit_with_profile(phota: PhotaClient, emu: PhotaEmulator, photo: Path) -> None:
    """edit with a trained profile counts the subject in known_subjects."""
    profile_id = await train(phota, emu)
    result = await phota.edit(
        f"make [[{profile_id}]] brighter", images=[photo], profile_ids=[profile_id]
    )
    assert result.known_subjects == {profile_id: 1}


async def test_enhance_from_path(phota: PhotaClient, photo: Path) -> None:
    """enhance of a local file returns a JPEG by default."""
    result = await phota.enhance(photo)
    assert decode(await result.read()).format == "JPEG"


async def test_remix_with_two_inputs(phota: PhotaClient, photo: Path) -> None:
    """remix sends content and reference and returns an image."""
    result = await phota.remix(photo, reference=png_bytes((200, 50, 50)))
    assert len(result) == 1


async def test_url_mode_outputs_download_and_save(phota: PhotaClient, tmp_path: Path) -> None:
    """Outputs given as signed URLs are downloaded by read() and streamed by save()."""
    result = await phota.generate("x", n=2, response_mode="urls", output_format="png")
    paths = await result.save(tmp_path / "out")
    assert [p.name for p in paths] == ["image-0.png", "image-1.png"]
    assert paths[0].read_bytes() == await result.read(0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["image-0.png", "image-1.png"]


async def test_bytes_mode_save_writes_real_extension(phota: PhotaClient, tmp_path: Path) -> None:
    """save() names files after their real format."""
    result = await phota.generate("x", output_format="jpg")
    (path,) = await result.save(tmp_path)
    assert path.suffix == ".jpg"
    assert decode(path.read_bytes()).format == "JPEG"


async def test_profiles_lifecycle(phota: PhotaClient, emu: PhotaEmulator) -> None:
    """create, list by tag, get, picture and delete work together."""
    profile_id = await train(phota, emu, tag="family")
    listed = await phota.profiles.list(tag="family")
    assert [p.id for p in listed] == [profile_id]
    assert (await phota.profiles.get(profile_id)).is_ready
    assert (await phota.profiles.picture(profile_id))[:3] == b"\xff\xd8\xff"
    await phota.profiles.delete(profile_id)
    with pytest.raises(NotFoundError):
        await phota.profiles.get(profile_id)


async def test_profile_not_ready_is_typed(
    phota: PhotaClient, emu: PhotaEmulator, photo: Path
) -> None:
    """Naming a profile still training raises ProfileNotReadyError."""
    urls = [emu.store_file(jpeg_bytes(i)) for i in range(5)]
    profile = await phota.profiles.create(urls, tier="fast")
    with pytest.raises(ProfileNotReadyError):
        await phota.enhance(photo, profile_ids=[profile.id])


async def test_webhook_secret_is_cached(phota: PhotaClient, emu: PhotaEmulator) -> None:
    """webhook_secret() asks the server once."""
    assert await phota.webhook_secret() == emu.webhook_secret
    assert await phota.webhook_secret() == emu.webhook_secret
    assert [r["path"] for r in emu.requests].count("/webhook-secret") == 1


async def test_wrong_key_is_authentication_error(emu: PhotaEmulator) -> None:
    """A wrong key raises AuthenticationError and is not retried."""
    async with PhotaClient(api_key="wrong", base_url=emu.base_url) as phota:
        with pytest.raises(AuthenticationError):
            await phota.profiles.list()
    assert len(emu.requests) == 1


async def test_server_side_validation_surfaces(phota: PhotaClient, emu: PhotaEmulator) -> None:
    """A 422 from the server (client checks bypassed) is UnprocessableEntityError."""
    emu.add_fault(
        "/generate",
        status=422,
        body={"detail": [{"loc": ["body", "prompt"], "msg": "bad", "type": "x"}]},
    )
    with pytest.raises(UnprocessableEntityError, match="prompt: bad"):
        await phota.generate("x")


async def test_credit_exhausted(emu: PhotaEmulator, phota: PhotaClient) -> None:
    """402 is InsufficientCreditError."""
    emu.balance = 0
    with pytest.raises(InsufficientCreditError):
        await phota.generate("x")


# -- faults: retried where safe, never charged twice ------------------------------------


async def test_429_with_retry_after_is_retried_once_charged(
    phota: PhotaClient, emu: PhotaEmulator, photo: Path
) -> None:
    """A 429 on enhance is retried and the image is charged once."""
    emu.add_fault("/enhance", status=429, retry_after=1)
    await phota.enhance(photo)
    assert len(emu.charges()) == 1
    assert [r["status"] for r in emu.requests if r["path"] == "/enhance"] == [429, 200]


@pytest.mark.parametrize("code", [500, 502, 503])
async def test_5xx_on_get_is_retried(phota: PhotaClient, emu: PhotaEmulator, code: int) -> None:
    """A 5xx on a GET is retried to success."""
    emu.add_fault("/profiles/ids", status=code, times=2)
    assert await phota.profiles.list() == []


async def test_503_on_paid_post_is_retried_once_charged(
    phota: PhotaClient, emu: PhotaEmulator
) -> None:
    """A 503 on generate is retried; one charge."""
    emu.add_fault("/generate", status=503)
    await phota.generate("x")
    assert len(emu.charges()) == 1


async def test_500_on_paid_post_is_raised_uncharged(phota: PhotaClient, emu: PhotaEmulator) -> None:
    """A 500 on generate is raised as ServerError; nothing charged."""
    emu.add_fault("/generate", status=500)
    with pytest.raises(ServerError):
        await phota.generate("x")
    assert emu.charges() == []


async def test_504_is_raised_and_refunded() -> None:
    """A 504 raises GatewayTimeoutError and the ledger nets to zero."""
    async with PhotaEmulator(processing_seconds=0.3, sync_timeout=0.05, max_output_side=64) as emu:
        async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
            with pytest.raises(GatewayTimeoutError):
                await phota.generate("x")
        assert emu.net_spent() == 0


async def test_drop_before_body_on_paid_post(phota: PhotaClient, emu: PhotaEmulator) -> None:
    """A connection dropped before the body was read: not charged, outcome reported unknown."""
    emu.add_fault("/generate", drop="before")
    with pytest.raises(OutcomeUnknownError):
        await phota.generate("x")
    assert emu.charges() == []


async def test_drop_after_body_on_paid_post_is_not_resent(
    phota: PhotaClient, emu: PhotaEmulator
) -> None:
    """A call processed but unanswered raises OutcomeUnknownError and is charged exactly once."""
    emu.add_fault("/generate", drop="after")
    with pytest.raises(OutcomeUnknownError):
        await phota.generate("x")
    assert len(emu.charges()) == 1
    assert len([r for r in emu.requests if r["path"] == "/generate"]) == 1


@pytest.mark.parametrize(
    "fault", [{"drop": "before"}, {"drop": "after"}, {"truncate": True}, {"malformed": True}]
)
async def test_broken_answers_on_get_are_retried(
    phota: PhotaClient, emu: PhotaEmulator, fault: dict
) -> None:
    """Dropped, truncated and malformed answers to a GET are retried to success."""
    emu.add_fault("/profiles/ids", **fault)
    assert await phota.profiles.list() == []


@pytest.mark.parametrize("fault", [{"truncate": True}, {"malformed": True}])
async def test_broken_answers_on_paid_post_are_outcome_unknown(
    phota: PhotaClient, emu: PhotaEmulator, fault: dict
) -> None:
    """A truncated or malformed answer to a paid call is not resent: one charge, clear error."""
    emu.add_fault("/generate", **fault)
    with pytest.raises(OutcomeUnknownError):
        await phota.generate("x")
    assert len(emu.charges()) == 1


async def test_connection_refused_is_connect_error() -> None:
    """With no server, calls raise ConnectError after their retries."""
    async with PhotaClient(
        api_key="k", base_url=f"http://127.0.0.1:{free_port()}/v1/phota"
    ) as phota:
        with pytest.raises(ConnectError):
            await phota.profiles.list()


async def test_rate_limit_exhausting_retries_is_typed(
    phota: PhotaClient, emu: PhotaEmulator
) -> None:
    """Persistent 429s end in RateLimitError with retry_after and every request id."""
    emu.add_fault("/profiles/ids", status=429, retry_after=1, times=10)
    with pytest.raises(RateLimitError) as info:
        await phota.profiles.list()
    assert info.value.retry_after == 1
    assert len(info.value.request_ids) == 4


async def test_whole_call_deadline_on_a_get(phota: PhotaClient, emu: PhotaEmulator) -> None:
    """A GET slower than its timeout raises a PhotaError that is not OutcomeUnknownError."""
    emu.add_fault("/profiles/ids", delay=0.4)
    with pytest.raises(PhotaError) as info:
        await phota.profiles.list(timeout=0.1)
    assert not isinstance(info.value, OutcomeUnknownError)


async def test_whole_call_deadline_on_a_paid_post(phota: PhotaClient, emu: PhotaEmulator) -> None:
    """A paid call past its deadline raises OutcomeUnknownError."""
    emu.add_fault("/generate", delay=0.4)
    with pytest.raises(OutcomeUnknownError):
        await phota.generate("x", timeout=0.1)


async def test_borrowed_session_survives_the_client(emu: PhotaEmulator) -> None:
    """A client given a session uses it and leaves it open."""
    async with aiohttp.ClientSession() as session:
        async with PhotaClient(
            api_key=emu.api_key, base_url=emu.base_url, session=session
        ) as phota:
            await phota.profiles.list()
        assert not session.closed


async def test_download_past_the_deadline_is_a_phota_error(
    emu: PhotaEmulator, tmp_path: Path
) -> None:
    """A URL output whose download outlasts the client's deadline raises ReadTimeoutError."""
    from phota_async.errors import ReadTimeoutError

    async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url, timeout=0.3) as phota:
        result = await phota.generate("x", response_mode="urls")
        emu.add_fault("/_emulator/outputs/*", delay=0.6)
        with pytest.raises(ReadTimeoutError):
            await result.save(tmp_path)
    assert list(tmp_path.iterdir()) == []
