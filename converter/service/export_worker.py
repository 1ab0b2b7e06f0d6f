"""Export workers: threads in every service process that claim pending exports and do them.

Claims and outcomes go through export_leases (lease token, heartbeat, reclaim
after expiry), so a crashed process never loses an export and two replicas
never both record one. Conversion errors that pass (engine busy, storage or
database down) put the export back with a growing delay; delivery failures are
retried inside deliver() with backoff and then fail the export with the reason.

Delivery is at least once: a process that dies after its write but before it
records the outcome leaves the export to be reclaimed and delivered again
(under ``rename`` as a second, numbered copy).
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import SQLAlchemyError

from converter.db.outage import translate
from converter.db.schema import exports
from converter.errors import (
    ConnectorUnavailable,
    ConverterError,
    InsufficientStorage,
    Overloaded,
    Unavailable,
    UpstreamError,
)
from converter.service import export_leases as leases
from converter.service.export_items import Producer, RunNotFinished
from converter.service.idle_poll import IdlePoll
from converter.service.run_worker import new_token
from converter.storage import ObjectMissing, StorageError

logger = logging.getLogger("converter.exports")

MAX_RETRY_DELAY = 300.0
WAIT_FOR_RUN = 1.0
_INTERNAL = "Internal error while exporting; the export could not be completed"
_TRANSIENT = (Overloaded, UpstreamError, StorageError, InsufficientStorage, Unavailable,
              SQLAlchemyError)


class ExportWorker:
    """N claim-and-export threads plus a lease heartbeat, in one service process."""

    def __init__(self, db: Engine, producer: Producer, scratch: Path, threads: int,
                 lease_seconds: float, max_attempts: int, poll: float = 0.5,
                 retry_base: float = 2.0) -> None:
        self.db = db
        self.producer = producer
        self.scratch = scratch
        self.threads = threads
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.poll = poll
        self.retry_base = retry_base
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._active: dict[str, str] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the worker threads and the heartbeat (no-op with 0 threads)."""
        if self.threads <= 0:
            return
        self.scratch.mkdir(parents=True, exist_ok=True)
        for index in range(self.threads):
            thread = threading.Thread(target=self._loop, name=f"export-worker-{index}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._heartbeat, name="export-lease", daemon=True)
        beat.start()
        self._threads.append(beat)

    def wake(self) -> None:
        """An export was created (or a run finished): look for work now."""
        self._wake.set()

    def stop(self, drain: float = 5.0) -> None:
        """Stop claiming, give exports in progress a moment, then hand the rest back."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + drain
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            tokens = list(self._active)
        try:
            leases.release(self.db, tokens)
        except Exception:  # shutting down: the leases expire on their own
            logger.exception("could not release exports at shutdown")

    def _loop(self) -> None:
        idle = IdlePoll(self.poll)
        while not self._stop.is_set():
            try:
                claim = leases.claim_next(self.db, new_token(), self.lease_seconds)
            except Exception:  # the loop must outlive a database hiccup
                logger.exception("claiming an export failed; retrying")
                self._stop.wait(1.0)
                continue
            if claim is None:
                if self._wake.wait(idle.empty()):
                    idle.busy()
                self._wake.clear()
                continue
            idle.busy()
            with self._lock:
                self._active[claim.token] = claim.export_id
            try:
                self.execute(claim)
            except Exception:
                logger.exception("export %s: bookkeeping failed; its lease will expire",
                                 claim.export_id)
            finally:
                with self._lock:
                    self._active.pop(claim.token, None)

    def _heartbeat(self) -> None:
        interval = max(0.2, self.lease_seconds / 3)
        while not self._stop.wait(interval):
            with self._lock:
                tokens = list(self._active)
            try:
                leases.renew(self.db, tokens, self.lease_seconds)
            except Exception:  # the next beat tries again; the lease has slack
                logger.exception("renewing export leases failed")

    # ------------------------------------------------------------------ one export
    def execute(self, claim: leases.Claim) -> None:
        """Produce, bundle and deliver a claimed export, and record how it went."""
        with self.db.connect() as conn:
            row = conn.execute(select(exports).where(leases.held(claim))).first()
        if row is None:
            return
        if claim.attempts > self.max_attempts:
            self._fail(claim, f"The export was interrupted {claim.attempts - 1} times; "
                              "giving up")
            return
        try:
            result = self._produce(row)
        except RunNotFinished:
            leases.postpone(self.db, claim, WAIT_FOR_RUN, count_attempt=False)
        except ObjectMissing:
            self._fail(claim, "A stored document is missing from storage; upload it again")
        except ConnectorUnavailable as exc:
            # deliver() already retried with backoff: the destination stayed unreachable.
            self._fail(claim, exc.message)
        except _TRANSIENT as exc:
            self._transient(claim, exc)
        except ConverterError as exc:
            self._fail(claim, exc.message)
        except Exception:
            logger.exception("export %s failed unexpectedly", claim.export_id)
            self._fail(claim, _INTERNAL)
        else:
            if not leases.finish(self.db, claim, "completed", json.dumps(result), None):
                logger.warning("export %s: lease lost before it finished", claim.export_id)

    def _produce(self, row: Any) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(dir=self.scratch, prefix="export-") as tmp:
            scratch = Path(tmp)
            items = [self.producer.item(row, source, scratch, n)
                     for n, source in enumerate(json.loads(row.sources))]
            bundle = self.producer.bundle(row, items, scratch) if row.bundle == "zip" else None
            if row.connector_id:
                self.producer.deliver(row, [bundle] if bundle else items)
            return {"items": [item.public() for item in items],
                    "bundle": bundle.public() if bundle else None}

    def _transient(self, claim: leases.Claim, exc: Exception) -> None:
        error = translate(exc) if isinstance(exc, SQLAlchemyError) else exc
        if error is None:
            logger.exception("export %s failed unexpectedly", claim.export_id)
            self._fail(claim, _INTERNAL)
            return
        message = error.message if isinstance(error, ConverterError) else (
            f"Artifact storage failed: {error}")
        retryable = isinstance(error, StorageError) or (
            isinstance(error, ConverterError) and bool(error.details.get("retryable")))
        if retryable and claim.attempts < self.max_attempts:
            delay = min(MAX_RETRY_DELAY, self.retry_base * 2 ** (claim.attempts - 1))
            logger.warning("export %s attempt %d failed (%s); retrying in %.1fs",
                           claim.export_id, claim.attempts, message, delay)
            leases.postpone(self.db, claim, delay, count_attempt=True)
        elif retryable:
            self._fail(claim, f"{message} (gave up after {claim.attempts} attempts)")
        else:
            self._fail(claim, message)

    def _fail(self, claim: leases.Claim, message: str) -> None:
        logger.warning("export %s failed: %s", claim.export_id, message)
        if not leases.finish(self.db, claim, "failed", None, message):
            logger.warning("export %s: lease lost before it failed", claim.export_id)
