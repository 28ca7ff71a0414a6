"""The ``phota`` argument parser, and the table that names a parameter by the flag that sets it.

Each concern is one parent parser (how to reach the API, how to print, how to run a batch, how
to wait), and each command takes exactly the parents that apply to it, so that its ``--help``
lists only flags it reads. The shared flags live on each command (``phota enhance ... --json``),
not on ``phota`` itself: argparse would let a sub-command's defaults overwrite values given
before it.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

from .._version import __version__
from ..errors import InvalidRequestError

# What the SDK calls a parameter (``InvalidRequestError.field``) -> what the command line calls it.
OPTION_FLAGS: dict[str, str] = {
    "api_key": "--api-key (or PHOTA_API_KEY)",
    "base_url": "--base-url (or PHOTA_BASE_URL)",
    "n": "-n",
    "aspect_ratio": "--aspect-ratio",
    "resolution": "--resolution",
    "base_model": "--model",
    "output_format": "--format",
    "profile_ids": "--profile",
    "prompt": "PROMPT",
    "images": "IMAGE",
    "image": "IMAGE",
    "input_image": "IMAGE",
    "inputs": "IMAGE",
    "reference": "--reference",
    "reference_image": "--reference",
    "image_urls": "PHOTO",
    "tier": "--tier",
    "tag": "--tag",
    "timeout": "--timeout",
    "concurrency": "--concurrency",
    "manifest": "--manifest",
    "out_dir": "--out",
    "budget": "--budget",
    "prices": "--price",
    "profile_id": "PROFILE_ID",
    "job_id": "JOB_ID",
}

# Where a command spells a parameter differently from the table above.
COMMAND_FLAGS: dict[str, dict[str, str]] = {
    "enhance": {"prompt": "--prompt"},
    "profiles": {"images": "PHOTO"},
}

_FIELD = re.compile(r"(?P<name>[A-Za-z_][\w.]*?)(?:\[(?P<index>\d+)\])?$")


def flag_for(field: str, command: str | None = None) -> str:
    """The command-line name of the SDK parameter ``field`` (``"images[2]"`` -> ``"IMAGE #3"``).

    Args:
        field: an ``InvalidRequestError.field``, such as ``"n"`` or ``"profile_ids[0]"``.
        command: the sub-command being run, for the names that differ between commands.

    Returns:
        The flag or positional that set the parameter; ``field`` itself when none did.
    """
    match = _FIELD.match(field)
    if match is None:
        return field
    name = match["name"]
    flag = COMMAND_FLAGS.get(command or "", {}).get(name) or OPTION_FLAGS.get(name)
    if flag is None:
        return field
    return f"{flag} #{int(match['index']) + 1}" if match["index"] is not None else flag


def cli_message(exc: BaseException, command: str | None = None) -> str:
    """The error's line as the command line says it: an SDK parameter becomes its flag.

    Args:
        exc: the error to print.
        command: the sub-command that raised it (some parameters are spelt per command).

    Returns:
        ``"-n: must be an integer from 1 to 4"`` for ``InvalidRequestError("n", ...)``; the
        error's own text for any other error.
    """
    text = str(exc)
    if isinstance(exc, InvalidRequestError):
        prefix = f"{exc.field}: "
        if text.startswith(prefix):
            text = f"{flag_for(exc.field, command)}: {text[len(prefix) :]}"
    return text


def _amount(text: str, unit: str, *, above_zero: bool, number: str | None = None) -> float:
    """``text`` as a finite number of ``unit`` (above 0, or 0 or more); ``number`` is the part
    of ``text`` that spells it, when the flag allows a prefix such as ``$``."""
    try:
        value = float(text if number is None else number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of {unit}: {text!r}") from None
    if not ((value > 0 if above_zero else value >= 0) and math.isfinite(value)):
        need = " above 0" if above_zero else ", 0 or more"
        raise argparse.ArgumentTypeError(f"need a number of {unit}{need}: {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    """A finite number of seconds above zero (``--poll-interval 0.5``)."""
    return _amount(text, "seconds", above_zero=True)


def _seconds(text: str) -> float:
    """A finite number of seconds, zero or more (``--training-seconds 0``)."""
    return _amount(text, "seconds", above_zero=False)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _s3_url(text: str) -> tuple[str, str]:
    """``s3://BUCKET/PREFIX`` as ``(bucket, prefix)`` (``--upload``)."""
    scheme, _, rest = text.partition("://")
    bucket, _, prefix = rest.partition("/")
    if scheme.lower() != "s3" or not _BUCKET.fullmatch(bucket):
        raise argparse.ArgumentTypeError(
            f"need s3://BUCKET/PREFIX with a valid bucket name, got {text[:80]!r}"
        )
    return bucket, prefix


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


def _rate(text: str) -> tuple[float, float | None]:
    """``--rate-limit 20`` or ``--rate-limit 20:40`` (requests per second, bucket size)."""
    try:
        rate_text, _, burst_text = text.partition(":")
        rate, burst = float(rate_text), float(burst_text) if burst_text else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"not RATE or RATE:BURST: {text!r}") from None
    if not (0 < rate < float("inf")) or (burst is not None and not 1 <= burst < float("inf")):
        raise argparse.ArgumentTypeError(f"need RATE > 0 and BURST >= 1: {text!r}")
    return rate, burst


def _pixels(text: str) -> int:
    """``--max-output-side 64``: a whole number of pixels, at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a positive number of pixels: {text!r}")
    return int(text)


def _count(text: str) -> int:
    """``--max-outputs 500``: a whole number, zero or more."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"need a whole number >= 0: {text!r}")
    return int(text)


def _seed(text: str) -> int:
    """``--seed 42``: a whole number, zero or more."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}")
    return int(text)


def _port(text: str) -> int:
    """``--port 8080``: a TCP port number, 0 to 65535 (0 picks a free one)."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"need a port number from 0 to 65535: {text!r}")
    return int(text)


def _dollars(text: str) -> float:
    """``--budget 12.50``: a finite number of dollars, zero or more."""
    return _amount(text, "dollars", above_zero=False, number=text.removeprefix("$"))


def _price(text: str) -> tuple[str, float]:
    """``--price edit/nb2=0.08``: a price-table key and its dollars."""
    key, sep, amount = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"need KEY=USD, such as edit/nb2=0.08: {text!r}")
    return key, _dollars(amount)


def _concurrency(text: str) -> int:
    """``--concurrency 16``: a whole number of calls, at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"need a whole number of at least 1: {text!r}")
    return int(text)


# -- one parent parser per concern -------------------------------------------------------------


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def _debug_options() -> argparse.ArgumentParser:
    parent = _parent()
    parent.add_argument("--debug", action="store_true", help="tracebacks and debug logging")
    return parent


def _client_options() -> argparse.ArgumentParser:
    """How to reach the API."""
    parent = _parent()
    group = parent.add_argument_group("connection")
    group.add_argument("--api-key", help="API key (default: $PHOTA_API_KEY)")
    group.add_argument("--base-url", help="API base URL (default: $PHOTA_BASE_URL or production)")
    group.add_argument(
        "--emulator", action="store_true", help="run against an in-process Phota emulator"
    )
    return parent


def _output_options() -> argparse.ArgumentParser:
    """How to print the outcome."""
    parent = _parent()
    parent.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return parent


def _poll_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument(
        "--poll-interval",
        type=_positive_seconds,
        metavar="SECONDS",
        help="poll profiles and jobs every SECONDS (default: Phota's documented cadence, "
        "profiles 5-30 s, jobs 1-10 s)",
    )


def _wait_options(timeout: float) -> argparse.ArgumentParser:
    """How long and how often to wait on a profile or a job."""
    parent = _parent()
    group = parent.add_argument_group("waiting")
    group.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=timeout,
        metavar="SECONDS",
        help=f"give up waiting after SECONDS ({timeout:g})",
    )
    _poll_option(group)
    return parent


def _batch_options() -> argparse.ArgumentParser:
    """How to run many calls: outputs, concurrency, the manifest, the call's shared options."""
    parent = _parent()
    group = parent.add_argument_group("batch")
    group.add_argument("--out", required=True, type=Path, help="folder for the outputs")
    group.add_argument("--concurrency", type=_concurrency, default=16, help="calls in flight (16)")
    group.add_argument(
        "--manifest",
        type=Path,
        help="write-ahead log file (SQLite): a rerun resumes, paying each input once "
        "(items run as jobs)",
    )
    group.add_argument("--jobs", action="store_true", help="run each item as a job")
    group.add_argument("--format", default="jpg", choices=("jpg", "png"), help="output format")
    group.add_argument("--profile", action="append", default=[], help="profile id (repeatable)")
    _poll_option(group)
    money = parent.add_argument_group("spending")
    money.add_argument(
        "--budget",
        type=_dollars,
        metavar="USD",
        help="spend at most USD on this run: calls that would pass it are not sent, the rest "
        "are reported not started, and a rerun with --manifest and a larger budget resumes",
    )
    money.add_argument(
        "--estimate",
        action="store_true",
        help="print the run's estimated cost (what --manifest finished is not counted) and "
        "exit without sending anything",
    )
    money.add_argument(
        "--price",
        type=_price,
        action="append",
        default=[],
        metavar="KEY=USD",
        help="add a price (per output image) to the table, such as edit/nb2=0.08: edit and "
        "generate prices per model are not published (repeatable)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    """The ``phota`` parser: one sub-command per task, each with only the flags it reads.

    Returns:
        The parser; ``args.command`` (and ``args.action`` for ``profiles``/``jobs``) name the
        command chosen.
    """
    debug, client, output = _debug_options(), _client_options(), _output_options()
    batch = _batch_options()
    api = [client, output, debug]
    parser = argparse.ArgumentParser(
        prog="phota",
        description="Command line for the Phota image API. "
        "`phota COMMAND --help` lists a command's flags.",
        epilog="exit codes: 0 done, 1 some items failed or are pending, 2 usage error, "
        "130 interrupted (rerun the same command to resume a --manifest batch)",
    )
    parser.add_argument("--version", action="version", version=f"phota_async {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", parents=[output, debug], help="a full tour on the local emulator"
    )
    demo.add_argument("--out", type=Path, default=Path("phota-demo"), help="output folder")
    demo.add_argument(
        "--training-seconds",
        type=_seconds,
        default=4.0,
        metavar="SECONDS",
        help="how long the emulator takes to train the demo's profile (4)",
    )

    emulator = commands.add_parser("emulator", parents=[debug], help="run the local emulator")
    emulator.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    emulator.add_argument("--port", type=_port, default=8080, help="port (0 picks a free one)")
    emulator.add_argument(
        "--key",
        metavar="API_KEY",
        help="the API key it accepts (default: the --state-dir's, else a new random one)",
    )
    # The earlier spelling (renamed because ``--api-key`` reads as the key to send) is kept,
    # unlisted, so scripts that start the emulator that way keep working.
    emulator.add_argument("--api-key", dest="key", help=argparse.SUPPRESS)
    emulator.add_argument(
        "--training-seconds",
        type=_seconds,
        default=20.0,
        metavar="SECONDS",
        help="training time after validation (20)",
    )
    emulator.add_argument(
        "--latency",
        type=_latency,
        default=(0.0, 0.0),
        metavar="SECONDS[:MAX]",
        help="hold each API answer this long after charging (SECONDS:MAX draws from a range)",
    )
    # Keeping state and bounding memory (a development server that runs for days).
    emulator.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="keep profiles, jobs, idempotency keys, the ledger and outputs in DIR (SQLite and "
        "files) so a restart keeps them; use a fixed --port with it (default: memory only)",
    )
    emulator.add_argument(
        "--output-ttl",
        type=_seconds,
        metavar="SECONDS",
        help="keep output images and finished jobs this long (default: the URLs' 24 hours)",
    )
    emulator.add_argument(
        "--max-outputs",
        type=_count,
        default=1000,
        metavar="N",
        help="keep at most N output images, the oldest go first (1000)",
    )
    emulator.add_argument(
        "--max-jobs",
        type=_count,
        default=10_000,
        metavar="N",
        help="keep at most N job records, the oldest finished go first (10000)",
    )
    emulator.add_argument(
        "--log-ttl",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="keep request log entries (GET /_emulator/requests) this long (3600)",
    )
    emulator.add_argument(
        "--max-log",
        type=_count,
        default=10_000,
        metavar="N",
        help="keep at most N request log entries (10000); the ledger is always complete",
    )
    emulator.add_argument(
        "--max-output-side", type=_pixels, metavar="PX", help="cap output images (faster, smaller)"
    )
    emulator.add_argument(
        "--seed",
        type=_seed,
        metavar="N",
        help="reproducible outputs: the same calls give the same bytes (default: all differ)",
    )
    emulator.add_argument(
        "--rate-limit",
        type=_rate,
        metavar="RATE[:BURST]",
        help="refuse requests beyond RATE a second (a bucket of BURST, default RATE), uncharged",
    )
    emulator.add_argument(
        "--rate-limit-status",
        type=int,
        choices=(429, 503),
        default=429,
        help="answer refusals with 429 (default) or 503 (an overloaded service)",
    )
    emulator.add_argument(
        "--no-retry-after",
        dest="retry_after",
        action="store_false",
        help="refuse without a Retry-After header",
    )

    enhance = commands.add_parser("enhance", parents=[*api, batch], help="enhance photos")
    enhance.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE", help="files or folders")
    enhance.add_argument("--prompt", help="optional guidance")

    edit = commands.add_parser("edit", parents=[*api, batch], help="edit photos with one prompt")
    edit.add_argument(
        "prompt", metavar="PROMPT", help="the edit instruction ([[profile_id]] names a subject)"
    )
    edit.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE", help="files or folders")

    remix = commands.add_parser(
        "remix", parents=[*api, batch], help="restyle photos after a reference"
    )
    remix.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE", help="files or folders")
    remix.add_argument("--reference", required=True, type=Path, help="the style image")

    generate = commands.add_parser("generate", parents=api, help="draw images from a prompt")
    generate.add_argument(
        "prompt", metavar="PROMPT", help="what to draw ([[profile_id]] names a subject)"
    )
    generate.add_argument("--out", required=True, type=Path, help="folder for the outputs")
    generate.add_argument("-n", type=int, default=1, help="number of images (1-4)")
    generate.add_argument("--aspect-ratio", default="auto", help="auto, 1:1, 3:4, ... (auto)")
    generate.add_argument("--resolution", default="1K", help="1K, 2K or 4K (1K)")
    generate.add_argument("--model", default="nb2", help="base model (nb2)")
    generate.add_argument("--format", default="jpg", choices=("jpg", "png"), help="output format")

    profiles = commands.add_parser("profiles", help="trained subjects")
    actions = profiles.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", parents=[*api, _wait_options(1800.0)], help="train a profile"
    )
    create.add_argument("photos", nargs="+", metavar="PHOTO", help="photo URLs, files or folders")
    create.add_argument(
        "--tier",
        default="standard",
        choices=("standard", "fast"),
        help="standard (10-50 photos, default) or fast (5-10 photos)",
    )
    create.add_argument("--tag", help="a label to list it by (1-128 characters)")
    create.add_argument(
        "--wait", action="store_true", help="wait until it is READY (see --timeout)"
    )
    storage = create.add_argument_group(
        "uploading local photos (the [s3] extra; AWS credentials from the usual chain)"
    )
    storage.add_argument(
        "--upload",
        type=_s3_url,
        metavar="s3://BUCKET/PREFIX",
        help="upload local photos to this bucket and prefix, and train from presigned URLs",
    )
    storage.add_argument(
        "--endpoint-url", help="an S3-compatible endpoint: MinIO, Cloudflare R2, GCS (AWS)"
    )
    storage.add_argument("--region", help="the bucket's region (from the AWS configuration)")
    storage.add_argument(
        "--url-ttl",
        type=_positive_seconds,
        metavar="SECONDS",
        help="lifetime of the presigned URLs: validation and training must fit (86400)",
    )
    storage.add_argument(
        "--cleanup",
        action="store_true",
        help="delete the uploaded photos once training ends (READY or ERROR); needs --wait",
    )
    listing = actions.add_parser("list", parents=api, help="list profiles")
    listing.add_argument("--tag", help="only profiles with this tag")
    for name, text in (("status", "show a profile"), ("delete", "delete a profile")):
        actions.add_parser(name, parents=api, help=text).add_argument(
            "profile_id", metavar="PROFILE_ID"
        )
    wait = actions.add_parser(
        "wait", parents=[*api, _wait_options(1800.0)], help="wait until a profile is READY"
    )
    wait.add_argument("profile_id", metavar="PROFILE_ID")
    picture = actions.add_parser("picture", parents=api, help="save a profile's picture")
    picture.add_argument("profile_id", metavar="PROFILE_ID")
    picture.add_argument("--out", required=True, type=Path, help="JPEG file to write")

    jobs = commands.add_parser("jobs", help="asynchronous jobs")
    job_actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    job_actions.add_parser("get", parents=api, help="show a job").add_argument(
        "job_id", metavar="JOB_ID"
    )
    job_wait = job_actions.add_parser(
        "wait", parents=[*api, _wait_options(900.0)], help="wait for a job, save it"
    )
    job_wait.add_argument("job_id", metavar="JOB_ID")
    job_wait.add_argument("--out", type=Path, help="folder for the outputs")
    return parser
