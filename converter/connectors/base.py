"""The provider interface every connector implements, kept small on purpose.

A new provider (SFTP, WebDAV, a cloud drive) implements these few methods and is
registered by name; exports, browsing and watched-folder automations use nothing else.
Paths are always relative to the connector's root (its S3 prefix or local directory),
use "/" as separator and have been validated by ``converter.connectors.paths``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

# Re-exported: providers raise these, and callers catch them from here or errors.py.
from converter.errors import ConnectorFailed, ConnectorUnavailable, DestinationExists

__all__ = ["ConnectorFailed", "ConnectorUnavailable", "Delivered", "DestinationExists", "Entry",
           "Provider"]


@dataclass(frozen=True)
class Entry:
    """One folder or file seen at a connector."""

    path: str  # relative to the connector's root, "/"-separated
    is_dir: bool
    size: int | None = None
    modified: datetime | None = None
    etag: str | None = None

    @property
    def version(self) -> str:
        """What identifies this version of the object: the etag, else mtime and size."""
        if self.etag:
            return f"etag:{self.etag}"
        stamp = self.modified.timestamp() if self.modified else 0.0
        return f"mtime:{stamp:.6f}:size:{self.size}"


@dataclass(frozen=True)
class Delivered:
    """Where a write ended up."""

    path: str
    size_bytes: int
    sha256: str
    etag: str | None = None


class Provider(Protocol):
    """A storage place behind a connector."""

    def check(self) -> None:
        """Prove the credentials and the right to write (probe object written, then deleted)."""
        ...

    def list(self, path: str, cursor: str | None, limit: int) -> tuple[list[Entry], str | None]:
        """One page of the folders and files directly under path, and the next cursor."""
        ...

    def walk(self, path: str) -> Iterator[Entry]:
        """Every file (not folder) under path, recursively."""
        ...

    def stat(self, path: str) -> Entry | None:
        """The file at path, or None when there is none."""
        ...

    def download(self, path: str, target: Path) -> None:
        """Copy the file at path into the local file target."""
        ...

    def upload(self, source: Path, path: str, overwrite: bool) -> Delivered:
        """Write source at path atomically; nothing partial is ever visible at path.

        With overwrite False an existing object at path raises DestinationExists.
        """
        ...

    def delete(self, path: str) -> None:
        """Remove the file at path; absent is not an error."""
        ...

    def discard_partial(self, path: str) -> int:
        """Remove what a writer of path killed mid-write left behind; returns how many.

        Only for a caller that holds the right to write path (a claim taken over).
        """
        ...

    def move(self, path: str, new_path: str) -> None:
        """Move the file at path to new_path (for an automation's ``after: move:``)."""
        ...
