"""Where artifacts are recorded: per stored file, or per content for one-shot conversions.

Both answer the same two questions (is this cache key made already; record a new
one) so the conversion service runs one code path for either. A row is written
only after its object is stored, so a row never points at nothing; a unique key
makes two replicas that made the same artifact agree on one row. A row whose object
was lost after all (a restore from mismatched backups, a bucket rule, a hand) reads
as a miss where storage is local, and is dropped so the conversion that follows
records its own; on S3 ``converter gc`` finds and drops such rows.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Engine, Insert, Table, bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from converter.db.engine import utcnow
from converter.db.schema import artifacts, content_artifacts
from converter.errors import NotFound
from converter.storage import Storage


@dataclass(frozen=True)
class Artifact:
    """A stored conversion result."""

    id: str
    file_id: str
    source_id: str
    format: str
    media_type: str
    storage_key: str
    size_bytes: int
    produced_by: str = "libreoffice"


class ArtifactIndex(Protocol):
    """The rows that say which artifacts exist."""

    def lookup(self, key: str) -> Artifact | None:
        """The artifact under a cache key, if its object is still there."""
        ...

    def storage_key(self, key: str, extension: str) -> str:
        """Where the object of a new artifact goes."""
        ...

    def record(self, key: str, artifact: Artifact, options: dict[str, Any],
               content_key: str | None = None) -> Artifact:
        """Insert the row of a stored artifact (or return the row another replica wrote)."""
        ...

    def donor(self, content_key: str) -> Artifact | None:
        """An artifact of another source with the same owner, bytes, format and options."""
        ...


# Built once: the cache-hit path runs it on every repeat call.
_LOOKUP = select(artifacts).where(artifacts.c.cache_key == bindparam("key"))
_DONOR = select(artifacts).where(artifacts.c.content_key == bindparam("content"),
                                artifacts.c.file_id != bindparam("file_id")).limit(1)
_LOOKUP_CONTENT = select(content_artifacts).where(
    content_artifacts.c.cache_key == bindparam("key"))


def present(storage: Storage, storage_key: str) -> bool:
    """Whether an artifact's object is there (local: a stat; S3: a HEAD request)."""
    local = storage.local_path(storage_key)
    # On S3 a hit costs one HEAD (a round trip inside the region): a row that outlived
    # its object (a lifecycle rule, a hand delete) then converts again instead of
    # handing out a link to nothing.
    return local.exists() if local is not None else storage.exists(storage_key)


def forget(db: Engine, table: Table, which: ColumnElement[bool]) -> None:
    """Delete the row of an artifact whose object is gone (lost, or removed by hand).

    The conversion that follows then records its own row, with the size of the
    object it stores, instead of adopting the stale one; ``converter gc`` does the
    same for rows no request has touched.
    """
    with db.begin() as conn:
        conn.execute(delete(table).where(which))


def file_artifact(row: Any) -> Artifact:
    """An Artifact from an artifacts row."""
    return Artifact(id=row.id, file_id=row.file_id, source_id=row.source_id, format=row.format,
                    media_type=row.media_type, storage_key=row.storage_key,
                    size_bytes=row.size_bytes, produced_by=row.produced_by or "libreoffice")


class FileArtifacts:
    """Artifacts of one stored file (the two-step API and runs)."""

    def __init__(self, db: Engine, storage: Storage, file_id: str,
                 known: dict[str, Any] | None = None) -> None:
        self.db = db
        self.storage = storage
        self.file_id = file_id
        # Rows read with the file itself (the cache hit's one query), by cache key.
        self._known = known

    def lookup(self, key: str) -> Artifact | None:
        """The artifact under a cache key, if its object is still there."""
        # The rows read with the file answer the first lookup only: a later one (the
        # single-flight re-check) must see what other processes recorded since.
        known, self._known = self._known, None
        row = known.get(key) if known is not None else None
        if row is None:
            with self.db.connect() as conn:
                row = conn.execute(_LOOKUP, {"key": key}).first()
        if row is None:
            return None
        if not present(self.storage, row.storage_key):
            forget(self.db, artifacts, artifacts.c.id == row.id)
            return None
        return file_artifact(row)

    def storage_key(self, key: str, extension: str) -> str:
        """artifacts/<file id>/<cache key>.<ext>: deleting the file deletes the prefix."""
        return f"artifacts/{self.file_id}/{key}.{extension}"

    def record(self, key: str, artifact: Artifact, options: dict[str, Any],
               content_key: str | None = None) -> Artifact:
        """Insert the row of a stored artifact (or return the row another replica wrote)."""
        made = Artifact(**{**artifact.__dict__, "id": "art_" + secrets.token_hex(12),
                           "file_id": self.file_id})
        row = insert(artifacts).values(
            id=made.id, file_id=self.file_id, source_id=made.source_id, cache_key=key,
            format=made.format, options=json.dumps(options, sort_keys=True),
            media_type=made.media_type, storage_key=made.storage_key,
            size_bytes=made.size_bytes, produced_by=made.produced_by, created_at=utcnow(),
            content_key=content_key)
        return _insert_once(self.db, row, made, lambda: self.lookup(key))

    def donor(self, content_key: str) -> Artifact | None:
        """An artifact another file of the same owner made from the same bytes and plan.

        Rows go with their file, so a donor is a live file's; one deleted after this
        read makes the copy fail as ObjectMissing, which the caller treats as a miss.
        """
        with self.db.connect() as conn:
            row = conn.execute(_DONOR, {"content": content_key, "file_id": self.file_id}).first()
        return None if row is None else file_artifact(row)


class ContentArtifacts:
    """Artifacts of bytes sent to POST /v1/convert, shared within one workspace."""

    def __init__(self, db: Engine, storage: Storage, workspace: str, sha256: str) -> None:
        self.db = db
        self.storage = storage
        self.workspace = workspace
        self.sha256 = sha256

    def lookup(self, key: str) -> Artifact | None:
        """The artifact under a cache key, if its object is still there."""
        with self.db.connect() as conn:
            row = conn.execute(_LOOKUP_CONTENT, {"key": key}).first()
        if row is None or row.workspace != self.workspace:
            return None
        if not present(self.storage, row.storage_key):
            forget(self.db, content_artifacts, (content_artifacts.c.cache_key == key) & (
                content_artifacts.c.created_at == row.created_at))
            return None
        return Artifact(id="cnt_" + key[:24], file_id="", source_id=row.sha256,
                        format=row.format, media_type=row.media_type,
                        storage_key=row.storage_key, size_bytes=row.size_bytes,
                        produced_by=row.produced_by or "libreoffice")

    def storage_key(self, key: str, extension: str) -> str:
        """content/<cache key>.<ext>: the key already binds workspace, bytes and options."""
        return f"content/{key}.{extension}"

    def record(self, key: str, artifact: Artifact, options: dict[str, Any],
               content_key: str | None = None) -> Artifact:
        """Insert the row of a stored artifact (or return the row another replica wrote)."""
        row = insert(content_artifacts).values(
            cache_key=key, workspace=self.workspace, sha256=self.sha256,
            format=artifact.format, options=json.dumps(options, sort_keys=True),
            media_type=artifact.media_type, storage_key=artifact.storage_key,
            size_bytes=artifact.size_bytes, produced_by=artifact.produced_by,
            created_at=utcnow())
        made = Artifact(**{**artifact.__dict__, "id": "cnt_" + key[:24]})
        return _insert_once(self.db, row, made, lambda: self.lookup(key))

    def donor(self, content_key: str) -> Artifact | None:
        """None: the key already is the content (workspace, sha256, format, options)."""
        return None


class SourceGone(NotFound):
    """The artifact's file was deleted between the conversion's start and its record."""


def _insert_once(db: Engine, row: Insert, made: Artifact,
                 lookup: Callable[[], Artifact | None]) -> Artifact:
    """Insert an artifact's row; if another replica stored the same key first, use its row.

    Both replicas wrote the same object key, so the row that won is as good as ours.
    """
    try:
        with db.begin() as conn:
            conn.execute(row)
    except IntegrityError:
        existing = lookup()
        if existing is None:
            # Not a duplicate key, so the foreign key failed: the file was deleted while
            # it was being converted. Its client learns that, instead of a 500.
            raise SourceGone("The file was deleted while it was being converted",
                             field="file_id") from None
        return existing
    return made
