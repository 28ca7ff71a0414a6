"""The ``phota`` command line (also ``python -m phota_async``).

Exit codes: 0 when everything was done, 1 when some items (or the call) failed or are pending,
2 for a usage error, 130 when interrupted (Ctrl-C). Errors are one readable line; ``--debug`` shows the traceback and debug logging.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from ._progress import Progress
from ._redact import MIN_KEY, Secret
from .errors import InvalidRequestError, PhotaError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif"}
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """A command line that cannot be run as given."""


# -- parser ----------------------------------------------------------------------------------


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-key", help="API key (default: $PHOTA_API_KEY)")
    common.add_argument("--base-url", help="API base URL (default: $PHOTA_BASE_URL or production)")
    common.add_argument(
        "--emulator", action="store_true", help="run against an in-process Phota emulator"
    )
    common.add_argument("--json", action="store_true", help="print machine-readable JSON")
    common.add_argument("--debug", action="store_true", help="tracebacks and debug logging")
    return common


def _batch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="folder for the outputs")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight (16)")
    parser.add_argument(
        "--manifest",
        type=Path,
        help="write-ahead log file (SQLite): a rerun resumes, paying each input once (items run as jobs)",
    )
    parser.add_argument("--jobs", action="store_true", help="run each item as a job")
    parser.add_argument("--format", default="jpg", choices=("jpg", "png"), help="output format")
    parser.add_argument("--profile", action="append", default=[], help="profile id (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    # The shared options live on each command (``phota enhance ... --emulator``): argparse
    # would let a sub-command's defaults overwrite values given before it.
    parser = argparse.ArgumentParser(
        prog="phota", description="Command line for the Phota image API."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", parents=[common], help="a full tour on the local emulator")
    demo.add_argument("--out", type=Path, default=Path("phota-demo"), help="output folder")

    emulator = commands.add_parser("emulator", parents=[common], help="run the local emulator")
    emulator.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    emulator.add_argument("--port", type=int, default=8080, help="port (0 picks a free one)")
    emulator.add_argument(
        "--training-seconds", type=float, default=20.0, help="training time after validation"
    )
    emulator.add_argument(
        "--latency",
        type=_latency,
        default=(0.0, 0.0),
        metavar="SECONDS",
        help="hold each API answer this long after charging (LOW:HIGH draws from a range)",
    )
    emulator.add_argument(
        "--max-output-side", type=_pixels, metavar="PX", help="cap output images (faster, smaller)"
    )

    enhance = commands.add_parser("enhance", parents=[common], help="enhance photos")
    enhance.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    enhance.add_argument("--prompt", help="optional guidance")
    _batch_options(enhance)

    edit = commands.add_parser("edit", parents=[common], help="edit photos with one prompt")
    edit.add_argument("prompt", help="the edit instruction ([[profile_id]] names a subject)")
    edit.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    _batch_options(edit)

    remix = commands.add_parser("remix", parents=[common], help="restyle photos after a reference")
    remix.add_argument("inputs", nargs="+", type=Path, help="image files or folders")
    remix.add_argument("--reference", required=True, type=Path, help="the style image")
    _batch_options(remix)

    generate = commands.add_parser("generate", parents=[common], help="draw images from a prompt")
    generate.add_argument("prompt", help="what to draw ([[profile_id]] names a subject)")
    generate.add_argument("--out", required=True, type=Path, help="folder for the outputs")
    generate.add_argument("-n", type=int, default=1, help="number of images (1-4)")
    generate.add_argument("--aspect-ratio", default="auto")
    generate.add_argument("--resolution", default="1K")
    generate.add_argument("--model", default="nb2", help="base model")
    generate.add_argument("--format", default="jpg", choices=("jpg", "png"))

    profiles = commands.add_parser("profiles", help="trained subjects")
    actions = profiles.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", parents=[common], help="train a profile")
    create.add_argument("photos", nargs="+", help="photo URLs, files or folders")
    create.add_argument("--tier", default="standard", choices=("standard", "fast"))
    create.add_argument("--tag")
    create.add_argument("--wait", action="store_true", help="wait until it is READY")
    create.add_argument("--timeout", type=float, default=1800.0)
    listing = actions.add_parser("list", parents=[common], help="list profiles")
    listing.add_argument("--tag")
    for name, text in (("status", "show a profile"), ("delete", "delete a profile")):
        actions.add_parser(name, parents=[common], help=text).add_argument("profile_id")
    wait = actions.add_parser("wait", parents=[common], help="wait until a profile is READY")
    wait.add_argument("profile_id")
    wait.add_argument("--timeout", type=float, default=1800.0)
    picture = actions.add_parser("picture", parents=[common], help="save a profile's picture")
    picture.add_argument("profile_id")
    picture.add_argument("--out", required=True, type=Path, help="JPEG file to write")

    jobs = commands.add_parser("jobs", help="asynchronous jobs")
    job_actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    job_actions.add_parser("get", parents=[common], help="show a job").add_argument("job_id")
    job_wait = job_actions.add_parser("wait", parents=[common], help="wait for a job, save it")
    job_wait.add_argument("job_id")
    job_wait.add_argument("--out", type=Path, help="folder for the outputs")
    job_wait.add_argument("--timeout", type=float, default=900.0)
    return parser


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


@contextlib.asynccontextmanager
async def open_client(args: argparse.Namespace) -> AsyncIterator[Any]:
    """A ``PhotaClient`` for the command, on an in-process emulator with ``--emulator``."""
    from ._client import PhotaClient

    if not args.emulator:
        async with PhotaClient(api_key=args.api_key, base_url=args.base_url) as client:
            yield client
        return
    from .testing import PhotaEmulator

    async with (
        PhotaEmulator(training_seconds=3.0) as emulator,
        PhotaClient(api_key=emulator.api_key, base_url=emulator.base_url) as client,
    ):
        yield client


def _emit(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else text)


def _item_line(item: Any) -> str:
    error = item.error
    text = str(error) if error is not None else ""
    if error is not None and not isinstance(error, PhotaError):
        text = f"{type(error).__name__}: {text}"
    text = " ".join(text.split())[:300]
    if item.pending is not None:
        return f"pending ({item.pending}): {item.input}: {text}"
    return f"failed: {item.input}: {text}"


async def run_batch(args: argparse.Namespace) -> int:
    """Run an enhance/edit/remix batch.

    The first SIGINT or SIGTERM stops starting new items and lets those in flight finish and
    be recorded; a second one abandons them (they stay pending in the manifest, resumed by key
    on the next run). Either way the summary and a resume hint are printed and the exit code
    is 130.
    """
    inputs = expand_images(args.inputs, exclude=args.out)
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    options: dict[str, Any] = {"output_format": args.format}
    if args.profile:
        options["profile_ids"] = args.profile
    common = {
        "concurrency": args.concurrency,
        "out_dir": args.out,
        "manifest": args.manifest,
        "via_job": args.jobs,
    }
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
            bad = summary.failed + summary.pending
            bars[0].update(summary.worked, status=f"{bad} not done" if bad else "")
            if not item.ok:
                say(_item_line(item))

        async with open_client(args) as phota:
            if args.command == "enhance":
                if args.prompt:
                    options["prompt"] = args.prompt
                run = phota.enhance_many(inputs, on_progress=on_progress, **common, **options)
            elif args.command == "edit":
                run = phota.edit_many(
                    args.prompt, inputs, on_progress=on_progress, **common, **options
                )
            else:
                run = phota.remix_many(
                    inputs, reference=args.reference, on_progress=on_progress, **common, **options
                )

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
                                "error": _item_line(item) if item.error else None,
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
            "estimated_cost": round(summary.cost, 4),
            "interrupted": presses > 0,
            "items": sorted(items, key=lambda i: i["input"]),
        },
        summary.line(),
    )
    if presses:
        if args.manifest is not None:
            hint = f"rerun the same command to resume (manifest {args.manifest.absolute()})"
        else:
            hint = "no --manifest was given: a rerun starts over (pass --manifest to resume)"
        print(f"interrupted; {hint}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if summary.failed or summary.pending else EXIT_OK


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
    data = {"outputs": [str(p) for p in paths], "request_id": result.request_id}
    _emit(args, data, "\n".join(data["outputs"]))
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
            from ._files import write_atomic

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
    photos += local
    uploader = None
    if local:
        if not args.emulator:
            raise UsageError("local photos can only be uploaded with --emulator; pass URLs")
        from ._uploads import emulator_uploader

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
            profile = await phota.profiles.wait_ready(profile.id, timeout=args.timeout)
    _emit(args, _profile_data(profile), f"{profile.id}\t{profile.status}")
    return EXIT_OK


async def run_jobs(args: argparse.Namespace) -> int:
    async with open_client(args) as phota:
        if args.action == "get":
            job = await phota.jobs.get(args.job_id)
            data = {"job_id": job.id, "status": job.status, "error": job.error and job.error.detail}
            _emit(args, data, f"{job.id}\t{job.status}")
            return EXIT_OK
        result = await phota.jobs.wait(args.job_id, timeout=args.timeout)
        paths = await result.save(args.out, stem=args.job_id) if args.out else []
    data = {
        "job_id": args.job_id,
        "outputs": [str(p) for p in paths],
        "request_id": result.request_id,
    }
    _emit(args, data, "\n".join(data["outputs"]) or f"{args.job_id}\tSUCCEEDED")
    return EXIT_OK


def _latency(text: str) -> tuple[float, float]:
    """``--latency 0.3`` or ``--latency 0.2:0.4`` (seconds)."""
    try:
        low, _, high = text.partition(":")
        pair = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not SECONDS or LOW:HIGH: {text!r}") from None
    if not (0 <= pair[0] <= pair[1] < float("inf")):
        raise argparse.ArgumentTypeError(f"need 0 <= LOW <= HIGH: {text!r}")
    return pair


def _pixels(text: str) -> int:
    """``--max-output-side 64``: a whole number of pixels, at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive number of pixels: {text!r}")
    return int(text)


async def run_emulator(args: argparse.Namespace) -> int:
    from .testing import PhotaEmulator

    emulator = PhotaEmulator(
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        training_seconds=args.training_seconds,
        latency=args.latency,
        max_output_side=args.max_output_side,
    )
    async with emulator:
        print(f"Phota emulator listening on {emulator.base_url}", flush=True)
        print(f"export PHOTA_BASE_URL={emulator.base_url}", flush=True)
        print(f"export PHOTA_API_KEY={emulator.api_key}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        await asyncio.Event().wait()
    return EXIT_OK  # pragma: no cover - only Ctrl-C ends the wait


async def run_demo(args: argparse.Namespace) -> int:
    from ._demo import demo

    return await demo(args.out, json_output=args.json)


RUNNERS = {
    "demo": run_demo,
    "emulator": run_emulator,
    "enhance": run_batch,
    "edit": run_batch,
    "remix": run_batch,
    "generate": run_generate,
    "profiles": run_profiles,
    "jobs": run_jobs,
}


def _scrubbed(exc: BaseException, args: argparse.Namespace) -> str:
    """The error's line with the key masked (the client that registered it may be gone)."""
    keys = [getattr(args, "api_key", None), os.environ.get("PHOTA_API_KEY")]
    keys.append(os.environ.get("PHOTA_KEY"))
    line = str(exc)
    for key in keys:
        if key and len(key) >= MIN_KEY:
            line = Secret(key).scrub(line)
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``phota`` command; return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0) and EXIT_USAGE
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(RUNNERS[args.command](args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED if args.command != "emulator" else EXIT_OK
    except (UsageError, InvalidRequestError) as exc:
        if args.debug:
            raise
        print(f"phota: error: {_scrubbed(exc, args)}", file=sys.stderr)
        return EXIT_USAGE
    except PhotaError as exc:
        if args.debug:
            raise
        print(f"phota: {type(exc).__name__}: {_scrubbed(exc, args)}", file=sys.stderr)
        return EXIT_FAILED
