"""The storage contract every backend implements, documented once.

Keys are relative, '/'-separated names such as ``originals/<file_id>`` or
``artifacts/<file_id>/<digest>.pdf``. Every backend validates them the same way
(see ``validate_key``) so a key that works on one backend works on all, and a
key built from client input can never escape the storage root.

Errors: ``StorageError`` means the medium failed (disk, permissions, network,
bucket); it is the operator's problem, not the client's. ``ObjectMissing`` is
the one expected failure: the key holds no object.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import quote

# S3's limit; local filesystems allow more in total but we keep backends interchangeable.
MAX_KEY_BYTES = 1024

# LocalStorage writes in-flight objects under this name; reserving it keeps a
# half-written temp file from ever being mistaken for (or clobbering) a real key.
TEMP_PREFIX = ".tmp-"


class StorageError(Exception):
    """The storage medium failed or is misconfigured; the message names what to fix."""


class ObjectMissing(StorageError, KeyError):
    """No object is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object stored under key {key!r}")
        self.key = key

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message and wrap it in quotes.
        return str(self.args[0])


@dataclass(frozen=True)
class StoredObject:
    """One object found by ``Storage.list_objects``: its key, size and last write (UTC)."""

    key: str
    size: int
    modified: datetime


@runtime_checkable
class Storage(Protocol):
    """Where originals and artifacts live: a flat key -> bytes store.

    Writes are atomic: a reader sees the previous object or the complete new
    one, never a prefix of it. Every method raises ValueError for an invalid key
    (see ``validate_key``) before touching the medium, and StorageError when the
    medium itself fails.
    """

    def put_file(self, key: str, path: Path, content_type: str) -> int:
        """Store the bytes of the file at path under key, replacing any object; return the size.

        A missing source file raises FileNotFoundError (a caller bug, not a storage failure).
        """
        ...

    def put_bytes(self, key: str, data: bytes, content_type: str) -> int:
        """Store data under key, replacing any object; return the size."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Return the object's bytes; raise ObjectMissing if there is none."""
        ...

    def download_to(self, key: str, path: Path) -> None:
        """Write the object to the local file path (its directory must exist); ObjectMissing."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored under key."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if there is none."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; do nothing if there is none."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with prefix (plain string match); return count.

        The prefix is validated like a key except that it may end with '/' and its
        last segment may be partial; an empty prefix is refused so that a bug cannot
        wipe the whole store.
        """
        ...

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every complete object whose key starts with prefix (validated as in delete_prefix).

        Writes in flight are not listed. Order is unspecified; the listing is lazy, so
        objects written or removed while it runs may or may not appear.
        """
        ...

    def clear_partial_writes(self, older_than: datetime, dry_run: bool = False) -> int:
        """Remove what writes killed midway left (never listed objects); return how many.

        Local: temp files of interrupted writes. S3: incomplete multipart uploads,
        which are billed like objects until aborted. Only those begun before
        older_than go, so a write still in flight is never touched.
        """
        ...

    def local_path(self, key: str) -> Path | None:
        """The file the HTTP layer can stream the object from, or None on remote backends.

        No I/O: the file may not exist (or may vanish before it is opened), so callers
        check for that themselves.
        """
        ...

    def presigned_url(
        self, key: str, *, filename: str, content_type: str, expires_in: int
    ) -> str | None:
        """A time-limited GET URL that downloads the object as an attachment, or None.

        The response carries ``content_type`` and ``attachment_disposition(filename)``.
        None means the backend cannot sign URLs and the service must sign its own.
        The URL is made offline: it does not prove the object exists.
        """
        ...

    def check(self) -> None:
        """Readiness probe: raise StorageError naming the setting to fix if storage is unusable."""
        ...


def validate_key(key: str) -> str:
    """Return key unchanged if it is a safe relative key, else raise ValueError."""
    _validate(key, what="key", allow_trailing_slash=False)
    return key


def validate_prefix(prefix: str) -> str:
    """Return prefix unchanged if it is a safe key prefix (may end with '/'), else ValueError."""
    _validate(prefix, what="prefix", allow_trailing_slash=True)
    return prefix


def _validate(key: str, *, what: str, allow_trailing_slash: bool) -> None:
    if not isinstance(key, str):
        raise ValueError(f"storage {what} must be a string, got {type(key).__name__}")
    if not key:
        raise ValueError(f"storage {what} must not be empty")
    if "\x00" in key or "\\" in key:
        raise ValueError(f"storage {what} {key!r} contains a NUL or backslash")
    if key.startswith("/"):
        raise ValueError(f"storage {what} {key!r} must be relative")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ValueError(f"storage {what} is longer than {MAX_KEY_BYTES} bytes")
    segments = key.split("/")
    if allow_trailing_slash and segments[-1] == "":
        segments.pop()
    for segment in segments:
        # Empty and '.' segments would alias another key on a filesystem; '..' escapes the root.
        if segment in ("", ".", ".."):
            raise ValueError(f"storage {what} {key!r} has an empty, '.' or '..' segment")
        if segment.startswith(TEMP_PREFIX):
            raise ValueError(f"storage {what} {key!r} uses the reserved prefix {TEMP_PREFIX!r}")


def attachment_disposition(filename: str) -> str:
    """Content-Disposition value that downloads as filename (RFC 6266 with RFC 5987 filename*)."""
    filename = filename or "download"
    # The quoted form must be plain printable ASCII without quotes or backslashes,
    # so anything else becomes '_' there and the exact name travels in filename*.
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename)
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
