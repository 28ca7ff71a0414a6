"""``phota --help``, ``--version`` and per-command help: each command lists only its own flags."""

from __future__ import annotations

import re

import pytest

import phota_async
from phota_async._cli import main
from phota_async._cli._parser import build_parser

HELP = {"-h"}
CLIENT = {"--api-key", "--base-url", "--emulator", "--json", "--debug"}
BATCH = {"--out", "--concurrency", "--manifest", "--jobs", "--format", "--profile"}
BATCH |= {"--budget", "--estimate", "--price"}
WAIT = {"--timeout", "--poll-interval"}

EXPECTED_FLAGS: dict[str, set[str]] = {
    "": HELP | {"--version"},
    "demo": HELP | {"--out", "--training-seconds", "--json", "--debug"},
    "emulator": HELP
    | {"--host", "--port", "--key", "--training-seconds", "--latency", "--max-output-side"}
    | {"--rate-limit", "--rate-limit-status", "--no-retry-after", "--debug", "--seed"}
    | {"--state-dir", "--output-ttl", "--max-outputs", "--max-jobs", "--log-ttl", "--max-log"},
    "enhance": HELP | CLIENT | BATCH | {"--poll-interval", "--prompt"},
    "edit": HELP | CLIENT | BATCH | {"--poll-interval"},
    "remix": HELP | CLIENT | BATCH | {"--poll-interval", "--reference"},
    "generate": HELP
    | CLIENT
    | {"--out", "-n", "--aspect-ratio", "--resolution", "--model", "--format"},
    "profiles": HELP,
    "profiles create": HELP
    | CLIENT
    | WAIT
    | {"--tier", "--tag", "--wait"}
    | {"--upload", "--endpoint-url", "--region", "--url-ttl", "--cleanup"},
    "profiles list": HELP | CLIENT | {"--tag"},
    "profiles status": HELP | CLIENT,
    "profiles wait": HELP | CLIENT | WAIT,
    "profiles picture": HELP | CLIENT | {"--out"},
    "profiles delete": HELP | CLIENT,
    "jobs": HELP,
    "jobs get": HELP | CLIENT,
    "jobs wait": HELP | CLIENT | WAIT | {"--out"},
}


def help_flags(text: str) -> set[str]:
    """The flags a help text lists: the first word of each option line (``-h, --help`` -> -h)."""
    return {match[1] for line in text.splitlines() if (match := re.match(r"\s{2}(-[\w-]+)", line))}


@pytest.mark.parametrize("command", list(EXPECTED_FLAGS))
def test_each_command_lists_exactly_its_own_flags(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command's --help lists exactly the flags that command reads, and no other."""
    assert main([*command.split(), "--help"]) == 0
    assert help_flags(capsys.readouterr().out) == EXPECTED_FLAGS[command]


def test_emulator_help_offers_no_client_flags(capsys: pytest.CaptureFixture[str]) -> None:
    """`phota emulator --help` mentions none of the flags that only a client reads."""
    assert main(["emulator", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--emulator", "--json", "--api-key", "--base-url", "--manifest"):
        assert flag not in out


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`phota --version` prints `phota_async X.Y.Z` and exits 0."""
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"phota_async {phota_async.__version__}\n"


def test_every_command_is_covered_by_the_flag_table(capsys: pytest.CaptureFixture[str]) -> None:
    """The table above names every command and action the top-level help offers."""
    assert main(["--help"]) == 0
    listed = set(re.findall(r"^\s{4}(\w+)\s", capsys.readouterr().out, re.M))
    for group in ("profiles", "jobs"):
        assert main([group, "--help"]) == 0
        actions = re.findall(r"^\s{4}(\w+)\s", capsys.readouterr().out, re.M)
        listed |= {f"{group} {action}" for action in actions}
    assert listed == set(EXPECTED_FLAGS) - {""}


def test_emulator_still_accepts_the_old_api_key_spelling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`phota emulator --api-key K`, the spelling before `--key`, still sets the key it accepts
    and stays out of the help."""
    args = build_parser().parse_args(["emulator", "--api-key", "phota_emu_old_spelling"])
    assert args.key == "phota_emu_old_spelling"
    assert main(["emulator", "--help"]) == 0
    assert "--api-key" not in capsys.readouterr().out
