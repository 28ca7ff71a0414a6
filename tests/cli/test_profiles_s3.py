"""`phota profiles create PHOTOS --upload s3://BUCKET/PREFIX`: local training photos through a
real S3 server (moto on loopback) to the emulator, which downloads them from presigned URLs."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session

from phota_async._cli import main
from phota_async.testing import PhotaEmulator
from tests.cli.conftest import FAST_POLLS, run_json
from tests.helpers import jpeg_bytes
from tests.s3.conftest import s3_env, s3_server

__all__ = ["s3_env", "s3_server"]  # the S3 fixtures, shared with tests/s3


def _s3(endpoint: str, operation: str, **params: Any) -> Any:
    async def call() -> Any:
        async with get_session().create_client("s3", endpoint_url=endpoint) as s3:
            return await getattr(s3, operation)(**params)

    return asyncio.run(call())


@pytest.fixture
def bucket(s3_env: str) -> str:
    """A new, empty bucket on the S3 server."""
    name = f"cli-{uuid.uuid4().hex[:12]}"
    _s3(s3_env, "create_bucket", Bucket=name)
    return name


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder of five training photos."""
    path = tmp_path / "photos"
    path.mkdir()
    for i in range(5):
        (path / f"p{i}.jpg").write_bytes(jpeg_bytes(i))
    return path


def _keys(endpoint: str, bucket: str) -> list[str]:
    listed = _s3(endpoint, "list_objects_v2", Bucket=bucket)
    return [item["Key"] for item in listed.get("Contents", [])]


def _create(folder: Path, bucket: str, endpoint: str, *extra: str) -> list[str]:
    return [
        "profiles",
        "create",
        str(folder),
        "--upload",
        f"s3://{bucket}/training",
        "--endpoint-url",
        endpoint,
        "--tier",
        "fast",
        *extra,
    ]


@pytest.mark.phota_emulator(training_seconds=0.2)
def test_local_photos_upload_to_s3_and_the_profile_trains(
    env: PhotaEmulator,
    s3_env: str,
    bucket: str,
    folder: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Local photos land under the prefix, one object each, and the profile trains READY."""
    code, data = run_json(_create(folder, bucket, s3_env, "--wait", *FAST_POLLS), capsys)
    assert code == 0
    assert isinstance(data, dict)
    assert data["status"] == "READY"
    keys = _keys(s3_env, bucket)
    assert len(keys) == 5
    assert all(key.startswith("training/") and key.endswith(".jpg") for key in keys)


@pytest.mark.phota_emulator(training_seconds=0.2)
def test_upload_and_training_print_progress_lines(
    env: PhotaEmulator,
    s3_env: str,
    bucket: str,
    folder: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The upload line counts photos and MB with a rate; the training line follows the
    status to READY."""
    assert main(_create(folder, bucket, s3_env, "--wait", *FAST_POLLS)) == 0
    err = capsys.readouterr().err.splitlines()
    uploads = [line for line in err if line.startswith("upload: ")]
    assert uploads[-1].startswith("upload: 5/5 ")
    assert " MB, " in uploads[-1]
    assert uploads[-1].endswith(" MB/s")
    training = [line for line in err if line.startswith("training: ")]
    assert "VALIDATING" in training[0]
    assert training[-1].endswith("READY")


@pytest.mark.phota_emulator(training_seconds=0.2)
def test_cleanup_deletes_the_photos_after_training(
    env: PhotaEmulator,
    s3_env: str,
    bucket: str,
    folder: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With --cleanup the uploaded photos are deleted once the profile is READY."""
    code, data = run_json(
        _create(folder, bucket, s3_env, "--wait", "--cleanup", *FAST_POLLS), capsys
    )
    assert code == 0
    assert data["status"] == "READY"  # type: ignore[index]
    assert _keys(s3_env, bucket) == []


def test_a_missing_bucket_fails_before_training_is_requested(
    env: PhotaEmulator, s3_env: str, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bucket that does not exist is exit 1 with a clear message, and no profile exists."""
    assert main(_create(folder, "no-such-bucket-here", s3_env)) == 1
    assert "does not exist" in capsys.readouterr().err
    assert env.profiles() == []
    assert env.ledger == []


@pytest.mark.parametrize(
    "target", ["bucket/prefix", "s3://", "s3://Bad_Bucket/x", "http://bucket/prefix"]
)
def test_a_bad_s3_url_is_a_usage_error(
    folder: Path, target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--upload needs s3://BUCKET/PREFIX with a valid bucket name (exit 2)."""
    code = main(["profiles", "create", str(folder), "--upload", target, "--api-key", "k" * 12])
    assert code == 2
    assert "s3://BUCKET/PREFIX" in capsys.readouterr().err


def test_upload_without_the_s3_extra_names_it(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without aiobotocore, --upload is a usage error naming the extra to install."""
    monkeypatch.setitem(sys.modules, "aiobotocore.session", None)
    code = main(
        ["profiles", "create", str(folder), "--upload", "s3://photos/x", "--api-key", "k" * 12]
    )
    assert code == 2
    assert "pip install 'phota-async[s3]'" in capsys.readouterr().err


def test_urls_mixed_with_upload_are_a_usage_error(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--upload takes local photos only; photo URLs beside it are refused (exit 2)."""
    argv = ["profiles", "create", str(folder), "https://example.com/a.jpg"]
    code = main([*argv, "--upload", "s3://photos/x", "--api-key", "k" * 12])
    assert code == 2
    assert "--upload takes local photos only" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--upload", "s3://photos/x", "--cleanup"], "add --wait"),
        (["--endpoint-url", "http://127.0.0.1:9"], "--endpoint-url goes with --upload"),
    ],
)
def test_storage_flags_out_of_place_are_usage_errors(
    folder: Path, flags: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--cleanup needs --wait, and the storage flags need --upload (exit 2)."""
    code = main(["profiles", "create", str(folder), *flags, "--api-key", "k" * 12])
    assert code == 2
    assert said in capsys.readouterr().err
