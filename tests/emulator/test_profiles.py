"""Contract: profile creation, the training lifecycle, listing, pictures and deletion."""

from __future__ import annotations

import aiohttp
import pytest

from phota_async.testing import PhotaEmulator
from tests.conftest import decode, jpeg_bytes, local_server
from tests.emulator.helpers import (
    TRAINING,
    create,
    manual,
    status_of,
    training_urls,
    validated,
    wait_for_status,
)

P = "/v1/phota"


async def test_training_moves_through_every_status(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A good training set goes VALIDATING -> QUEUING -> IN_PROGRESS -> READY, on the clock."""
    profile_id = await create(http, training_urls(emu, 5))
    assert (await status_of(http, profile_id))["status"] == "VALIDATING"
    assert await validated(http, emu, profile_id) == "QUEUING"
    manual(emu).advance(TRAINING / 4)
    assert (await status_of(http, profile_id))["status"] == "IN_PROGRESS"
    manual(emu).advance(TRAINING * 3 / 4 - 1)
    assert (await status_of(http, profile_id))["status"] == "IN_PROGRESS"
    manual(emu).advance(1)
    assert (await status_of(http, profile_id))["status"] == "READY"


async def test_create_charges_the_tier_price(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """Creating a fast-tier profile charges $1.49 once."""
    profile_id = await create(http, training_urls(emu, 5))
    assert [(e["amount"], e["profile_id"]) for e in emu.charges()] == [(1.49, profile_id)]


async def test_undecodable_training_image_ends_in_error(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A set with a file that is not an image ends in ERROR with a message naming it."""
    urls = [*training_urls(emu, 4), emu.store_file(b"not an image at all")]
    profile_id = await create(http, urls)
    final = await wait_for_status(http, profile_id, {"READY", "ERROR"})
    assert final["status"] == "ERROR"
    assert "image_urls.4" in str(final["message"])


async def test_failing_download_ends_in_error(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A training URL that answers 404 ends the profile in ERROR."""
    urls = [*training_urls(emu, 4), f"{emu.origin}/_emulator/files/missing"]
    profile_id = await create(http, urls)
    final = await wait_for_status(http, profile_id, {"READY", "ERROR"})
    assert final["status"] == "ERROR"
    assert "404" in str(final["message"])


async def test_training_urls_may_be_any_loopback_server(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """Training URLs served by another loopback server are downloaded like store files."""
    from aiohttp import web

    photo = jpeg_bytes(7)

    async def serve(_: web.Request) -> web.Response:
        return web.Response(body=photo, content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/p/{n}.jpg", serve)
    async with local_server(app) as origin:
        profile_id = await create(http, [f"{origin}/p/{i}.jpg" for i in range(5)])
        assert await validated(http, emu, profile_id) == "QUEUING"
    manual(emu).advance(TRAINING)
    assert (await status_of(http, profile_id))["status"] == "READY"


async def test_set_without_subject_ends_in_error(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A set of featureless frames ends in ERROR: no subject found."""
    profile_id = await create(http, training_urls(emu, 5, flat=True))
    final = await wait_for_status(http, profile_id, {"READY", "ERROR"})
    assert final["status"] == "ERROR"
    assert "no subject" in str(final["message"])


async def test_too_few_images_for_the_tier_is_400(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """The standard tier refuses fewer than 10 images before charging anything."""
    async with http.post(
        f"{P}/profiles/add", json={"image_urls": training_urls(emu, 5), "training_tier": "standard"}
    ) as resp:
        body = await resp.json()
    assert resp.status == 400
    assert body["code"] == "INVALID_TRAINING_SET"
    assert emu.ledger == []


async def test_too_many_images_for_fast_is_400(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """The fast tier refuses more than 10 images."""
    async with http.post(
        f"{P}/profiles/add", json={"image_urls": training_urls(emu, 11), "training_tier": "fast"}
    ) as resp:
        assert resp.status == 400


async def test_base64_training_images_are_refused(http: aiohttp.ClientSession) -> None:
    """Training takes URLs only: base64 strings answer 400."""
    async with http.post(
        f"{P}/profiles/add", json={"image_urls": ["QUJD"] * 5, "training_tier": "fast"}
    ) as resp:
        assert resp.status == 400


async def test_unknown_tier_is_422(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """An unknown training_tier answers 422 naming the field."""
    async with http.post(
        f"{P}/profiles/add", json={"image_urls": training_urls(emu, 5), "training_tier": "turbo"}
    ) as resp:
        body = await resp.json()
    assert resp.status == 422
    assert body["detail"][0]["loc"] == ["body", "training_tier"]


async def test_tag_longer_than_128_is_422(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """A tag over 128 characters answers 422."""
    async with http.post(
        f"{P}/profiles/add",
        json={"image_urls": training_urls(emu, 5), "training_tier": "fast", "tag": "t" * 129},
    ) as resp:
        assert resp.status == 422


async def test_list_filters_by_tag(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """GET /profiles/ids lists objects and filters them by tag."""
    a = await create(http, training_urls(emu, 5), tag="family")
    b = await create(http, training_urls(emu, 5), tag="pets")
    async with (
        http.get(f"{P}/profiles/ids") as every,
        http.get(f"{P}/profiles/ids", params={"tag": "pets"}) as pets,
    ):
        all_ids = {p["profile_id"] for p in (await every.json())["profiles"]}
        pet_list = (await pets.json())["profiles"]
    assert all_ids == {a, b}
    assert [(p["profile_id"], p["tag"]) for p in pet_list] == [(b, "pets")]
    assert set(pet_list[0]) == {"profile_id", "status", "tag"}


async def test_status_of_unknown_profile_is_404(http: aiohttp.ClientSession) -> None:
    """An unknown profile id answers 404 PROFILE_NOT_FOUND."""
    async with http.get(f"{P}/profiles/prof_nope/status") as resp:
        body = await resp.json()
    assert resp.status == 404
    assert body["code"] == "PROFILE_NOT_FOUND"


async def test_picture_is_a_real_jpeg(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """A validated profile's picture is a decodable square JPEG."""
    profile_id = await create(http, training_urls(emu, 5))
    await validated(http, emu, profile_id)
    async with http.get(f"{P}/profiles/{profile_id}/profile_picture") as resp:
        data = await resp.read()
    assert resp.content_type == "image/jpeg"
    img = decode(data)
    assert img.format == "JPEG"
    assert img.width == img.height


async def test_delete_removes_the_profile(http: aiohttp.ClientSession, emu: PhotaEmulator) -> None:
    """DELETE answers ok, and afterwards the profile is 404."""
    profile_id = await create(http, training_urls(emu, 5))
    async with http.delete(f"{P}/profiles/{profile_id}") as resp:
        assert await resp.json() == {"profile_id": profile_id, "status": "ok"}
    async with http.get(f"{P}/profiles/{profile_id}/status") as resp:
        assert resp.status == 404


async def test_forced_inactive_status_is_reported(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """A profile forced INACTIVE reports that status and message."""
    profile_id = await create(http, training_urls(emu, 5))
    emu.set_profile_status(profile_id, "INACTIVE", "expired")
    async with http.get(f"{P}/profiles/{profile_id}/status") as resp:
        body = await resp.json()
    assert body == {"profile_id": profile_id, "status": "INACTIVE", "message": "expired"}


async def test_added_profile_trains_for_the_given_time(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """add_profile(training_seconds=...) goes QUEUING -> IN_PROGRESS -> READY, uncharged."""
    profile_id = emu.add_profile(training_seconds=400)
    seen = [(await status_of(http, profile_id))["status"]]
    manual(emu).advance(100)
    seen.append((await status_of(http, profile_id))["status"])
    manual(emu).advance(300)
    seen.append((await status_of(http, profile_id))["status"])
    assert seen == ["QUEUING", "IN_PROGRESS", "READY"]
    assert emu.charges() == []


async def test_added_profile_is_ready_at_once_by_default(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """add_profile() without a training time is READY on its first status call."""
    profile_id = emu.add_profile()
    async with http.get(f"{P}/profiles/{profile_id}/status") as resp:
        assert (await resp.json())["status"] == "READY"


async def test_add_profile_takes_a_chosen_id(
    http: aiohttp.ClientSession, emu: PhotaEmulator
) -> None:
    """add_profile(profile_id=...) makes a READY profile under that id, served by the API."""
    assert emu.add_profile(profile_id="prof_docs01") == "prof_docs01"
    assert (await status_of(http, "prof_docs01"))["status"] == "READY"


async def test_add_profile_refuses_a_taken_or_malformed_id(emu: PhotaEmulator) -> None:
    """A chosen id that exists already, or is not prof_ and id characters, is refused by name."""
    emu.add_profile(profile_id="prof_docs02")
    with pytest.raises(ValueError, match="profile_id: 'prof_docs02' exists already"):
        emu.add_profile(profile_id="prof_docs02")
    with pytest.raises(ValueError, match="profile_id: 'job_x' is not a profile id"):
        emu.add_profile(profile_id="job_x")
