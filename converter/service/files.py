"""Uploaded files: store the original, decide its real format, list, fetch and delete."""

from __future__ import annotations

import hashlib
import re
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, bindparam, delete, insert, or_, select

from converter.db.engine import as_utc, next_seq, utcnow
from converter.db.schema import artifacts, files
from converter.detect import check_extension, detect
from converter.errors import InvalidRequest, NotFound, PayloadTooLarge, UnprocessableDocument
from converter.matrix import Matrix
from converter.service.pagination import decode_cursor, encode_cursor
from converter.service.principal import Principal
from converter.storage import Storage

SCOPES = ("personal", "workspace")
# LibreOffice's layout time grows steeply with table nesting (1,000 levels: 6 s; 5,000:
# minutes); real documents stay in single digits.
MAX_TABLE_DEPTH = 50
_CHUNK = 1024 * 1024
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]+")


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

    def public(self) -> dict[str, Any]:
        """The JSON shape clients see."""
        return {"id": self.id, "filename": self.filename, "format": self.format,
                "size_bytes": self.size_bytes, "sha256": self.sha256, "scope": self.scope,
                "created_at": _iso(self.created_at)}


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def safe_filename(raw: str | None) -> str:
    """The client's file name without directories or control characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    return name[:255] or "document"


# Built once: constructing the statement per request cost more than running it on the
# cache-hit path (measured in bench/). Same rule as Principal.visible().
_GET_VISIBLE = select(files).where(
    files.c.id == bindparam("file_id"),
    files.c.workspace == bindparam("workspace"),
    or_(files.c.scope == "workspace", files.c.owner == bindparam("user")),
)


def _record(row: Any) -> FileRecord:
    return FileRecord(id=row.id, workspace=row.workspace, owner=row.owner, scope=row.scope,
                      filename=row.filename, format=row.format, size_bytes=row.size_bytes,
                      sha256=row.sha256, storage_key=row.storage_key,
                      created_at=as_utc(row.created_at) or utcnow())


class FileService:
    """Stores originals and answers questions about them."""

    def __init__(self, db: Engine, storage: Storage, matrix: Matrix, tmp_dir: Path,
                 max_bytes: int, max_uncompressed: int) -> None:
        self.db = db
        self.storage = storage
        self.matrix = matrix
        self.tmp_dir = tmp_dir
        self.max_bytes = max_bytes
        self.max_uncompressed = max_uncompressed
        tmp_dir.mkdir(parents=True, exist_ok=True)

    def upload(self, principal: Principal, filename: str | None, stream: IO[bytes],
               scope: str | None) -> FileRecord:
        """Store an upload after checking its size, its real format and its extension."""
        scope = (scope or "personal").strip().lower()
        if scope not in SCOPES:
            raise InvalidRequest(f"scope must be one of {', '.join(SCOPES)}", field="scope",
                                 valid_values=list(SCOPES))
        name = safe_filename(filename)
        with tempfile.NamedTemporaryFile(dir=self.tmp_dir, prefix="upload-") as tmp:
            digest, size = self._spool(stream, tmp)
            if size == 0:
                raise InvalidRequest("file is empty", field="file")
            found = detect(Path(tmp.name), name)
            contradiction = check_extension(found, name)
            if contradiction:
                raise InvalidRequest(f"file: {contradiction}", field="file")
            if found.format is None or found.format not in self.matrix.sources:
                raise InvalidRequest(
                    f"file: unsupported document ({found.reason or found.container}); "
                    f"supported formats: {', '.join(self.matrix.sources)}",
                    field="file", valid_formats=list(self.matrix.sources))
            if found.encrypted:
                raise UnprocessableDocument(
                    "The document is password-protected; upload it without a password")
            if found.table_depth > MAX_TABLE_DEPTH:
                raise UnprocessableDocument(
                    f"The document nests tables {found.table_depth} levels deep; at most "
                    f"{MAX_TABLE_DEPTH} are supported")
            if found.uncompressed_size > self.max_uncompressed:
                raise UnprocessableDocument(
                    f"The document unpacks to {found.uncompressed_size // 2**20} MiB, more than "
                    f"the {self.max_uncompressed // 2**20} MiB allowed")
            file_id = "file_" + secrets.token_hex(12)
            key = f"originals/{file_id}"
            self.storage.put_file(key, Path(tmp.name), self.matrix.sources[found.format].media_type)
        record = FileRecord(id=file_id, workspace=principal.workspace, owner=principal.user_id,
                            scope=scope, filename=name, format=found.format, size_bytes=size,
                            sha256=digest, storage_key=key, created_at=utcnow())
        with self.db.begin() as conn:
            conn.execute(insert(files).values(
                id=record.id, workspace=record.workspace, owner=record.owner, scope=scope,
                filename=name, format=record.format, size_bytes=size, sha256=digest,
                storage_key=key, created_at=record.created_at, seq=next_seq()))
        return record

    def _spool(self, stream: IO[bytes], out: Any) -> tuple[str, int]:
        sha = hashlib.sha256()
        size = 0
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise PayloadTooLarge(
                    f"file is larger than the {self.max_bytes // 2**20} MiB limit "
                    "(CONVERTER_MAX_UPLOAD_MB)", field="file", limit_bytes=self.max_bytes)
            sha.update(chunk)
            out.write(chunk)
        out.flush()
        return sha.hexdigest(), size

    def get(self, principal: Principal, file_id: str) -> FileRecord:
        """A file visible to principal, or NotFound."""
        with self.db.connect() as conn:
            row = conn.execute(_GET_VISIBLE, {"file_id": file_id, "workspace": principal.workspace,
                                              "user": principal.user_id}).first()
        if row is None:
            raise NotFound(f"No file {file_id!r} is visible to this key", field="file_id")
        return _record(row)

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
        return [_record(r) for r in page], next_cursor

    def delete(self, principal: Principal, file_id: str) -> None:
        """Remove the original, every cached artifact and their rows."""
        record = self.get(principal, file_id)
        with self.db.begin() as conn:
            conn.execute(delete(artifacts).where(artifacts.c.file_id == record.id))
            conn.execute(delete(files).where(files.c.id == record.id))
        # Rows go first: a crash in between leaves unreferenced objects, never
        # rows that point at nothing.
        self.storage.delete_prefix(f"artifacts/{record.id}/")
        self.storage.delete(record.storage_key)
