"""Retention: delete what has outlived CONVERTER_RETENTION_DAYS, expires_in or
CONVERTER_RUN_RETENTION_DAYS, a batch per transaction.

Order matters. Finished runs expire first; a file then expires only when no run
on it is left, so an artifact that a live run still names is never deleted with
its file, and a pending or running run never loses its source. Artifacts are
only ever deleted with their file (they live under ``artifacts/<file id>/``):
a live file keeps every artifact it has. One-shot cache entries (no file) expire
after CONVERTER_RETENTION_DAYS on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Column, Engine, Row, Select, Table, delete, exists, func, or_, select

from converter.db.engine import utcnow
from converter.db.schema import (
    automation_events,
    content_artifacts,
    exports,
    files,
    idempotency_keys,
    runs,
)
from converter.service.files import remove_files
from converter.service.sweep import Sweep
from converter.storage import Storage


@dataclass(frozen=True)
class RunRecords:
    """A table of records CONVERTER_RUN_RETENTION_DAYS covers: id, and when each finished."""

    table: Table
    finished_at: Column[datetime]  # null while in progress: those are never expired
    # Whether an Idempotency-Key replay may name these records (subject_id) and goes too.
    replayed: bool = True

    @property
    def kind(self) -> str:
        """The label its deletions are counted under."""
        return self.table.name


# Runs and what is made from them; the Idempotency-Key rows of exports go with them
# because remember() is given the export's id. Automation history expires too; its
# claims never do, since a done claim is what keeps a file still in the watched folder
# from being converted again.
RUN_RECORDS: tuple[RunRecords, ...] = (RunRecords(runs, runs.c.completed_at),
                                       RunRecords(exports, exports.c.completed_at),
                                       RunRecords(automation_events, automation_events.c.at,
                                                  replayed=False))


def expire(db: Engine, storage: Storage, sweep: Sweep, file_retention: timedelta | None,
           run_retention: timedelta | None) -> None:
    """Delete every expired run record, then expired files, then expired cache entries."""
    now = utcnow()
    if run_retention is not None:
        for records in RUN_RECORDS:
            _expire_run_records(db, records, now - run_retention, sweep)
    _expire_files(db, storage, now, file_retention, sweep)
    if file_retention is not None:
        _expire_content(db, storage, now - file_retention, sweep)


def _expire_run_records(db: Engine, records: RunRecords, cutoff: datetime,
                        sweep: Sweep) -> None:
    table = records.table

    def remove(rows: Sequence[Row[Any]]) -> None:
        ids = [row.id for row in rows]
        with db.begin() as conn:
            if records.replayed:  # the replay of what made a record would name a deleted id
                conn.execute(delete(idempotency_keys)
                             .where(idempotency_keys.c.subject_id.in_(ids)))
            conn.execute(delete(table).where(table.c.id.in_(ids)))

    _drain(db, sweep, records.kind, select(table.c.id).where(records.finished_at < cutoff),
           remove)


def _expire_files(db: Engine, storage: Storage, now: datetime,
                  retention: timedelta | None, sweep: Sweep) -> None:
    ended = [files.c.expires_at < now]
    if retention is not None:
        ended.append(files.c.created_at < now - retention)
    # After _expire_run_records, any run still on a file is live (in progress, or
    # finished within CONVERTER_RUN_RETENTION_DAYS): it keeps the file.
    query = (select(files.c.id, files.c.storage_key)
             .where(or_(*ended), ~exists().where(runs.c.file_id == files.c.id)))
    _drain(db, sweep, "files", query, lambda rows: remove_files(
        db, storage, [(row.id, row.storage_key) for row in rows]))


def _expire_content(db: Engine, storage: Storage, cutoff: datetime, sweep: Sweep) -> None:
    def remove(rows: Sequence[Row[Any]]) -> None:
        with db.begin() as conn:
            conn.execute(delete(content_artifacts).where(
                content_artifacts.c.cache_key.in_([row.cache_key for row in rows])))
        for row in rows:  # rows first, as for files: a crash leaves objects, not dangling rows
            storage.delete(row.storage_key)

    _drain(db, sweep, "content_artifacts",
           select(content_artifacts.c.cache_key, content_artifacts.c.storage_key)
           .where(content_artifacts.c.created_at < cutoff), remove)


def _drain(db: Engine, sweep: Sweep, kind: str, query: Select[Any],
           remove: Callable[[Sequence[Row[Any]]], None]) -> None:
    """remove() what query finds, a batch at a time, until it finds less than a batch."""
    if sweep.dry_run:
        with db.connect() as conn:
            sweep.tally(kind, int(conn.execute(
                select(func.count()).select_from(query.subquery())).scalar_one()))
        return
    while True:
        with db.connect() as conn:
            rows = conn.execute(query.limit(sweep.batch)).all()
        if rows:
            remove(rows)
        sweep.tally(kind, len(rows))
        if len(rows) < sweep.batch:
            return
        sweep.checkpoint()
