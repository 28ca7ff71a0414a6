"""The emulated account's records: configuration, profiles and jobs, with status as data.

A record keeps the clock readings of its milestones; its status at any moment is computed
from them (``status(now)``), so that moving a ``ManualClock`` changes what the API reports at
once, with no task having to wake up first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from . import _images

# Share of a profile's training time spent QUEUING; the rest is IN_PROGRESS.
QUEUE_SHARE = 0.25
JOB_DONE = frozenset({"SUCCEEDED", "FAILED"})


@dataclass
class EmulatorConfig:
    """Knobs of the emulated service (see ``PhotaEmulator`` for their meaning)."""

    api_key: str
    balance: float
    training_seconds: Mapping[str, float]
    validation_seconds: float
    job_queue_seconds: float
    job_run_seconds: float
    processing_seconds: float
    sync_timeout: float
    url_ttl: float
    max_body_bytes: int
    max_output_side: int | None
    blocked_words: tuple[str, ...]
    latency: tuple[float, float] = (0.0, 0.0)  # (low, high) seconds before each API answer
    idempotency_ttl: float = 24 * 3600
    # Retention (see ``PhotaEmulator``): outputs and finished jobs, the request and callback logs.
    output_ttl: float = 24 * 3600
    max_outputs: int = 1000
    max_jobs: int = 10_000
    log_ttl: float = 3600
    max_log: int = 10_000


@dataclass
class ProfileRecord:
    """One profile and the clock readings of its training."""

    id: str
    tier: str
    tag: str | None
    image_urls: list[str]
    created: float
    training_seconds: float
    validated_at: float | None = None
    error: str | None = None
    forced_status: str | None = None
    forced_message: str | None = None
    picture: bytes | None = None
    face: Image.Image | None = None
    face_seed: int | None = None  # a synthetic face, drawn when first needed

    def subject(self) -> Image.Image | None:
        """The face this profile stands for (a synthetic one is drawn on first use)."""
        if self.face is None and self.face_seed is not None:
            self.face = _images.sample_photo(self.face_seed, (128, 128))
            self.picture = _images.profile_picture(self.face)
        return self.face

    def ready_at(self) -> float | None:
        """The clock reading at which training ends, once validation has passed."""
        if self.validated_at is None or self.error is not None:
            return None
        return self.validated_at + self.training_seconds

    def status(self, now: float) -> tuple[str, str | None]:
        """Status and message at clock reading ``now``."""
        if self.forced_status is not None:
            return self.forced_status, self.forced_message
        if self.error is not None:
            return "ERROR", self.error
        if self.validated_at is None:
            return "VALIDATING", None
        elapsed = now - self.validated_at
        if elapsed < self.training_seconds * QUEUE_SHARE:
            return "QUEUING", None
        if elapsed < self.training_seconds:
            return "IN_PROGRESS", None
        return "READY", None


@dataclass
class JobRecord:
    """One asynchronous job: QUEUED until ``starts``, then RUNNING until it has an outcome."""

    id: str
    endpoint: str
    body: dict[str, Any]
    client_request_id: str | None
    callback_url: str | None
    cost: float
    submitted: float  # clock reading
    starts: float  # clock reading at which it leaves QUEUED
    outcome: str | None = None  # SUCCEEDED or FAILED once finished
    finished: float | None = None
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    request_id: str = ""  # of the submit, for the ledger's refund entry
    profile_ids: list[str] = field(
        default_factory=list
    )  # subjects named, to resume after a restart

    def status(self, now: float) -> str:
        """Status at clock reading ``now``."""
        if self.outcome is not None:
            return self.outcome
        return "RUNNING" if now >= self.starts else "QUEUED"

    def updated(self, now: float) -> float:
        """Clock reading of the last change of status seen at ``now``."""
        if self.finished is not None:
            return self.finished
        return self.starts if now >= self.starts else self.submitted
