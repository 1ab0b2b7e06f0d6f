"""The ``s3`` provider: a bucket and prefix on AWS or any S3-compatible server.

Small files are one PUT; large ones a multipart upload that is completed only
when every part is in, and aborted on any failure, so no object is ever partly
visible and no parts are left to be billed. "Do not overwrite" is S3's own
conditional write (``If-None-Match: *``), not a check followed by a write.

SDK failures are split in two: the provider refusing (bad keys, no bucket, no
right) is ConnectorFailed with S3's own reason; not answering, 5xx and
throttling are ConnectorUnavailable, which callers retry.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

from converter.connectors.base import Delivered, Entry
from converter.errors import ConnectorFailed, ConnectorUnavailable, DestinationExists

PROBE_NAME = ".converter-probe-"
MULTIPART_THRESHOLD = 16 * 2**20
PART_SIZE = 8 * 2**20  # S3's minimum part size is 5 MiB (except the last)
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_EXISTS = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
_TRANSIENT = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "Throttling",
                        "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed",
                        "OperationAborted", "500", "502", "503", "504"})


class S3Provider:
    """Objects under ``prefix`` in ``bucket``."""

    def __init__(self, bucket: str, prefix: str = "", region: str | None = None,
                 endpoint_url: str | None = None, access_key_id: str | None = None,
                 secret_access_key: str | None = None, client: Any | None = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD,
                 part_size: int = PART_SIZE) -> None:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        self._client_error: type[Exception] = ClientError
        self._no_credentials = (NoCredentialsError, PartialCredentialsError)
        self._sdk_error: type[Exception] = BotoCoreError
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size
        self.client: Any = client if client is not None else _make_client(
            region, endpoint_url, access_key_id, secret_access_key)

    def __repr__(self) -> str:
        return f"S3Provider(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def _key(self, path: str) -> str:
        return self.prefix + path

    @contextlib.contextmanager
    def _errors(self, action: str, path: str) -> Iterator[None]:
        try:
            yield
        except self._client_error as exc:
            raise self.classify(exc, action, path) from exc
        except self._no_credentials as exc:
            raise ConnectorFailed(
                f"S3 {action} failed: no credentials: give access_key_id and "
                f"secret_access_key, or run the service with an AWS role ({exc})") from exc
        except (self._sdk_error, OSError) as exc:
            raise ConnectorUnavailable(f"S3 {action} of {path!r} in bucket {self.bucket!r} "
                                       f"failed: {exc}") from exc

    def classify(self, exc: Exception, action: str, path: str) -> Exception:
        """ConnectorFailed (the provider refused), DestinationExists or ConnectorUnavailable."""
        response = getattr(exc, "response", None) or {}
        error = response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        message = str(error.get("Message") or code or exc)
        reason = f"S3 {action} of {path!r} in bucket {self.bucket!r} failed: {code}: {message}"
        if code in _EXISTS or status == 412:
            return DestinationExists(f"{path!r} already exists at the destination", path=path)
        if code in _TRANSIENT or status >= 500 or status == 429:
            return ConnectorUnavailable(reason)
        return ConnectorFailed(reason, provider_error=code or str(status))

    def check(self) -> None:
        """PUT a probe object under the prefix, then DELETE it."""
        probe = f"{PROBE_NAME}{secrets.token_hex(8)}"
        with self._errors("test write", probe):
            self.client.put_object(Bucket=self.bucket, Key=self._key(probe),
                                   Body=b"converter connector test\n")
        with self._errors("test delete", probe):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(probe))

    def list(self, path: str, cursor: str | None, limit: int) -> tuple[list[Entry], str | None]:
        """One page of "folders" (common prefixes) and objects directly under path."""
        folder = self._key(path + "/" if path else "")
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": folder, "Delimiter": "/",
                                "MaxKeys": limit}
        if cursor:
            args["ContinuationToken"] = cursor
        with self._errors("list", path or "/"):
            page = self.client.list_objects_v2(**args)
        entries = [Entry(path=p["Prefix"][len(self.prefix):].rstrip("/"), is_dir=True)
                   for p in page.get("CommonPrefixes", [])]
        entries += [self._entry(item) for item in page.get("Contents", [])
                    if item["Key"] != folder and PROBE_NAME not in item["Key"]]
        entries.sort(key=lambda e: e.path)
        return entries, page.get("NextContinuationToken") if page.get("IsTruncated") else None

    def _entry(self, item: dict[str, Any]) -> Entry:
        modified = item.get("LastModified")
        if modified is not None and modified.tzinfo is None:
            modified = modified.replace(tzinfo=UTC)
        return Entry(path=item["Key"][len(self.prefix):], is_dir=False,
                     size=int(item.get("Size", item.get("ContentLength", 0))),
                     modified=modified, etag=str(item.get("ETag", "")).strip('"') or None)

    def walk(self, path: str) -> Iterator[Entry]:
        """Every object under path, recursively."""
        folder = self._key(path + "/" if path else "")
        with self._errors("list", path or "/"):
            for page in self.client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=folder):
                for item in page.get("Contents", []):
                    if not item["Key"].endswith("/") and PROBE_NAME not in item["Key"]:
                        yield self._entry(item)

    def stat(self, path: str) -> Entry | None:
        """HEAD the object; None when there is none."""
        try:
            with self._errors("head", path):
                head = self.client.head_object(Bucket=self.bucket, Key=self._key(path))
        except ConnectorFailed as exc:
            if exc.details.get("provider_error") in _MISSING:
                return None
            raise
        return self._entry({"Key": self._key(path), **head})

    def download(self, path: str, target: Path) -> None:
        """Download the object to target."""
        with self._errors("download", path):
            self.client.download_file(self.bucket, self._key(path), str(target))

    def discard_partial(self, path: str) -> int:
        """Abort the multipart uploads to path a killed writer left open (invisible, billed).

        A cut-short single PUT never becomes an object; only multipart parts linger.
        """
        key = self._key(path)
        with self._errors("listing uploads", path):
            found = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        aborted = 0
        for upload in found.get("Uploads", []):
            if upload.get("Key") != key:
                continue
            with self._errors("aborting an upload", path):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                   UploadId=upload["UploadId"])
            aborted += 1
        return aborted

    def upload(self, source: Path, path: str, overwrite: bool) -> Delivered:
        """One PUT, or a multipart upload that is aborted if any part of it fails."""
        size = source.stat().st_size
        condition = {} if overwrite else {"IfNoneMatch": "*"}
        if size <= self.multipart_threshold:
            data = source.read_bytes()
            with self._errors("upload", path):
                put = self.client.put_object(Bucket=self.bucket, Key=self._key(path), Body=data,
                                             **condition)
            etag = str(put.get("ETag", "")).strip('"') or None
            return Delivered(path, size, hashlib.sha256(data).hexdigest(), etag)
        return self._multipart(source, path, condition)

    def _multipart(self, source: Path, path: str, condition: dict[str, str]) -> Delivered:
        key = self._key(path)
        with self._errors("upload", path):
            upload_id = self.client.create_multipart_upload(Bucket=self.bucket,
                                                            Key=key)["UploadId"]
        digest = hashlib.sha256()
        size = 0
        try:
            parts = []
            with self._errors("upload", path), source.open("rb") as src:
                number = 1
                while chunk := src.read(self.part_size):
                    digest.update(chunk)
                    size += len(chunk)
                    part = self.client.upload_part(Bucket=self.bucket, Key=key,
                                                   UploadId=upload_id, PartNumber=number,
                                                   Body=chunk)
                    parts.append({"ETag": part["ETag"], "PartNumber": number})
                    number += 1
                done = self.client.complete_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=upload_id,
                    MultipartUpload={"Parts": parts}, **condition)
        except BaseException:
            # Whatever went wrong, no parts may linger: they are invisible but billed.
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key,
                                                   UploadId=upload_id)
            raise
        etag = str(done.get("ETag", "")).strip('"') or None
        return Delivered(path, size, digest.hexdigest(), etag)

    def delete(self, path: str) -> None:
        """DELETE the object (S3 answers success for a missing one)."""
        with self._errors("delete", path):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(path))

    def move(self, path: str, new_path: str) -> None:
        """Copy the object to new_path, then delete the original."""
        with self._errors("move", path):
            self.client.copy({"Bucket": self.bucket, "Key": self._key(path)}, self.bucket,
                             self._key(new_path))
            self.client.delete_object(Bucket=self.bucket, Key=self._key(path))


def _make_client(region: str | None, endpoint_url: str | None, access_key_id: str | None,
                 secret_access_key: str | None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        connect_timeout=5,
        read_timeout=60,
        # Deliveries retry on their own, with backoff, around the whole upload.
        retries={"max_attempts": 2, "mode": "standard"},
        s3={"addressing_style": "path" if endpoint_url else "auto"},
    )
    # A session of its own: the ambient chain is used only when no keys are given, and
    # one connector's keys never leak into another's client.
    session = boto3.session.Session(aws_access_key_id=access_key_id or None,
                                    aws_secret_access_key=secret_access_key or None,
                                    region_name=region or None)
    return session.client("s3", endpoint_url=endpoint_url or None, config=config)
