"""What never reaches a span or a metric: the API key, image bytes, and (unless asked) prompts."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from phota_async import PhotaClient
from phota_async.otel import RECORD_PROMPTS_ENV, Telemetry
from phota_async.testing import PhotaEmulator
from tests.helpers import jpeg_bytes
from tests.otel.conftest import Recorded

PROMPT = "make [[{pid}]] smile under the zeppelin-umbrella"
MARKER = "zeppelin-umbrella"


def everything(recorded: Recorded) -> Iterator[str]:
    """Every name and value a backend would receive, as text."""
    for span in recorded.spans():
        yield span.name
        yield from (f"{k}={v}" for k, v in (span.attributes or {}).items())
        for event in span.events:
            yield event.name
            yield from (f"{k}={v}" for k, v in (event.attributes or {}).items())
        yield str(span.status.description)
    for metric in recorded.metrics().values():
        yield metric.name
        for point in metric.data.data_points:
            yield from (f"{k}={v}" for k, v in (point.attributes or {}).items())


async def edit_with_prompt(emu: PhotaEmulator, phota: PhotaClient) -> None:
    pid = emu.add_profile()
    await phota.edit(PROMPT.format(pid=pid), images=[jpeg_bytes()], profile_ids=[pid])
    with pytest.raises(Exception, match="404"):
        await phota.profiles.get("nobody")


async def test_neither_the_key_nor_the_prompt_nor_image_bytes_reach_telemetry(
    emu: PhotaEmulator, phota: PhotaClient, recorded: Recorded
) -> None:
    """After an edit and a failed call, no attribute, event or metric label holds the key,
    the prompt, or the input image's base64."""
    await edit_with_prompt(emu, phota)

    text = "\n".join(everything(recorded))
    assert "phota.edit" in text
    assert emu.api_key not in text
    assert MARKER not in text
    assert base64.b64encode(jpeg_bytes()).decode()[:40] not in text


async def test_the_prompt_is_recorded_when_the_user_opts_in(
    emu: PhotaEmulator, recorded: Recorded
) -> None:
    """``Telemetry(record_prompts=True)`` puts the prompt on the call span as ``phota.prompt``
    (and still never the key)."""
    async with PhotaClient(
        api_key=emu.api_key,
        base_url=emu.base_url,
        telemetry=recorded.telemetry(record_prompts=True),
    ) as phota:
        await edit_with_prompt(emu, phota)

    edit = recorded.one("phota.edit")
    assert edit.attributes is not None
    assert MARKER in str(edit.attributes["phota.prompt"])
    assert emu.api_key not in "\n".join(everything(recorded))


def test_the_environment_switch_opts_into_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    """``PHOTA_OTEL_RECORD_PROMPTS=1`` makes prompts recorded by default; unset, they are not."""
    monkeypatch.setenv(RECORD_PROMPTS_ENV, "1")
    assert Telemetry().record_prompts
    monkeypatch.delenv(RECORD_PROMPTS_ENV)
    assert not Telemetry().record_prompts


def test_a_telemetry_option_of_the_wrong_type_is_refused() -> None:
    """``telemetry="yes"`` is refused by name when the client is created."""
    bad: Any = "yes"
    with pytest.raises(ValueError, match="telemetry"):
        PhotaClient(api_key="test-key", base_url="http://127.0.0.1:9", telemetry=bad)
