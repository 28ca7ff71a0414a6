"""What OpenTelemetry costs a client: CPU per ``profiles.get`` with telemetry off and on.

    python benchmarks/otel.py            # 3,000 GETs x 7 rounds per mode
    python benchmarks/otel.py --quick    # tiny counts: checks that it still works

One process runs both modes in alternating rounds against an emulator in another process
(``_server.py``), 32 concurrent, and prints the median CPU (user+sys) per GET of each and their
ratio. "on" is an SDK tracer provider whose spans go through a batch processor to an exporter
that drops them, plus an SDK meter provider with no reader: the price of building and ending
the spans and recording the metrics, without any export I/O. "off" is ``telemetry=False``,
the path of every client created without OpenTelemetry set up (the before/after of that path
is ``benchmarks/run.py --only get``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _clients import bounded, cpu
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from phota_async import PhotaClient
from phota_async.otel import Telemetry

HERE = Path(__file__).parent


class Dropped(SpanExporter):
    """Takes every span and keeps none."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


async def round_(base_url: str, key: str, profile: str, n: int, telemetry: Any) -> float:
    """CPU seconds per GET for one round."""
    async with PhotaClient(
        api_key=key, base_url=base_url, max_concurrency=32, telemetry=telemetry
    ) as phota:
        await phota.profiles.get(profile)  # warm the pool
        started = cpu()
        await bounded(n, 32, lambda _: phota.profiles.get(profile))
        return (cpu() - started) / n


async def measure(base_url: str, key: str, profile: str, n: int, rounds: int) -> dict[str, float]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropped()))
    meter_provider = MeterProvider()
    on = Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider)
    per: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for _ in range(rounds):
            per["off"].append(await round_(base_url, key, profile, n, False))
            per["on"].append(await round_(base_url, key, profile, n, on))
    finally:
        tracer_provider.shutdown()
        meter_provider.shutdown()
    return {mode: statistics.median(values) for mode, values in per.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny counts")
    args = parser.parse_args()
    n, rounds = (50, 1) if args.quick else (3000, 7)
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "_server.py"), json.dumps({"training_seconds": 0})],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        srv = json.loads(proc.stdout.readline())
        proc.stdin.write("train 1 0 0\n")
        proc.stdin.flush()
        (profile,) = json.loads(proc.stdout.readline())
        figures = asyncio.run(measure(srv["base_url"], srv["api_key"], profile, n, rounds))
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    off, on = figures["off"], figures["on"]
    print(f"CPU per profiles.get (us, medians of {rounds} rounds of {n}, 32 concurrent):")
    print(f"  telemetry off {off * 1e6:.0f}, on {on * 1e6:.0f}, on / off {on / off:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
