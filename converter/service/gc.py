"""Garbage collection: remove or repair what crashes, lost objects and time leave behind.

- objects with no row (a crash fell between a write and its commit), once older
  than CONVERTER_ORPHAN_GRACE_SECONDS;
- artifact rows whose object is missing: dropped, so the next request converts
  again; originals that are missing are only reported (the upload is the user's,
  and a storage misconfiguration must not erase every file's row);
- stale scratch, upload spool and instance profile directories;
- expired leases (the cleanup lease of a dead replica, runs of a dead worker) and
  conversion claims (of a dead leader, or failures no longer shared);
- Idempotency-Keys older than their 24-hour window.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Engine, Table, delete, select, union_all

from converter.db.engine import utcnow
from converter.db.schema import artifacts, content_artifacts, files
from converter.engine.leftovers import stale_instances, stale_scratch
from converter.service.claims import expired_claims
from converter.service.idempotency import IdempotencyStore
from converter.service.leases import expired_holds
from converter.service.run_worker import requeue_abandoned
from converter.service.sweep import Sweep, batches
from converter.storage import Storage

logger = logging.getLogger("converter.gc")

# Every key the service writes starts with one of these; anything else in a shared
# bucket belongs to someone else and is never touched.
PREFIXES = ("originals/", "artifacts/", "content/")


@dataclass(frozen=True)
class Places:
    """The local directories gc tidies, and how old an entry must be to count as stale."""

    engine_root: Path
    upload_tmp: Path
    workers: int
    stale_after: float


class Collector:
    """Finds and removes (or, in a dry run, counts) garbage in the database and storage."""

    def __init__(self, db: Engine, storage: Storage, idempotency: IdempotencyStore,
                 places: Places, grace: float) -> None:
        self.db = db
        self.storage = storage
        self.idempotency = idempotency
        self.places = places
        self.grace = grace

    def collect(self, sweep: Sweep) -> None:
        """Run every step; each counts into sweep under its kind."""
        self.orphans(sweep)
        self.partial_writes(sweep)
        self.missing(sweep)
        self.leftovers(sweep)
        sweep.tally("leases", expired_holds(self.db, sweep.dry_run))
        sweep.tally("flight_claims", expired_claims(self.db, sweep.dry_run))
        sweep.tally("abandoned_runs", requeue_abandoned(self.db, sweep.dry_run))
        sweep.tally("idempotency_keys",
                    self.idempotency.purge_expired(force=True, dry_run=sweep.dry_run))

    def orphans(self, sweep: Sweep) -> None:
        """Delete objects that no row names, once they are older than the grace period."""
        # An upload or conversion stores its object first and commits its row right
        # after; an object younger than the grace period may be one of those, whose row
        # is about to appear. Nothing takes an hour between the two, so one older than
        # that with no row never will have one.
        cutoff = utcnow() - timedelta(seconds=self.grace)
        for prefix in PREFIXES:
            old = (found.key for found in self.storage.list_objects(prefix)
                   if found.modified < cutoff)
            for keys in batches(old, sweep.batch):
                named = self._named(keys)
                orphans = [key for key in keys if key not in named]
                if not sweep.dry_run:
                    for key in orphans:
                        self.storage.delete(key)
                sweep.tally("orphan_objects", len(orphans))
                sweep.checkpoint()

    def partial_writes(self, sweep: Sweep) -> None:
        """Remove what writes killed midway left in storage (temp files, multipart parts)."""
        # The same grace as orphans: a write older than that is not still running.
        cutoff = utcnow() - timedelta(seconds=self.grace)
        sweep.tally("partial_writes",
                    self.storage.clear_partial_writes(cutoff, dry_run=sweep.dry_run))
        sweep.checkpoint()

    def _named(self, keys: list[str]) -> set[str]:
        query = union_all(*(select(table.c.storage_key).where(table.c.storage_key.in_(keys))
                            for table in (files, artifacts, content_artifacts)))
        with self.db.connect() as conn:
            return set(conn.execute(query).scalars())

    def missing(self, sweep: Sweep) -> None:
        """Drop artifact rows whose object is gone; report originals that are gone."""
        for table, ident in ((artifacts, artifacts.c.id),
                             (content_artifacts, content_artifacts.c.cache_key)):
            for rows in self._rows(table, ident, sweep.batch):
                gone = [row[0] for row in rows if not self.storage.exists(row.storage_key)]
                if gone and not sweep.dry_run:
                    with self.db.begin() as conn:
                        conn.execute(delete(table).where(ident.in_(gone)))
                sweep.tally("missing_artifacts", len(gone))
                sweep.checkpoint()
        for rows in self._rows(files, files.c.id, sweep.batch):
            gone = [row.id for row in rows if not self.storage.exists(row.storage_key)]
            if gone:
                logger.warning("originals missing from storage (their conversions answer 404; "
                               "restore them from a backup or delete the files): %s",
                               ", ".join(gone))
            sweep.tally("missing_originals", len(gone))
            sweep.checkpoint()

    def _rows(self, table: Table, ident: Column[Any], size: int) -> Iterator[list[Any]]:
        """Every row's (id, storage_key), in batches ordered by id (keyset pagination)."""
        after: Any = None
        while True:
            query = select(ident, table.c.storage_key).order_by(ident).limit(size)
            if after is not None:
                query = query.where(ident > after)
            with self.db.connect() as conn:
                rows = list(conn.execute(query))
            if rows:
                yield rows
            if len(rows) < size:
                return
            after = rows[-1][0]

    def leftovers(self, sweep: Sweep) -> None:
        """Remove scratch and upload spool entries, and profiles of instances gone."""
        places = self.places
        kinds = (("scratch", stale_scratch(places.engine_root / "scratch", places.stale_after)),
                 ("scratch", stale_scratch(places.upload_tmp, places.stale_after)),
                 ("profiles", stale_instances(places.engine_root, places.workers,
                                              places.stale_after)))
        for kind, paths in kinds:
            for path in list(paths):
                if not sweep.dry_run:
                    _remove(path)
                sweep.tally(kind, 1)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
