"""What each ``phota`` command does, once its command line is parsed.

Every runner takes the parsed arguments and returns the exit code: 0 when everything was done,
1 when some items (or the call) failed or are pending, 130 when a batch was interrupted. A
command line that cannot be run raises ``UsageError`` (exit 2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from .._budget import reserved_price
from .._client import PhotaClient
from .._poll import Cadence, PollPolicy
from ..errors import PhotaError, ProfileTrainingError
from ._parser import cli_message
from .progress import Progress, batch_status

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A command line that cannot be run as given."""


# -- running ---------------------------------------------------------------------------------


def expand_images(paths: Sequence[Path], exclude: Path | None = None) -> list[Path]:
    """Image files named directly, plus those inside named folders (recursively, sorted).

    Images inside the folder ``exclude`` (a batch's ``--out``) are not taken from folders: an
    output folder inside the input folder must not turn a rerun's outputs into paid inputs.
    """
    out = Path(os.path.abspath(exclude)) if exclude is not None else None
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            folder = Path(os.path.abspath(path))
            # Only an output folder strictly inside this one: one above it holds the inputs.
            skip = out if out is not None and out != folder and out.is_relative_to(folder) else None
            found += sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in IMAGE_SUFFIXES
                and not (skip is not None and Path(os.path.abspath(p)).is_relative_to(skip))
            )
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"no such file or folder: {path}")
    if not found:
        raise UsageError("no images found in " + ", ".join(str(p) for p in paths))
    return found


def _poll_policy(args: argparse.Namespace) -> PollPolicy | None:
    """``--poll-interval S``: every profile and job poll S seconds apart (budget unchanged)."""
    seconds = getattr(args, "poll_interval", None)
    if seconds is None:
        # The in-process emulator trains in seconds: the documented cadence would mostly wait.
        return PollPolicy().scaled(0.05) if args.emulator else None
    every = Cadence(first=seconds, cap=seconds)
    return PollPolicy(profile_setup=every, profile_training=every, job=every)


@contextlib.asynccontextmanager
async def open_client(args: argparse.Namespace) -> AsyncIterator[PhotaClient]:
    """A ``PhotaClient`` for the command, on an in-process emulator with ``--emulator``.

    Raises:
        UsageError: no API key was given (``--api-key``) or found in the environment.
    """
    poll = _poll_policy(args)
    money: dict[str, Any] = {}
    if getattr(args, "price", None):
        money["prices"] = dict(args.price)
    if not args.emulator:
        if not (args.api_key or os.environ.get("PHOTA_API_KEY") or os.environ.get("PHOTA_KEY")):
            # Checked here, not left to the client, so that the message names the flag.
            raise UsageError(
                "no API key: pass --api-key KEY or set the PHOTA_API_KEY environment variable"
                " (or use --emulator)"
            )
        async with PhotaClient(
            api_key=args.api_key, base_url=args.base_url, poll=poll, **money
        ) as client:
            yield client
        return
    from ..testing import PhotaEmulator

    async with (
        PhotaEmulator(training_seconds=3.0) as emulator,
        PhotaClient(
            api_key=emulator.api_key, base_url=emulator.base_url, poll=poll, **money
        ) as client,
    ):
        yield client


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _item_line(item: Any, command: str) -> str:
    error = item.error
    text = cli_message(error, command) if error is not None else ""
    if error is not None and not isinstance(error, PhotaError):
        text = f"{type(error).__name__}: {text}"
    text = " ".join(text.split())[:300]
    if item.pending is not None:
        return f"pending ({item.pending}): {item.input}: {text}"
    if item.not_started:
        return f"not started: {item.input}: {text}"
    return f"failed: {item.input}: {text}"


def _call_options(args: argparse.Namespace) -> dict[str, Any]:
    """The batch call's options, under the SDK's names, from the flags that set them
    (``_parser.OPTION_FLAGS`` maps them back when the SDK refuses one)."""
    options: dict[str, Any] = {"output_format": args.format}
    if args.profile:
        options["profile_ids"] = args.profile
    if args.command == "enhance" and args.prompt:
        options["prompt"] = args.prompt
    return options


def _start_run(
    phota: PhotaClient, args: argparse.Namespace, inputs: list[Path], on_progress: Any
) -> Any:
    """The command's ``BatchRun`` (not started)."""
    options = _call_options(args)
    common = {
        "concurrency": args.concurrency,
        "out_dir": args.out,
        "manifest": args.manifest,
        "via_job": args.jobs,
        "budget": args.budget,
        "on_progress": on_progress,
    }
    if args.command == "enhance":
        return phota.enhance_many(inputs, **common, **options)
    if args.command == "edit":
        return phota.edit_many(args.prompt, inputs, **common, **options)
    return phota.remix_many(inputs, reference=args.reference, **common, **options)


async def estimate_batch(args: argparse.Namespace) -> int:
    """``--estimate``: print what the batch would cost and exit; nothing is sent."""
    inputs = expand_images(args.inputs, exclude=args.out)
    async with open_client(args) as phota, _start_run(phota, args, inputs, None) as run:
        estimate = await run.estimate()
        # The estimate is at expected prices; the budget admits items at what it reserves
        # (an enhance or remix at the recognised-subject price), so that decides the stop.
        reserved = estimate.per_item
        if args.command in ("enhance", "remix") and reserved is not None:
            reserved = reserved_price(phota._session.guard.prices, args.command, {}) or reserved
    text = f"estimate: {estimate.line()}"
    budget = args.budget
    if (
        budget is not None
        and reserved is not None
        and round(estimate.to_run * reserved, 6) > budget
    ):
        fits = int(round(budget / reserved, 6)) if reserved else estimate.to_run
        text += (
            f"\nover the --budget of ${budget:.2f} (each item reserves ${reserved:.2f} until "
            f"its charge is known): the run would stop after about {fits} items"
        )
    _emit(args, {"estimate": estimate.to_json(), "budget": budget}, text)
    return EXIT_OK


def _not_started_hint(args: argparse.Namespace, count: int) -> str:
    if args.manifest is not None:
        return (
            f"budget reached: {count} not started; rerun the same command with a larger "
            "--budget to resume (what is done is not paid again)"
        )
    return f"budget reached: {count} not started (pass --manifest to resume a run later)"


async def run_batch(args: argparse.Namespace) -> int:
    """Run an enhance/edit/remix batch (or, with ``--estimate``, only price it).

    The first SIGINT or SIGTERM stops starting new items and lets those in flight finish and
    be recorded; a second one abandons them (they stay pending in the manifest, resumed by key
    on the next run). Either way the summary and a resume hint are printed and the exit code
    is 130.
    """
    if args.estimate:
        return await estimate_batch(args)
    inputs = expand_images(args.inputs, exclude=args.out)
    items: list[dict[str, Any]] = []
    presses = 0
    with Progress(enabled=not args.json) as progress:
        bars: list[Any] = []

        def say(line: str) -> None:
            if progress.enabled:
                progress.note(line)
            else:
                print(line, file=sys.stderr, flush=True)

        def on_progress(summary: Any, item: Any) -> None:
            if item.skipped:
                return
            if not bars:  # rate and ETA count only the work of this run
                bars.append(progress.task(f"{args.command}", run.remaining))
            bars[0].update(summary.worked, status=batch_status(summary))
            if not item.ok and not item.not_started:
                say(_item_line(item, args.command))

        async with open_client(args) as phota:
            run = _start_run(phota, args, inputs, on_progress)

            def on_signal() -> None:
                nonlocal presses
                presses += 1
                if presses == 1:
                    run.stop()
                    print(
                        f"finishing {run.in_flight} in flight, Ctrl-C again to abandon",
                        file=sys.stderr,
                        flush=True,
                    )
                else:
                    run.abandon()

            loop = asyncio.get_running_loop()
            signals = (signal.SIGINT, signal.SIGTERM)
            for number in signals:
                loop.add_signal_handler(number, on_signal)
            try:
                async with run:
                    async for item in run:
                        items.append(
                            {
                                "input": str(item.input),
                                "status": item.status,
                                "outputs": [str(p) for p in item.paths],
                                "request_id": item.request_id,
                                "skipped": item.skipped,
                                "pending": item.pending,
                                "error": _item_line(item, args.command) if item.error else None,
                            }
                        )
            finally:
                for number in signals:
                    loop.remove_signal_handler(number)
    summary = run.summary
    _emit(
        args,
        {
            "done": summary.done,
            "failed": summary.failed,
            "pending": summary.pending,
            "pending_reasons": dict(summary.pending_reasons),
            "skipped": summary.skipped,
            "images": summary.images,
            "not_started": summary.not_started,
            "estimated_cost": round(summary.cost, 4),
            "spend": spend.to_json() if (spend := summary.spend) is not None else None,
            "throttled": summary.throttled,
            "interrupted": presses > 0,
            "items": sorted(items, key=lambda i: i["input"]),
        },
        summary.line(),
    )
    if summary.not_started:
        print(_not_started_hint(args, summary.not_started), file=sys.stderr, flush=True)
    if presses:
        if args.manifest is not None:
            hint = f"rerun the same command to resume (manifest {args.manifest.absolute()})"
        else:
            hint = "no --manifest was given: a rerun starts over (pass --manifest to resume)"
        print(f"interrupted; {hint}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    # Not started is not done: a budget-stopped run exits 1 (cleanly, with the hint above).
    return EXIT_FAILED if summary.failed or summary.pending or summary.not_started else EXIT_OK


async def run_generate(args: argparse.Namespace) -> int:
    async with open_client(args) as phota:
        result = await phota.generate(
            args.prompt,
            n=args.n,
            aspect_ratio=args.aspect_ratio,
            resolution=args.resolution,
            base_model=args.model,
            output_format=args.format,
        )
        paths = await result.save(args.out, stem="generate")
    outputs = [str(p) for p in paths]
    _emit(args, {"outputs": outputs, "request_id": result.request_id}, "\n".join(outputs))
    return EXIT_OK


def _profile_data(profile: Any) -> dict[str, Any]:
    return {
        "profile_id": profile.id,
        "status": profile.status,
        "message": profile.message,
        "tag": profile.tag,
    }


async def run_profiles(args: argparse.Namespace) -> int:
    async with open_client(args) as phota:
        if args.action == "create":
            return await _create_profile(args, phota)
        if args.action == "list":
            profiles = await phota.profiles.list(tag=args.tag)
            rows = [_profile_data(p) for p in profiles]
            _emit(args, rows, "\n".join(f"{p.id}\t{p.status}\t{p.tag or ''}" for p in profiles))
        elif args.action == "status":
            profile = await phota.profiles.get(args.profile_id)
            _emit(
                args,
                _profile_data(profile),
                f"{profile.id}\t{profile.status}\t{profile.message or ''}",
            )
        elif args.action == "wait":
            profile = await phota.profiles.wait_ready(args.profile_id, timeout=args.timeout)
            _emit(args, _profile_data(profile), f"{profile.id}\t{profile.status}")
        elif args.action == "picture":
            data = await phota.profiles.picture(args.profile_id)
            from .._files import write_atomic

            await write_atomic(args.out, data)
            _emit(args, {"path": str(args.out)}, str(args.out))
        else:
            await phota.profiles.delete(args.profile_id)
            _emit(
                args, {"profile_id": args.profile_id, "deleted": True}, f"deleted {args.profile_id}"
            )
    return EXIT_OK


async def _create_profile(args: argparse.Namespace, phota: Any) -> int:
    photos: list[Any] = []
    local: list[Path] = []
    for item in args.photos:
        if item.startswith(("http://", "https://")):
            photos.append(item)
        else:
            local += expand_images([Path(item)])
    if args.upload is not None:
        if photos:
            raise UsageError(
                "--upload takes local photos only: pass either files and folders with "
                "--upload, or photo URLs without it"
            )
        return await _create_from_s3(args, phota, local)
    loose = [f for f in ("endpoint_url", "region", "url_ttl") if getattr(args, f) is not None]
    if loose or args.cleanup:
        flag = "--" + (loose[0] if loose else "cleanup").replace("_", "-")
        raise UsageError(f"{flag} goes with --upload s3://BUCKET/PREFIX")
    photos += local
    uploader = None
    if local:
        if not args.emulator:
            raise UsageError(
                "local photos are uploaded with --upload s3://BUCKET/PREFIX (or --emulator); "
                "or pass photo URLs"
            )
        from .. import emulator_uploader

        uploader = emulator_uploader(phota)
    with Progress(enabled=not args.json) as progress:
        bar = progress.task("upload", len(local)) if local else None
        profile = await phota.profiles.create(
            photos,
            tier=args.tier,
            tag=args.tag,
            uploader=uploader,
            on_upload=(lambda done, _total: bar.update(done)) if bar else None,
        )
        if args.wait:
            profile = await _wait_training(phota, profile, args, progress)
    _emit(args, _profile_data(profile), f"{profile.id}\t{profile.status}")
    return EXIT_OK


def _s3_uploader(args: argparse.Namespace, on_progress: Any) -> Any:
    """The ``S3Uploader`` that ``--upload`` and its companions describe.

    Raises:
        UsageError: the ``[s3]`` extra is not installed, or ``--cleanup`` without ``--wait``.
    """
    if args.cleanup and not args.wait:
        raise UsageError(
            "--cleanup deletes the photos once training has ended: add --wait (Phota reads "
            "them until then)"
        )
    try:
        import aiobotocore.session  # noqa: F401 - only checks that the extra is installed
    except ImportError:
        raise UsageError("--upload needs the [s3] extra: pip install 'phota-async[s3]'") from None
    from ..s3 import DEFAULT_URL_TTL, S3Uploader

    bucket, prefix = args.upload
    return S3Uploader(
        bucket,
        prefix,
        endpoint_url=args.endpoint_url,
        region=args.region,
        url_ttl=DEFAULT_URL_TTL if args.url_ttl is None else args.url_ttl,
        cleanup=args.cleanup,
        on_progress=on_progress,
    )


async def _create_from_s3(args: argparse.Namespace, phota: Any, local: list[Path]) -> int:
    """``profiles create --upload s3://...``: upload, train, optionally wait and clean up."""
    total = sum(path.stat().st_size for path in local)
    with Progress(enabled=not args.json) as progress:
        bar: Any = None

        def on_progress(done: Any) -> None:
            bar.update(
                done.photos,
                status=f"photos, {_mb(done.bytes)}/{_mb(total)} MB, {done.mb_per_second:.1f} MB/s",
            )

        uploader = _s3_uploader(args, on_progress)
        bar = progress.task("upload", len(local))
        async with uploader:
            profile = await phota.profiles.create(
                local, tier=args.tier, tag=args.tag, uploader=uploader
            )
            if args.wait:
                try:
                    profile = await _wait_training(phota, profile, args, progress)
                except ProfileTrainingError as exc:
                    await _clean(uploader, exc.profile, progress)
                    raise
                await _clean(uploader, profile, progress)
    _emit(args, _profile_data(profile), f"{profile.id}\t{profile.status}")
    return EXIT_OK


def _mb(size: int) -> str:
    """Bytes as MB (10**6), with two decimals under 10 MB."""
    return f"{size / 1e6:.2f}" if size < 10**7 else f"{size / 1e6:.1f}"


async def _clean(uploader: Any, profile: Any, progress: Progress) -> None:
    """``--cleanup``: delete the uploaded photos now that training has ended."""
    if uploader.cleanup:
        deleted = await uploader.finish(profile)
        progress.note(f"cleanup: deleted {deleted} uploaded photos")


async def _wait_training(
    phota: Any, profile: Any, args: argparse.Namespace, progress: Progress
) -> Any:
    """Wait for training with one progress line: the status as it changes."""
    training = progress.task("training", None)
    return await phota.profiles.wait_ready(
        profile.id,
        timeout=args.timeout,
        on_update=lambda p: training.update(int(p.is_ready), status=p.status),
    )


async def run_jobs(args: argparse.Namespace) -> int:
    async with open_client(args) as phota:
        if args.action == "get":
            job = await phota.jobs.get(args.job_id)
            error = job.error and job.error.detail
            _emit(
                args,
                {"job_id": job.id, "status": job.status, "error": error},
                f"{job.id}\t{job.status}",
            )
            return EXIT_OK
        result = await phota.jobs.wait(args.job_id, timeout=args.timeout)
        paths = await result.save(args.out, stem=args.job_id) if args.out else []
    outputs = [str(p) for p in paths]
    _emit(
        args,
        {"job_id": args.job_id, "outputs": outputs, "request_id": result.request_id},
        "\n".join(outputs) or f"{args.job_id}\tSUCCEEDED",
    )
    return EXIT_OK


def _rate_limit(args: argparse.Namespace) -> Any:
    """The emulator's ``RateLimit`` from ``--rate-limit RATE[:BURST]`` and its companions."""
    if args.rate_limit is None:
        return None
    from ..testing import RateLimit

    rate, burst = args.rate_limit
    return RateLimit(rate, burst, retry_after=args.retry_after, status=args.rate_limit_status)


async def run_emulator(args: argparse.Namespace) -> int:
    from ..testing import PhotaEmulator, StateDirError

    try:
        emulator = PhotaEmulator(
            host=args.host,
            port=args.port,
            api_key=args.key,
            training_seconds=args.training_seconds,
            latency=args.latency,
            max_output_side=args.max_output_side,
            rate_limit=_rate_limit(args),
            seed=args.seed,
            **_emulator_retention(args),
        )
    except StateDirError as exc:
        raise UsageError(f"--state-dir: {exc}") from exc
    # SIGTERM (a process manager, ``docker stop``) stops the server like Ctrl-C: cleanly.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await _serve_emulator(emulator, stop)
    finally:
        with contextlib.suppress(NotImplementedError):
            loop.remove_signal_handler(signal.SIGTERM)
    return EXIT_OK


def _emulator_retention(args: argparse.Namespace) -> dict[str, Any]:
    """``PhotaEmulator`` options from ``--state-dir``, ``--output-ttl`` and their companions."""
    return {
        "state_dir": args.state_dir,
        "output_ttl": args.output_ttl,
        "max_outputs": args.max_outputs,
        "max_jobs": args.max_jobs,
        "log_ttl": args.log_ttl,
        "max_log": args.max_log,
    }


async def _serve_emulator(emulator: Any, stop: asyncio.Event) -> None:
    async with emulator:
        print(f"Phota emulator listening on {emulator.base_url}", flush=True)
        if emulator.rate_limit is not None:
            limit = emulator.rate_limit
            hint = "" if limit.retry_after else ", no Retry-After"
            print(
                f"rate limit: {limit.rate:g} requests/s, burst {limit.size:g}, "
                f"refusals answered {limit.status}{hint}",
                flush=True,
            )
        print(f"export PHOTA_BASE_URL={emulator.base_url}", flush=True)
        print(f"export PHOTA_API_KEY={emulator.api_key}", flush=True)
        if emulator.state_dir is not None:
            print(f"state kept in {emulator.state_dir}", flush=True)
        print(
            f"ledger and request log: {emulator.origin}/_emulator/ledger and /_emulator/requests"
            " (with X-API-Key)",
            flush=True,
        )
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()


async def run_demo(args: argparse.Namespace) -> int:
    from .demo import demo

    return await demo(args.out, json_output=args.json, training_seconds=args.training_seconds)


Runner = Callable[[argparse.Namespace], Coroutine[Any, Any, int]]

RUNNERS: dict[str, Runner] = {
    "demo": run_demo,
    "emulator": run_emulator,
    "enhance": run_batch,
    "edit": run_batch,
    "remix": run_batch,
    "generate": run_generate,
    "profiles": run_profiles,
    "jobs": run_jobs,
}
