"""Object storage for training photos (the ``[s3]`` extra): the name ``design.md`` fixes.

``phota_async.storage.S3Uploader`` is ``phota_async.s3.S3Uploader``; see that module.
"""

from __future__ import annotations

from .s3 import DEFAULT_URL_TTL, MAX_URL_TTL, S3Uploader, StorageError, UploadProgress

__all__ = ["DEFAULT_URL_TTL", "MAX_URL_TTL", "S3Uploader", "StorageError", "UploadProgress"]
