"""Presigned URLs are bearer secrets: every text the SDK makes shows their bucket and key and
masks their query string, while data handed back to the caller keeps them whole."""

from __future__ import annotations

import logging
import pickle

import pytest

from phota_async import _protocol as proto
from phota_async._redact import mask_signed_urls
from phota_async.errors import ProfileTrainingError
from phota_async.models import Profile

URL = (
    "https://photos.s3.us-east-1.amazonaws.com/phota/ab12.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAEXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=0123456789abcdef"
)


@pytest.mark.parametrize(
    "url",
    [
        URL,
        "https://bkt.s3.amazonaws.com/k.jpg?AWSAccessKeyId=AKIA&Signature=abc%3D&Expires=1",
        "https://storage.googleapis.com/b/k.jpg?X-Goog-Algorithm=x&X-Goog-Signature=abc",
        "https://acct.blob.core.windows.net/c/k.jpg?sv=2024&se=2026&sig=abc%3D",
    ],
)
def test_a_signed_query_is_masked_and_the_bucket_and_key_kept(url: str) -> None:
    """S3 (SigV4, SigV2), GCS and SAS signed queries become ``?***``; the path stays."""
    masked = mask_signed_urls(f"cannot fetch {url}; giving up")
    assert masked == f"cannot fetch {url.split('?')[0]}?***; giving up"


def test_an_unsigned_query_is_left_alone() -> None:
    """A URL whose query carries no signature is shown as it is."""
    text = "see https://example.com/a?page=2&size=10"
    assert mask_signed_urls(text) == text


def test_a_training_error_echoing_a_presigned_url_hides_its_query() -> None:
    """A profile message quoting a presigned URL (as a real service may) is masked in the
    error's text, its profile snapshot, and after pickling."""
    profile = Profile("prof_1", "ERROR", f"cannot download {URL}")
    error = ProfileTrainingError(profile)
    texts = [str(error), repr(error), repr(error.profile), str(pickle.loads(pickle.dumps(error)))]
    for text in texts:
        assert "X-Amz-Signature" not in text
        assert "AKIAEXAMPLE" not in text
    assert "photos.s3.us-east-1.amazonaws.com/phota/ab12.jpg?***" in str(error)
    assert error.photos_unreachable


def test_a_log_line_holding_a_presigned_url_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    """A record on the SDK's logger that quotes a presigned URL shows it masked."""
    caplog.set_level(logging.DEBUG, logger="phota_async")
    logging.getLogger("phota_async").debug("uploaded %s", URL)
    assert caplog.records[-1].getMessage() == f"uploaded {URL.split('?')[0]}?***"


def test_download_urls_in_a_result_stay_whole() -> None:
    """The presigned download URLs of a result are data, not text: they are not masked."""
    body = (
        b'{"known_subjects": {"counts": {}}, "images": [], "download_urls": ["'
        + URL.encode()
        + b'"]}'
    )
    result = proto.decode_result(proto.Response(200, {}, body))
    assert result.download_urls == [URL]
