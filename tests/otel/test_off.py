"""Without OpenTelemetry set up, the SDK neither imports it nor records anything; with a global
provider set before the client is created, it records without being asked."""

from __future__ import annotations

import subprocess
import sys

# Runs in a fresh interpreter: whatever imported OpenTelemetry in this test process (the
# fixtures of tests/otel) must not hide an import by the SDK.
_CALL = """
import asyncio, sys
from phota_async import PhotaClient
from phota_async.testing import PhotaEmulator

async def main():
    async with PhotaEmulator(max_output_side=64) as emu:
        async with PhotaClient(api_key=emu.api_key, base_url=emu.base_url) as phota:
            profile = emu.add_profile()
            await phota.profiles.get(profile)
            return phota

phota = asyncio.run(main())
"""

# A global tracer provider that keeps finished spans in ``exporter``.
_PROVIDER = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
"""


def run(script: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_a_client_without_opentelemetry_set_up_never_imports_it() -> None:
    """Importing phota_async, creating a client and making a call load no opentelemetry
    module."""
    out = run(
        _CALL + "print(sorted(m for m in sys.modules if m.split('.')[0] == 'opentelemetry'))\n"
    )
    assert out.strip() == "[]"


def test_opentelemetry_imported_without_a_provider_records_nothing() -> None:
    """With OpenTelemetry imported but no provider set, the client gets the no-op hooks."""
    out = run(
        "import opentelemetry.trace, opentelemetry.metrics\n"
        + _CALL
        + "from phota_async._telemetry import OFF\n"
        + "print(phota._session.telemetry is OFF)\n"
    )
    assert out.strip() == "True"


def test_a_global_tracer_provider_set_first_is_used_without_being_asked() -> None:
    """A client created after ``trace.set_tracer_provider`` reports its calls there."""
    out = run(
        _PROVIDER + _CALL + "print(sorted(span.name for span in exporter.get_finished_spans()))\n"
    )
    assert out.strip() == "['GET /profiles/{profile_id}/status', 'phota.profiles.get']"


def test_telemetry_false_records_nothing_even_with_a_provider() -> None:
    """``telemetry=False`` keeps a client silent under a configured global provider."""
    out = run(
        _PROVIDER
        + _CALL.replace("base_url=emu.base_url)", "base_url=emu.base_url, telemetry=False)")
        + "print(len(exporter.get_finished_spans()))\n"
    )
    assert out.strip() == "0"
