"""What the simulated service does with a request over time, paced by the emulator's clock.

- A synchronous studio call is charged, then rendered within ``sync_timeout``; past it the
  answer is 504 ``TIMEOUT`` and the charge is refunded. A call that fails is refunded too.
- A job is charged when submitted, stays ``QUEUED`` for ``job_queue_seconds`` and ``RUNNING``
  for ``job_run_seconds`` before its images are made; a failed job is refunded. Its callback,
  if any, is delivered once it has finished either way.
- A new profile is charged, ``VALIDATING`` while its photos are downloaded and checked (for at
  least ``validation_seconds``), then ``QUEUING`` for a quarter of its training time and
  ``IN_PROGRESS`` for the rest, then ``READY``. A photo that cannot be downloaded or decoded,
  or a set in which no photo shows a subject, ends it in ``ERROR``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from . import _images
from ._billing import TRAINING_PRICES
from ._clock import sleep_until, within
from ._failure import APIFailure
from ._records import JobRecord, ProfileRecord
from ._render import load_image
from ._state import EmulatorState

TRAINING_SIDE = 1024  # training photos are checked and kept at most this large


async def call(
    state: EmulatorState,
    endpoint: str,
    body: dict[str, Any],
    named: list[ProfileRecord],
    cost: float,
    request_id: str,
) -> dict[str, Any]:
    """Run a synchronous studio call: charge, render within the time limit, refund on failure."""
    state.billing.require(cost)
    state.billing.charge(
        cost, endpoint=endpoint, request_id=request_id, images=body.get("num_output_images") or 1
    )
    try:
        return await within(
            state.clock, state.render(endpoint, body, named), state.config.sync_timeout
        )
    except TimeoutError:
        state.billing.refund(cost, endpoint=endpoint, request_id=request_id)
        raise APIFailure(
            504, "TIMEOUT", "the call exceeded its time limit and was refunded; use async mode"
        ) from None
    except APIFailure:
        state.billing.refund(cost, endpoint=endpoint, request_id=request_id)
        raise


def submit(
    state: EmulatorState,
    endpoint: str,
    body: dict[str, Any],
    named: list[ProfileRecord],
    cost: float,
    request_id: str,
) -> dict[str, Any]:
    """Submit a job, or find the one its ``client_request_id`` already names; return its handle."""
    now = state.now()
    key = body.get("client_request_id")
    known = state.idempotency.get(key, now) if key is not None else None
    if known is not None and known in state.jobs:
        job = state.jobs[known]
        status = job.status(now)
    elif known is not None and (settled := state.idempotency.settled(key or "")) is not None:
        # The job's record has been evicted, its key lives on: still the original job, unpaid.
        return {
            "job_id": known,
            "poll_url": f"{state.origin}/v1/phota/jobs/{known}",
            "status": settled,
        }
    else:
        state.billing.require(cost)
        job = JobRecord(
            id=state.new_id("job_"),
            endpoint=endpoint,
            body=body,
            client_request_id=key,
            callback_url=body.get("callback_url"),
            cost=cost,
            submitted=now,
            starts=now + state.config.job_queue_seconds,
            request_id=request_id,
            profile_ids=[p.id for p in named],
        )
        # The job, its key and its charge reach the state folder together: a process killed
        # between them would leave a job with a key but no charge, or one to pay twice.
        with state.transaction():
            state.add_job(job)
            if key is not None:
                state.idempotency.remember(key, job.id, now)
            state.billing.charge(
                cost,
                endpoint=endpoint,
                request_id=request_id,
                job_id=job.id,
                client_request_id=key,
                images=body.get("num_output_images") or 1,
            )
        state.spawn(_run_job(state, job, named, request_id))
        status = "QUEUED"
    return {
        "job_id": job.id,
        "poll_url": f"{state.origin}/v1/phota/jobs/{job.id}",
        "status": status,
    }


async def _run_job(
    state: EmulatorState, job: JobRecord, named: list[ProfileRecord], request_id: str
) -> None:
    # One wait to an absolute moment, so that one advance() of a ManualClock covers both phases.
    await sleep_until(state.clock, job.starts + state.config.job_run_seconds)
    try:
        if state.job_failures:
            code, detail = state.job_failures.pop(0)
            raise APIFailure(500, code, detail)
        job.result = await state.render(job.endpoint, job.body, named)
        job.outcome = "SUCCEEDED"
    except APIFailure as failure:
        job.error = {"code": failure.code, "detail": str(failure.detail)}
        job.outcome = "FAILED"
        state.billing.refund(job.cost, endpoint=job.endpoint, job_id=job.id, request_id=request_id)
    job.finished = max(state.now(), job.starts)
    state.finish_job(job)
    if job.callback_url:
        await state.outbound.deliver(
            job.callback_url, state.job_json(job), state.webhook_secret, state.callbacks
        )


def create_profile(
    state: EmulatorState, urls: list[str], tier: str, tag: str | None, request_id: str
) -> ProfileRecord:
    """Charge for a training and start validating its photos."""
    price = TRAINING_PRICES[tier]
    state.billing.require(price)
    record = ProfileRecord(
        id=state.new_id("prof_"),
        tier=tier,
        tag=tag,
        image_urls=urls,
        created=state.now(),
        training_seconds=state.config.training_seconds[tier],
    )
    state.profiles[record.id] = record
    state.billing.charge(
        price, endpoint="profiles/add", request_id=request_id, profile_id=record.id
    )
    state.save_profile(record)
    state.spawn(_validate(state, record))
    return record


def resume(state: EmulatorState) -> None:
    """Carry on with the work a restarted emulator read back from its state folder: profiles
    still validating are checked again, unfinished jobs run (on their original timeline)."""
    for record in list(state.profiles.values()):
        if record.validated_at is None and record.error is None and record.face_seed is None:
            state.spawn(_validate(state, record))
    for job in list(state.jobs.values()):
        if job.outcome is None:
            named = [state.profiles[i] for i in job.profile_ids if i in state.profiles]
            state.spawn(_run_job(state, job, named, job.request_id))


async def _validate(state: EmulatorState, record: ProfileRecord) -> None:
    """Download and decode every training photo, then start the training clock."""
    await _check_photos(state, record)
    if record.error is not None or record.validated_at is not None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, state.save_profile, record)


async def _check_photos(state: EmulatorState, record: ProfileRecord) -> None:
    try:
        images = [
            await load_image(url, f"image_urls.{i}", state.fetch, TRAINING_SIDE)
            for i, url in enumerate(record.image_urls)
        ]
    except APIFailure as failure:
        record.error = f"training image rejected: {failure.detail}"
        return
    subjects = [img for img in images if _images.has_subject(img)]
    if not subjects:
        record.error = "no subject found in the training images"
        return
    record.face = subjects[0]
    loop = asyncio.get_running_loop()
    record.picture = await loop.run_in_executor(None, _images.profile_picture, subjects[0])
    # Validation lasts its minimum time, or until the photos were checked if that took longer;
    # training starts at that moment, not when this task happens to wake up.
    due = record.created + state.config.validation_seconds
    if state.now() < due:
        await sleep_until(state.clock, due)
        record.validated_at = due
    else:
        record.validated_at = state.now()
