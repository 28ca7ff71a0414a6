"""OpenTelemetry for ``PhotaClient`` (the ``[otel]`` extra): ``Telemetry`` configures it.

A client records spans and metrics on its own when OpenTelemetry is set up (a global tracer
or meter provider) before it is created; ``PhotaClient(telemetry=Telemetry(...))`` records
in any case, with chosen providers, and can opt into recording prompts. Importing this module
does not import OpenTelemetry.

Spans: ``phota.<operation>`` (INTERNAL) per SDK call, such as ``phota.enhance`` or
``phota.profiles.create``; a CLIENT span per HTTP attempt after the HTTP client semantic
conventions; ``phota.profiles.wait_ready`` and ``phota.jobs.wait`` per wait, with a
``phota.status_change`` event per new status. Metrics: ``phota.client.calls``,
``phota.client.call.duration``, ``phota.client.attempts``, ``phota.client.throttled``,
``phota.client.cost`` and ``phota.client.wait.duration``.
"""

from __future__ import annotations

from ._telemetry import RECORD_PROMPTS_ENV, Telemetry

__all__ = ["RECORD_PROMPTS_ENV", "Telemetry"]
