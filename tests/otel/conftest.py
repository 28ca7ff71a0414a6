"""In-memory OpenTelemetry providers (never the global ones) and a client that reports to them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from phota_async import PhotaClient, PollPolicy
from phota_async.otel import Telemetry
from phota_async.testing import PhotaEmulator

FAST = PollPolicy().scaled(0.01)


class Recorded:
    """What the client reported: finished spans and collected metrics."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def telemetry(self, **options: Any) -> Telemetry:
        return Telemetry(
            tracer_provider=self.tracer_provider, meter_provider=self.meter_provider, **options
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        found = self.named(name)
        assert len(found) == 1, [span.name for span in self.spans()]
        return found[0]

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        assert parent.context is not None
        return [
            span
            for span in self.spans()
            if span.parent is not None and span.parent.span_id == parent.context.span_id
        ]

    def metrics(self) -> dict[str, Any]:
        """Every metric collected so far, by name."""
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found[metric.name] = metric
        return found

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    """Fresh in-memory span and metric providers, shut down after the test."""
    providers = Recorded()
    yield providers
    providers.shutdown()


@pytest.fixture
async def phota(emu: PhotaEmulator, recorded: Recorded) -> AsyncIterator[PhotaClient]:
    """A client of the emulator that reports to ``recorded`` (prompts not recorded)."""
    async with PhotaClient(
        api_key=emu.api_key,
        base_url=emu.base_url,
        poll=FAST,
        telemetry=recorded.telemetry(record_prompts=False),
    ) as client:
        yield client
