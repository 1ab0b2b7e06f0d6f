"""S3Storage: objects in an S3 bucket (AWS or any S3-compatible server such as MinIO or moto).

boto3 is imported when an S3Storage is built, not when this module is, so the
default local backend never needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from converter.storage.base import (
    ObjectMissing,
    StorageError,
    StoredObject,
    attachment_disposition,
    validate_key,
    validate_prefix,
)

# HEAD responses have no body, so a missing key only shows up as the bare status.
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_NO_BUCKET_CODES = frozenset({"NoSuchBucket"})
_DENIED_CODES = frozenset({"403", "AccessDenied", "Forbidden"})
_DELETE_BATCH = 1000  # DeleteObjects' per-request limit
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4's limit on X-Amz-Expires


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Storage:
    """Objects under ``prefix`` in ``bucket``; credentials and region come from the AWS chain."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        client: Any | None = None,
    ) -> None:
        try:
            from boto3.exceptions import Boto3Error
            from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
        except ImportError as exc:
            raise StorageError(
                "CONVERTER_STORAGE=s3 needs boto3, which is not installed: "
                "pip install boto3 (or set CONVERTER_STORAGE=local)"
            ) from exc
        self._client_error: type[Exception] = ClientError
        self._no_credentials: type[Exception] = NoCredentialsError
        self._sdk_errors: tuple[type[Exception], ...] = (BotoCoreError, Boto3Error)
        # OSError too: s3transfer reports local file problems (download_to) as plain OSError.
        self._transport_errors: tuple[type[Exception], ...] = (*self._sdk_errors, OSError)
        self.bucket = bucket
        # A prefix is a folder: "converter" and "converter/" both mean "converter/<key>".
        prefix = prefix.lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.endpoint_url = endpoint_url
        self._client: Any = client if client is not None else _make_client(endpoint_url)

    def __repr__(self) -> str:
        where = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}{where})"

    def put_file(self, key: str, path: Path, content_type: str) -> int:
        """Upload the file at path under key (multipart when large); return the size."""
        name = self._name(key)
        # Before any request, so a missing source is a plain FileNotFoundError.
        size = path.stat().st_size
        with self._errors("upload", key):
            self._client.upload_file(
                str(path), self.bucket, name, ExtraArgs={"ContentType": content_type}
            )
        return size

    def put_bytes(self, key: str, data: bytes, content_type: str) -> int:
        """Store data under key; return the size."""
        name = self._name(key)
        with self._errors("put", key):
            self._client.put_object(
                Bucket=self.bucket, Key=name, Body=data, ContentType=content_type
            )
        return len(data)

    def get_bytes(self, key: str) -> bytes:
        """Return the object's bytes; raise ObjectMissing if there is none."""
        name = self._name(key)
        with self._errors("get", key, missing=True):
            body = self._client.get_object(Bucket=self.bucket, Key=name)["Body"]
            try:
                data: bytes = body.read()
            finally:
                body.close()
        return data

    def download_to(self, key: str, path: Path) -> None:
        """Download the object to path (s3transfer renames a temp file into place)."""
        name = self._name(key)
        with self._errors("download", key, missing=True):
            self._client.download_file(self.bucket, name, str(path))

    def exists(self, key: str) -> bool:
        """Whether an object is stored under key."""
        return self.size(key) is not None

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if there is none."""
        name = self._name(key)
        try:
            with self._errors("head", key, missing=True):
                head = self._client.head_object(Bucket=self.bucket, Key=name)
        except ObjectMissing:
            return None
        return int(head["ContentLength"])

    def delete(self, key: str) -> None:
        """Remove the object; S3 itself treats deleting a missing key as success."""
        name = self._name(key)
        with self._errors("delete", key):
            self._client.delete_object(Bucket=self.bucket, Key=name)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with prefix; return how many were removed."""
        full = self.prefix + validate_prefix(prefix)
        removed = 0
        with self._errors("delete_prefix", prefix):
            paginator = self._client.get_paginator("list_objects_v2")
            # Deleting page by page is safe: the continuation token is a key, not an offset.
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                names = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                for start in range(0, len(names), _DELETE_BATCH):
                    batch = names[start : start + _DELETE_BATCH]
                    response = self._client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
                    )
                    errors = response.get("Errors") or []
                    removed += len(batch) - len(errors)
                    if errors:
                        first = errors[0]
                        raise StorageError(
                            f"S3 refused to delete {len(errors)} object(s) under {full!r} "
                            f"in bucket {self.bucket!r}, e.g. {first.get('Key')!r}: "
                            f"{first.get('Code')} {first.get('Message')}"
                        )
        return removed

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every object under prefix, a page (1000 keys) per request."""
        full = self.prefix + validate_prefix(prefix)
        with self._errors("list", prefix):
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for item in page.get("Contents", []):
                    modified = item["LastModified"]
                    yield StoredObject(item["Key"][len(self.prefix):], int(item["Size"]),
                                       modified if modified.tzinfo else
                                       modified.replace(tzinfo=UTC))

    def clear_partial_writes(self, older_than: datetime, dry_run: bool = False) -> int:
        """Abort multipart uploads under the prefix initiated before older_than."""
        aborted = 0
        with self._errors("multipart upload cleanup", self.prefix or "/"):
            paginator = self._client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
                for upload in page.get("Uploads", []):
                    started = upload["Initiated"]
                    if (started if started.tzinfo else started.replace(tzinfo=UTC)) >= \
                            older_than:
                        continue
                    if not dry_run:
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                    aborted += 1
        return aborted

    def local_path(self, key: str) -> Path | None:
        """Always None: objects are not on this machine's filesystem."""
        validate_key(key)
        return None

    def presigned_url(
        self, key: str, *, filename: str, content_type: str, expires_in: int
    ) -> str | None:
        """A SigV4 GET URL whose response is an attachment named filename."""
        name = self._name(key)
        if not 0 < expires_in <= _MAX_PRESIGN_SECONDS:
            raise ValueError(
                f"expires_in={expires_in} must be 1..{_MAX_PRESIGN_SECONDS} seconds "
                "(the SigV4 limit; see CONVERTER_URL_TTL)"
            )
        with self._errors("presign", key):
            url: str = self._client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": name,
                    "ResponseContentType": content_type,
                    "ResponseContentDisposition": attachment_disposition(filename),
                },
                ExpiresIn=expires_in,
            )
        return url

    def check(self) -> None:
        """HEAD the bucket; raise StorageError naming the setting to fix if that fails."""
        where = self.endpoint_url or "AWS"
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except self._client_error as exc:
            code = _code(exc)
            if code in _MISSING_CODES or code in _NO_BUCKET_CODES:
                message = (
                    f"S3 bucket {self.bucket!r} does not exist at {where}; "
                    "create it or fix CONVERTER_S3_BUCKET"
                )
            elif code in _DENIED_CODES:
                message = (
                    f"access to S3 bucket {self.bucket!r} at {where} is denied; check the AWS "
                    "credentials and CONVERTER_S3_BUCKET"
                )
            else:
                message = (
                    f"S3 bucket {self.bucket!r} at {where} failed its check: {exc}; check "
                    "CONVERTER_S3_BUCKET and CONVERTER_S3_ENDPOINT_URL"
                )
            raise StorageError(message) from exc
        except self._no_credentials as exc:
            raise StorageError(
                "no AWS credentials found for CONVERTER_STORAGE=s3; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or an instance role)"
            ) from exc
        except self._sdk_errors as exc:
            raise StorageError(
                f"cannot reach S3 at {where}: {exc}; check CONVERTER_S3_ENDPOINT_URL"
            ) from exc

    def _name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    @contextmanager
    def _errors(self, action: str, key: str, *, missing: bool = False) -> Iterator[None]:
        """Turn SDK and OS errors into ObjectMissing (when missing applies) or StorageError."""
        try:
            yield
        except self._client_error as exc:
            code = _code(exc)
            if missing and code in _MISSING_CODES:
                raise ObjectMissing(key) from None
            hint = (
                "CONVERTER_S3_BUCKET"
                if code in _NO_BUCKET_CODES
                else "CONVERTER_S3_BUCKET, CONVERTER_S3_ENDPOINT_URL and the AWS credentials"
            )
            raise self._failure(action, key, exc, hint) from exc
        except self._transport_errors as exc:
            raise self._failure(action, key, exc, "CONVERTER_S3_ENDPOINT_URL") from exc

    def _failure(self, action: str, key: str, exc: Exception, hint: str) -> StorageError:
        return StorageError(
            f"S3 {action} of {key!r} in bucket {self.bucket!r} failed: {exc} (check {hint})"
        )


def _make_client(endpoint_url: str | None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        # SigV4 everywhere: S3-compatible servers and newer AWS regions reject SigV2 URLs.
        signature_version="s3v4",
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        # Virtual-hosted addressing needs bucket DNS names, which MinIO/moto endpoints lack.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)
