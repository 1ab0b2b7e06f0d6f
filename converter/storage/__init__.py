"""Artifact storage: one contract (``Storage``), a local-directory and an S3 backend."""

from __future__ import annotations

from converter.config import Config
from converter.storage.base import (
    ObjectMissing,
    Storage,
    StorageError,
    StoredObject,
    attachment_disposition,
    validate_key,
)
from converter.storage.local import LocalStorage
from converter.storage.s3 import S3Storage

__all__ = [
    "LocalStorage",
    "ObjectMissing",
    "S3Storage",
    "Storage",
    "StorageError",
    "StoredObject",
    "attachment_disposition",
    "open_storage",
    "validate_key",
]


def open_storage(config: Config) -> Storage:
    """Build the backend CONVERTER_STORAGE selects."""
    if config.storage == "local":
        return LocalStorage(config.data_path / "objects")
    if config.storage == "s3":
        return S3Storage(
            bucket=config.s3_bucket,
            prefix=config.s3_prefix,
            endpoint_url=config.s3_endpoint_url or None,
        )
    raise StorageError(f"CONVERTER_STORAGE={config.storage!r} is invalid: use local or s3")
