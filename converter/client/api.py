"""The Python client of the converter service: files, conversions and runs.

Every method returns the API's JSON (dicts, as documented in the README's API
table) or raises a ``converter.client.errors`` exception carrying ``request_id``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value
from pathlib import Path
from typing import IO, Any, BinaryIO

import requests

from converter.client.automations import AutomationsMixin
from converter.client.body import Document, MultipartBody, Progress, Source
from converter.client.destinations import DestinationsMixin
from converter.client.errors import RunFailed, ServiceUnreachable, WaitTimeout
from converter.client.mixin_base import segment
from converter.client.transport import RetryPolicy, Transport

# Where a download goes: a path (written atomically) or a writable binary stream.
Destination = str | os.PathLike[str] | IO[bytes]
_FINISHED = ("completed", "failed")


@dataclass(frozen=True)
class OneShot:
    """The answer of a one-shot conversion (POST /v1/convert)."""

    content: bytes | None  # None when written to a destination
    size_bytes: int
    content_type: str
    filename: str | None
    cache: str | None  # X-Converter-Cache: "hit" or "miss"
    file_id: str | None  # X-Converter-File-Id, with store=True


def new_idempotency_key() -> str:
    """A fresh Idempotency-Key (UUID4)."""
    return str(uuid.uuid4())


class Client(AutomationsMixin, DestinationsMixin):
    """A connection to one converter service with one API key."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 300.0,
                 retry: RetryPolicy | None = None,
                 session: requests.Session | None = None) -> None:
        self.http = Transport(url, api_key, timeout, retry or RetryPolicy(), session)

    @classmethod
    def from_env(cls, **kwargs: Any) -> Client:
        """A client for CONVERTER_URL with CONVERTER_API_KEY (ConfigError if unset)."""
        from converter import config
        from converter.errors import ConfigError

        cfg = config.load()
        if not cfg.url:
            raise ConfigError("CONVERTER_URL is not set: export the service's base URL, "
                              "e.g. CONVERTER_URL=http://127.0.0.1:8080")
        if not cfg.api_key:
            raise ConfigError("CONVERTER_API_KEY is not set: export an API key (sk_live_...) "
                              "created with `converter keys create`")
        return cls(cfg.url, cfg.api_key, **kwargs)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release pooled connections."""
        self.http.close()

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, path, **kwargs)
        body: dict[str, Any] = response.json()
        return body

    def _json_none(self, method: str, path: str) -> None:
        self.http.request(method, path)

    def _creating(self, path: str, key: str | None, **kwargs: Any) -> dict[str, Any]:
        # One key for every attempt of this call: a retried POST is replayed, not repeated.
        headers = {**kwargs.pop("headers", {}), "Idempotency-Key": key or new_idempotency_key()}
        return self._json("POST", path, headers=headers, **kwargs)

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        params = {k: v for k, v in params.items() if v is not None}
        while True:
            page = self._json("GET", path, params=params)
            yield from page["data"]
            if not page.get("next_cursor"):
                return
            params["cursor"] = page["next_cursor"]

    # ------------------------------------------------------------------ files
    def upload(self, source: Source, *, filename: str | None = None, scope: str | None = None,
               progress: Progress | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """Upload a document from a path, bytes or binary stream; returns the file JSON."""
        document = Document(source, filename)
        try:
            body = MultipartBody({"scope": scope} if scope else {}, "file", document, progress)
            return self._creating("/v1/files", idempotency_key, data=body, rewind=body.rewind,
                                  headers={"Content-Type": body.content_type})
        finally:
            document.close()

    def get_file(self, file_id: str) -> dict[str, Any]:
        """One file's metadata."""
        return self._json("GET", f"/v1/files/{segment(file_id)}")

    def list_files(self, *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every file visible to the key, newest first, fetching pages as it goes."""
        return self._pages("/v1/files", {"limit": page_size})

    def delete_file(self, file_id: str) -> None:
        """Delete a file and its cached artifacts."""
        self.http.request("DELETE", f"/v1/files/{segment(file_id)}")

    def formats(self) -> dict[str, Any]:
        """The conversion matrix with each target's options."""
        return self._json("GET", "/v1/formats")

    # ------------------------------------------------------------------ conversion
    def convert(self, file_id: str, format: str, options: dict[str, Any] | None = None, *,
                dest: Destination | None = None, progress: Progress | None = None,
                idempotency_key: str | None = None) -> dict[str, Any]:
        """Convert an uploaded file; returns {download_url, ...}, downloading it to dest."""
        result = self._creating(f"/v1/files/{segment(file_id)}/convert", idempotency_key,
                                json={"format": format, "options": options or {}})
        if dest is not None:
            self.download(result["download_url"], dest, progress=progress)
        return result

    def download(self, url: str, dest: Destination, *, progress: Progress | None = None,
                 ) -> int:
        """Fetch a signed download URL into a path or stream; returns the bytes written."""
        # The URL is signed (and may be S3's): the API key stays with our own service.
        response = self.http.request("GET", url, auth=False, stream=True)
        return _save(response, dest, progress)

    def convert_oneshot(self, source: Source | None, format: str,
                        options: dict[str, Any] | None = None, *, url: str | None = None,
                        dest: Destination | None = None, store: bool = False,
                        filename: str | None = None, progress: Progress | None = None,
                        download_progress: Progress | None = None,
                        idempotency_key: str | None = None) -> OneShot:
        """POST /v1/convert: a document (or ``url``) in, the converted bytes out."""
        if (source is None) == (url is None):
            raise ValueError("give exactly one of source or url")
        fields = {"format": format, "options": json.dumps(options or {})}
        if store:
            fields["store"] = "true"
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        document = None
        try:
            if source is None:
                response = self.http.request("POST", "/v1/convert", data={**fields, "url": url},
                                             headers=headers, stream=True)
            else:
                document = Document(source, filename)
                body = MultipartBody(fields, "file", document, progress)
                response = self.http.request(
                    "POST", "/v1/convert", data=body, rewind=body.rewind, stream=True,
                    headers={**headers, "Content-Type": body.content_type})
        finally:
            if document is not None:
                document.close()
        content_type = response.headers.get("Content-Type", "")
        filename = _disposition_filename(response.headers.get("Content-Disposition"))
        cache = response.headers.get("X-Converter-Cache")
        file_id = response.headers.get("X-Converter-File-Id")
        if dest is None:
            content: bytes | None = response.content
            size = len(response.content)
        else:
            content, size = None, _save(response, dest, download_progress)
        return OneShot(content=content, size_bytes=size, content_type=content_type,
                       filename=filename, cache=cache, file_id=file_id)

    # ------------------------------------------------------------------ runs
    def create_run(self, file_id: str, format: str, options: dict[str, Any] | None = None, *,
                   webhook_url: str | None = None,
                   idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue an async conversion; returns {run_id, status, status_url}."""
        body: dict[str, Any] = {"file_id": file_id, "format": format}
        if options:
            body["options"] = options
        if webhook_url:
            body["webhook_url"] = webhook_url
        return self._creating("/v1/runs", idempotency_key, json=body)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """A run's status, with its download_url once completed."""
        return self._json("GET", f"/v1/runs/{segment(run_id)}")

    def list_runs(self, *, status: str | None = None, file_id: str | None = None,
                  page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every visible run (optionally by status or file), newest first, page by page."""
        return self._pages("/v1/runs", {"status": status, "file_id": file_id,
                                        "limit": page_size})

    def wait_run(self, run_id: str, *, timeout: float = 600.0, interval: float = 0.25,
                 max_interval: float = 5.0,
                 on_poll: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll until the run completes (returned), fails (RunFailed) or timeout (WaitTimeout)."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if on_poll is not None:
                on_poll(run)
            if run["status"] == "completed":
                return run
            if run["status"] == "failed":
                raise RunFailed(run)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeout(run, timeout)
            time.sleep(min(interval, remaining))
            # Backoff: a quick answer for short runs without hammering the API on long ones.
            interval = min(max_interval, interval * 1.5)

    def export_run(self, run_id: str, format: str, options: dict[str, Any] | None = None, *,
                   dest: Destination | None = None, progress: Progress | None = None,
                   idempotency_key: str | None = None) -> dict[str, Any]:
        """Re-export a completed run's output; returns {download_url, ...}, saved to dest."""
        body: dict[str, Any] = {"format": format}
        if options:
            body["options"] = options
        result = self._creating(f"/v1/runs/{segment(run_id)}/export", idempotency_key, json=body)
        if dest is not None:
            self.download(result["download_url"], dest, progress=progress)
        return result



def _disposition_filename(header: str | None) -> str | None:
    """The download name in a Content-Disposition, preferring the exact RFC 5987 filename*."""
    if not header:
        return None
    message = Message()
    message["Content-Disposition"] = header
    plain: str | None = None
    for name, value in message.get_params(header="content-disposition") or []:
        if name.lower() != "filename":
            continue
        if isinstance(value, tuple):  # filename*: (charset, language, percent-decoded bytes)
            return collapse_rfc2231_value(value)
        plain = value
    return plain


def _save(response: requests.Response, dest: Destination, progress: Progress | None) -> int:
    """Stream a response body to dest; a path is written to a temp file then renamed."""
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    written = 0
    try:
        if isinstance(dest, (str, os.PathLike)):
            path = Path(dest)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
            try:
                with tmp.open("wb") as out:
                    written = _copy(response, out, total, progress)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        else:
            written = _copy(response, dest, total, progress)
    finally:
        response.close()
    return written


def _copy(response: requests.Response, out: IO[bytes] | BinaryIO, total: int | None,
          progress: Progress | None) -> int:
    written = 0
    if progress is not None:
        progress(0, total)
    try:
        for chunk in response.iter_content(256 * 1024):
            out.write(chunk)
            written += len(chunk)
            if progress is not None:
                progress(written, total)
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
        raise ServiceUnreachable(f"the download broke off after {written} bytes: {exc}",
                                 ) from exc
    return written
