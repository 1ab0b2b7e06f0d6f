"""Uploaded files: store the original, decide its real format, list, fetch and delete."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import IO, Any

from sqlalchemy import Engine, and_, bindparam, delete, insert, or_, select, update

from converter.db.engine import as_utc, next_seq, utcnow
from converter.db.schema import artifacts, files
from converter.errors import InvalidRequest, NotFound
from converter.matrix import Matrix
from converter.service.intake import Intake, Received
from converter.service.metadata_reader import METADATA_FIELDS, metadata_columns, read_metadata
from converter.service.pagination import decode_cursor, encode_cursor
from converter.service.principal import Principal
from converter.storage import Storage

SCOPES = ("personal", "workspace")
# Ten years: longer lives are what "no expires_in" means, and keep datetimes in range.
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600


@dataclass(frozen=True)
class FileRecord:
    """One stored original."""

    id: str
    workspace: str
    owner: str
    scope: str
    filename: str
    format: str
    size_bytes: int
    sha256: str
    storage_key: str
    created_at: datetime
    encrypted: bool = False
    pages: int | None = None
    sheets: list[str] | None = None
    title: str | None = None
    author: str | None = None
    unknown: tuple[str, ...] = ()
    # The earliest the file may be deleted by retention (a live run keeps it longer).
    expires_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        """The JSON shape clients see."""
        return {"id": self.id, "filename": self.filename, "format": self.format,
                "size_bytes": self.size_bytes, "sha256": self.sha256, "scope": self.scope,
                "created_at": _iso(self.created_at), "encrypted": self.encrypted,
                "pages": self.pages, "sheets": self.sheets, "title": self.title,
                "author": self.author, "unknown_fields": list(self.unknown),
                "expires_at": _iso(self.expires_at)}


def check_scope(scope: str | None) -> str:
    """personal (the default) or workspace; 400 naming the field otherwise."""
    scope = (scope or "personal").strip().lower()
    if scope not in SCOPES:
        raise InvalidRequest(f"scope must be one of {', '.join(SCOPES)}", field="scope",
                             valid_values=list(SCOPES))
    return scope


def check_expires_in(raw: str | None) -> int | None:
    """Seconds the upload asks to be kept (None: the retention setting alone); 400 otherwise."""
    if raw is None or not raw.strip():
        return None
    try:
        seconds = int(raw.strip())
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= MAX_EXPIRES_IN:
        raise InvalidRequest(f"expires_in must be a whole number of seconds from 1 to "
                             f"{MAX_EXPIRES_IN}, got {raw!r}", field="expires_in")
    return seconds


def expiry(created_at: datetime, expires_at: datetime | None,
           retention: timedelta | None) -> datetime | None:
    """When a file's life ends: its own expires_in or CONVERTER_RETENTION_DAYS, the sooner."""
    ends = [t for t in (as_utc(expires_at), created_at + retention if retention else None)
            if t is not None]
    return min(ends) if ends else None


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


# Built once: constructing the statement per request cost more than running it on the
# cache-hit path (measured in bench/). Same rule as Principal.visible().
_VISIBLE = and_(
    files.c.id == bindparam("file_id"),
    files.c.workspace == bindparam("workspace"),
    or_(files.c.scope == "workspace", files.c.owner == bindparam("user")),
)
_GET_VISIBLE = select(files).where(_VISIBLE)

# The cache hit's one query: the file (if visible) with its artifacts in the target
# format, each artifacts column prefixed "artifact_" so it cannot shadow the file's.
ARTIFACT_PREFIX = "artifact_"
_GET_VISIBLE_WITH_ARTIFACTS = select(
    files, *[column.label(ARTIFACT_PREFIX + column.name) for column in artifacts.c],
).select_from(files.outerjoin(artifacts, and_(
    artifacts.c.file_id == files.c.id, artifacts.c.format == bindparam("format"),
))).where(_VISIBLE)


def _record(row: Any, retention: timedelta | None) -> FileRecord:
    created = as_utc(row.created_at) or utcnow()
    return FileRecord(id=row.id, workspace=row.workspace, owner=row.owner, scope=row.scope,
                      filename=row.filename, format=row.format, size_bytes=row.size_bytes,
                      sha256=row.sha256, storage_key=row.storage_key, created_at=created,
                      expires_at=expiry(created, row.expires_at, retention),
                      **metadata_of(row))


def _artifact_columns(row: Any) -> SimpleNamespace:
    """The artifacts columns of a joined row, under their own names."""
    mapping = row._mapping
    return SimpleNamespace(**{column.name: mapping[ARTIFACT_PREFIX + column.name]
                              for column in artifacts.c})


def metadata_of(row: Any) -> dict[str, Any]:
    """The metadata fields of a files row (rows from before metadata say all unknown)."""
    unknown = row.metadata_unknown
    return {"encrypted": bool(row.encrypted), "pages": row.pages,
            "sheets": json.loads(row.sheets) if row.sheets else None,
            "title": row.title, "author": row.author,
            "unknown": tuple(json.loads(unknown)) if unknown is not None else METADATA_FIELDS}


class FileService:
    """Stores originals and answers questions about them."""

    def __init__(self, db: Engine, storage: Storage, matrix: Matrix, intake: Intake,
                 retention: timedelta | None = None) -> None:
        self.db = db
        self.storage = storage
        self.matrix = matrix
        self.intake = intake
        self.retention = retention

    def upload(self, principal: Principal, filename: str | None, stream: IO[bytes],
               scope: str | None) -> FileRecord:
        """Store an upload after checking its size, its real format and its extension."""
        scope = check_scope(scope)
        with self.intake.receive(stream, filename) as received:
            return self.store(principal, received, scope)

    def store(self, principal: Principal, received: Received, scope: str,
              expires_in: int | None = None) -> FileRecord:
        """Keep a vetted document as a file: the original in storage, then its row."""
        file_id = "file_" + secrets.token_hex(12)
        key = f"originals/{file_id}"
        meta = read_metadata(received, self.matrix.sources[received.format].family)
        self.storage.put_file(key, received.path,
                              self.matrix.sources[received.format].media_type)
        record = FileRecord(id=file_id, workspace=principal.workspace, owner=principal.user_id,
                            scope=scope, filename=received.filename, format=received.format,
                            size_bytes=received.size_bytes, sha256=received.sha256,
                            storage_key=key, created_at=utcnow(), **meta)
        asked = (record.created_at + timedelta(seconds=expires_in)) if expires_in else None
        with self.db.begin() as conn:
            conn.execute(insert(files).values(
                id=record.id, workspace=record.workspace, owner=record.owner, scope=scope,
                filename=record.filename, format=record.format, size_bytes=record.size_bytes,
                sha256=record.sha256, storage_key=key, created_at=record.created_at,
                seq=next_seq(), expires_at=asked, **metadata_columns(record)))
        return replace(record, expires_at=expiry(record.created_at, asked, self.retention))

    def learn(self, record: FileRecord, **found: Any) -> None:
        """Record metadata found later (after a PDF was made) for the fields not known yet.

        ``pages`` is replaced even when known: what a word processor stored is its own
        layout's count (often stale), the PDF's is the one this service produces.
        """
        fresh = {k: v for k, v in found.items()
                 if k in record.unknown or (k == "pages" and v is not None and v != record.pages)}
        if not fresh:
            return
        remaining = [f for f in record.unknown if f not in fresh]
        values: dict[str, Any] = {"metadata_unknown": json.dumps(remaining)}
        for name, value in fresh.items():
            values[name] = json.dumps(value) if name == "sheets" else value
        with self.db.begin() as conn:
            conn.execute(update(files).where(files.c.id == record.id).values(**values))

    def get(self, principal: Principal, file_id: str) -> FileRecord:
        """A file visible to principal, or NotFound."""
        with self.db.connect() as conn:
            row = conn.execute(_GET_VISIBLE, {"file_id": file_id, "workspace": principal.workspace,
                                              "user": principal.user_id}).first()
        if row is None:
            raise NotFound(f"No file {file_id!r} is visible to this key", field="file_id")
        return _record(row, self.retention)

    def get_with_artifacts(self, principal: Principal, file_id: str, target: str,
                           ) -> tuple[FileRecord, dict[str, Any]]:
        """A visible file and its artifacts' rows in target by cache key, in one query."""
        with self.db.connect() as conn:
            rows = conn.execute(_GET_VISIBLE_WITH_ARTIFACTS, {
                "file_id": file_id, "workspace": principal.workspace,
                "user": principal.user_id, "format": target}).all()
        if not rows:
            raise NotFound(f"No file {file_id!r} is visible to this key", field="file_id")
        made = {row._mapping[ARTIFACT_PREFIX + "cache_key"]: _artifact_columns(row)
                for row in rows if row._mapping[ARTIFACT_PREFIX + "id"] is not None}
        return _record(rows[0], self.retention), made

    def list(self, principal: Principal, limit: int, cursor: str | None,
             ) -> tuple[list[FileRecord], str | None]:
        """Newest first; returns (page, next_cursor)."""
        query = select(files).where(principal.visible(files))
        if cursor:
            query = query.where(files.c.seq < decode_cursor(cursor))
        query = query.order_by(files.c.seq.desc()).limit(limit + 1)
        with self.db.connect() as conn:
            rows = conn.execute(query).all()
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].seq) if len(rows) > limit else None
        return [_record(r, self.retention) for r in page], next_cursor

    def delete(self, principal: Principal, file_id: str) -> None:
        """Remove the original, every cached artifact and their rows."""
        record = self.get(principal, file_id)
        remove_files(self.db, self.storage, [(record.id, record.storage_key)])


def remove_files(db: Engine, storage: Storage, found: list[tuple[str, str]]) -> None:
    """Delete files given as (id, original's storage key): rows, then their objects.

    Rows go first: a crash in between leaves unreferenced objects (which
    ``converter gc`` removes), never rows that point at nothing. Runs of the
    files go with them (ON DELETE CASCADE).
    """
    ids = [file_id for file_id, _key in found]
    with db.begin() as conn:
        conn.execute(delete(artifacts).where(artifacts.c.file_id.in_(ids)))
        conn.execute(delete(files).where(files.c.id.in_(ids)))
    for file_id, key in found:
        storage.delete_prefix(f"artifacts/{file_id}/")
        storage.delete(key)
