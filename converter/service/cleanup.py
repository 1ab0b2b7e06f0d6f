"""The cleanup loop: a pass of retention then gc, on one replica at a time.

Every process runs the loop; a pass starts only in the one that takes the
``cleanup`` lease, and only when the pass is due (CONVERTER_CLEANUP_INTERVAL_SECONDS
after the last one ended anywhere). The lease is renewed between batches, so a
replica that dies mid-pass is replaced once its lease expires, and a pass that
lost its lease stops at the next batch. ``converter gc`` runs the same pass now.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from datetime import timedelta

from sqlalchemy import Engine

from converter import metrics
from converter.config import Config
from converter.service.gc import Collector, Places
from converter.service.idempotency import IdempotencyStore
from converter.service.leases import Lease
from converter.service.retention import expire
from converter.service.sweep import LeaseLost, Sweep
from converter.storage import Storage

logger = logging.getLogger("converter.cleanup")

LEASE_NAME = "cleanup"
# Renewed between batches; one batch (CONVERTER_CLEANUP_BATCH_SIZE deletions) takes
# seconds, so this is slack for a slow store, not the length of a pass.
LEASE_SECONDS = 120.0
FIRST_PASS_DELAY = 5.0


class Cleanup:
    """Runs cleanup passes: on demand (converter gc) or in a background thread."""

    def __init__(self, db: Engine, storage: Storage, collector: Collector,
                 file_retention: timedelta | None, run_retention: timedelta | None,
                 batch: int, interval: float) -> None:
        self.db = db
        self.storage = storage
        self.collector = collector
        self.file_retention = file_retention
        self.run_retention = run_retention
        self.batch = batch
        self.interval = interval
        self.lease = Lease(db, LEASE_NAME, LEASE_SECONDS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_pass(self, dry_run: bool = False) -> Counter[str]:
        """One pass (the caller holds the lease unless dry_run); returns what it did."""
        sweep = Sweep(self.batch, dry_run, keep_lease=(lambda: True) if dry_run
                      else self.lease.renew)
        started = time.monotonic()
        outcome = "failed"
        try:
            expire(self.db, self.storage, sweep, self.file_retention, self.run_retention)
            sweep.checkpoint()
            self.collector.collect(sweep)
            outcome = "ok"
        except LeaseLost:
            outcome = "lease_lost"
            logger.warning("cleanup pass stopped: another replica took over its lease")
        finally:
            if not dry_run:
                self._count(sweep.counts, outcome, time.monotonic() - started)
        return sweep.counts

    def _count(self, counts: Counter[str], outcome: str, seconds: float) -> None:
        metrics.CLEANUP_PASSES.labels(outcome=outcome).inc()
        metrics.CLEANUP_SECONDS.observe(seconds)
        for kind, count in counts.items():
            metrics.CLEANUP_ITEMS.labels(kind=kind).inc(count)
        if outcome == "ok":
            metrics.CLEANUP_LAST_OK.set(time.time())
        if counts:
            logger.info("cleanup pass %s in %.1fs: %s", outcome, seconds,
                        ", ".join(f"{kind} {count}" for kind, count in sorted(counts.items())))

    def run_leased(self, force: bool = False) -> Counter[str] | None:
        """Take the lease and run a pass (None if another replica holds it or none is due)."""
        if not self.lease.acquire(force=force):
            return None
        try:
            return self.run_pass()
        finally:
            self.lease.finish(next_due_in=self.interval)

    # ------------------------------------------------------------------ the loop
    def start(self) -> None:
        """Start the background loop (no-op when CONVERTER_CLEANUP_INTERVAL_SECONDS is 0)."""
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="cleanup", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop; a pass in progress ends at its next batch or runs out its lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        wait = min(FIRST_PASS_DELAY, self.interval)
        while not self._stop.wait(wait):
            wait = self.interval
            try:
                self.run_leased()
            except Exception:  # the loop must outlive a database or storage outage
                logger.exception("cleanup pass failed; the next is due in %.0fs",
                                 self.interval)


def build(config: Config, db: Engine, storage: Storage) -> Cleanup:
    """The cleanup of this configuration's database, storage and data directory."""
    places = Places(
        engine_root=config.data_path / "engine", upload_tmp=config.data_path / "tmp",
        workers=config.workers,
        # A conversion's directory is written at its start and end, an upload spool
        # while it arrives; neither lives longer than twice the conversion timeout.
        stale_after=max(config.orphan_grace_seconds, 2 * config.conversion_timeout))
    collector = Collector(db, storage, IdempotencyStore(db), places,
                          config.orphan_grace_seconds)
    return Cleanup(db, storage, collector, config.file_retention, config.run_retention,
                   config.cleanup_batch_size, config.cleanup_interval_seconds)
