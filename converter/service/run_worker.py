"""Run workers: threads in every service process that claim pending runs and execute them.

Claiming is one UPDATE whose WHERE picks the oldest claimable run: pending (and
past its retry delay), or running under a lease that expired because its
process died. PostgreSQL locks the candidate with FOR UPDATE SKIP LOCKED so
concurrent claimers take different runs; SQLite runs the whole statement under
its single write lock. A claim sets a fresh lease token; a heartbeat renews the
leases of runs in progress, and every later write is conditioned on that token,
so a worker that lost its lease can never complete the run. The artifact is
content-addressed by its cache key, so a run reclaimed and completed elsewhere
produces the same result, never a second different one.

Lease expiry compares timestamps written by different processes: replicas need
synchronised clocks (NTP), with skew well under CONVERTER_RUN_LEASE_SECONDS.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, and_, bindparam, case, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from converter import metrics
from converter.db.engine import process_tag, utcnow
from converter.db.outage import is_transient, translate
from converter.db.schema import files, runs
from converter.engine.scheduler import Tenant
from converter.errors import (
    ConverterError,
    InsufficientStorage,
    Overloaded,
    Unavailable,
    UpstreamError,
)
from converter.matrix import Matrix
from converter.service import webhooks
from converter.service.conversion import ConversionService
from converter.service.idle_poll import IdlePoll
from converter.service.runs import file_columns, file_record
from converter.storage import ObjectMissing, StorageError

logger = logging.getLogger("converter.runs")

MAX_RETRY_DELAY = 300.0
# How long a finished run's outcome keeps being offered to a database that is down;
# past it the lease expires and the run is claimed and made again (from the cache).
MAX_BOOKKEEPING_WAIT = 300.0
_INTERNAL = "Internal error while converting; the run could not be completed"


@dataclass(frozen=True)
class Claim:
    """A run this worker holds the lease on."""

    run_id: str
    token: str
    attempts: int


def new_token() -> str:
    """A lease token unique to one claim (and naming the process, for operators)."""
    return f"{uuid.uuid4().hex[:16]}@{process_tag()}"[:80]


def _claim_statement() -> Any:
    """UPDATE ... RETURNING that leases the oldest claimable run, built once (it runs on
    every poll of every worker thread; building it was most of the poll's CPU)."""
    now = bindparam("now", type_=runs.c.created_at.type)
    candidate = runs.alias("candidate")
    chosen = (select(candidate.c.id)
              .where(or_(and_(candidate.c.status == "pending",
                              or_(candidate.c.not_before.is_(None),
                                  candidate.c.not_before <= now)),
                         and_(candidate.c.status == "running",
                              candidate.c.lease_expires_at < now)))
              .order_by(candidate.c.seq).limit(1)
              .with_for_update(skip_locked=True).scalar_subquery())
    return (update(runs).where(runs.c.id == chosen)
            .values(status="running", lease_owner=bindparam("token"),
                    lease_expires_at=bindparam("expires"),
                    attempts=runs.c.attempts + 1,
                    # `now` was read before the write lock was ours: a run created by
                    # another process meanwhile must not seem to start before it existed.
                    started_at=func.coalesce(runs.c.started_at, case(
                        (runs.c.created_at > now, runs.c.created_at), else_=now)))
            .returning(runs.c.id, runs.c.attempts))


_CLAIM = _claim_statement()


def claim_next(db: Engine, token: str, lease_seconds: float) -> Claim | None:
    """Atomically lease the oldest claimable run to token, or return None."""
    now = utcnow()
    with db.begin() as conn:
        row = conn.execute(_CLAIM, {"now": now, "token": token,
                                    "expires": now + timedelta(seconds=lease_seconds)}).first()
    return None if row is None else Claim(row.id, token, int(row.attempts))


def renew(db: Engine, tokens: list[str], lease_seconds: float) -> int:
    """Extend the leases of runs still held by tokens; returns how many are still held."""
    if not tokens:
        return 0
    with db.begin() as conn:
        result = conn.execute(
            update(runs).where(runs.c.lease_owner.in_(tokens), runs.c.status == "running")
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds)))
    return int(result.rowcount or 0)


def release(db: Engine, tokens: list[str]) -> int:
    """Hand runs back to the queue at shutdown; the interrupted attempt does not count."""
    if not tokens:
        return 0
    with db.begin() as conn:
        result = conn.execute(
            update(runs).where(runs.c.lease_owner.in_(tokens), runs.c.status == "running")
            .values(status="pending", lease_owner=None, lease_expires_at=None,
                    attempts=case((runs.c.attempts > 0, runs.c.attempts - 1), else_=0)))
    return int(result.rowcount or 0)


def requeue_abandoned(db: Engine, dry_run: bool = False) -> int:
    """Put runs whose lease expired (their worker died) back in the queue; returns how many.

    claim_next would reclaim them too, but only where run workers poll; this makes
    them pending again for any replica, and GET /v1/runs stops showing them running.
    The interrupted attempt still counts, as it does on a reclaim.
    """
    abandoned = and_(runs.c.status == "running", runs.c.lease_expires_at < utcnow())
    with db.begin() as conn:
        if dry_run:
            return int(conn.execute(select(func.count()).where(abandoned)).scalar_one())
        return int(conn.execute(update(runs).where(abandoned).values(
            status="pending", lease_owner=None, lease_expires_at=None)).rowcount or 0)


def _held(claim: Claim) -> Any:
    return and_(runs.c.id == claim.run_id, runs.c.lease_owner == claim.token,
                runs.c.status == "running")


class RunWorker:
    """N claim-and-execute threads plus a lease heartbeat, in one service process."""

    def __init__(self, db: Engine, conversions: ConversionService, matrix: Matrix,
                 threads: int, lease_seconds: float, max_attempts: int,
                 poll: float = 0.5, retry_base: float = 2.0) -> None:
        self.db = db
        self.conversions = conversions
        self.matrix = matrix
        self.threads = threads
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.poll = poll
        self.retry_base = retry_base
        self.on_finished: list[Callable[[], None]] = []
        self._stop = threading.Event()
        # Set at SIGTERM: no new claims, while runs in progress may still finish.
        self._draining = threading.Event()
        self._drain_deadline: float | None = None
        self._wake = threading.Event()
        self._active: dict[str, str] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the worker threads and the heartbeat (no-op with 0 threads)."""
        if self.threads <= 0:
            return
        for index in range(self.threads):
            thread = threading.Thread(target=self._loop, name=f"run-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        beat = threading.Thread(target=self._heartbeat, name="run-lease", daemon=True)
        beat.start()
        self._threads.append(beat)

    def wake(self) -> None:
        """A run was created in this process: claim it now instead of at the next poll."""
        self._wake.set()

    def begin_drain(self, deadline: float) -> None:
        """Claim no more runs; those in progress may finish until deadline (monotonic)."""
        self._drain_deadline = deadline
        self._draining.set()
        self._wake.set()

    def stop(self, drain: float = 5.0) -> None:
        """Stop claiming, give runs in progress until the drain deadline (or drain seconds),
        then hand the rest back to the queue, so another process claims them at once."""
        self._draining.set()
        self._wake.set()
        deadline = self._drain_deadline or time.monotonic() + drain
        workers = [t for t in self._threads if t.name != "run-lease"]
        for thread in workers:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            tokens = list(self._active)
        try:
            released = release(self.db, tokens)
        except Exception:  # shutting down: the leases expire on their own
            logger.exception("could not release runs at shutdown")
            return
        if released:
            logger.info("released %d unfinished runs back to the queue", released)

    def active(self) -> list[str]:
        """Ids of runs this process is executing."""
        with self._lock:
            return list(self._active.values())

    def _loop(self) -> None:
        idle = IdlePoll(self.poll)
        while not self._stop.is_set() and not self._draining.is_set():
            try:
                claim = claim_next(self.db, new_token(), self.lease_seconds)
            except Exception:  # the loop must outlive a database hiccup
                logger.exception("claiming a run failed; retrying")
                self._stop.wait(1.0)
                continue
            if claim is None:
                if self._draining.is_set():
                    break
                if self._wake.wait(idle.empty()):
                    idle.busy()
                self._wake.clear()
                continue
            idle.busy()
            metrics.RUNS.labels(status="running").inc()
            with self._lock:
                self._active[claim.token] = claim.run_id
            try:
                self.execute(claim)
            except Exception:
                logger.exception("run %s: bookkeeping failed; its lease will expire",
                                 claim.run_id)
            finally:
                with self._lock:
                    self._active.pop(claim.token, None)

    def _heartbeat(self) -> None:
        interval = max(0.2, self.lease_seconds / 3)
        while not self._stop.wait(interval):
            with self._lock:
                tokens = list(self._active)
            try:
                renew(self.db, tokens, self.lease_seconds)
            except Exception:  # the next beat tries again; the lease has slack
                logger.exception("renewing run leases failed")

    # ------------------------------------------------------------------ execution
    def execute(self, claim: Claim) -> None:
        """Convert a claimed run and record its outcome (if the lease is still ours)."""
        query = (select(runs.c.format, runs.c.options, runs.c.webhook_url, runs.c.workspace,
                        runs.c.api_key_id, *file_columns())
                 .select_from(runs.join(files, files.c.id == runs.c.file_id))
                 .where(_held(claim)))
        with self.db.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return  # deleted with its file, or the lease was lost already
        if claim.attempts > self.max_attempts:
            self._fail(claim, row.webhook_url,
                       f"The run was interrupted {claim.attempts - 1} times (its worker "
                       "process stopped); giving up")
            return
        record = file_record(row)
        try:
            plan = self.matrix.plan(record.format, row.format, json.loads(row.options))
            deadline = time.monotonic() + self.conversions.timeout
            # Runs are async work: the engine serves them with capacity sync calls leave.
            result = self.conversions.produce(record, record.id, record.storage_key, plan,
                                              deadline, Tenant(row.workspace, row.api_key_id,
                                                               "async"))
        except ObjectMissing:
            self._fail(claim, row.webhook_url,
                       "The uploaded original is missing from storage; upload it again")
        except (Overloaded, UpstreamError, StorageError, InsufficientStorage, Unavailable,
                SQLAlchemyError) as exc:
            error = translate(exc) if isinstance(exc, SQLAlchemyError) else exc
            if error is None:  # a database bug, not an outage: failed like any other bug
                logger.exception("run %s failed unexpectedly", claim.run_id)
                self._fail(claim, row.webhook_url, _INTERNAL)
                return
            message = error.message if isinstance(error, ConverterError) else (
                f"Artifact storage failed: {error}")
            transient = isinstance(error, StorageError) or bool(error.details.get("retryable"))
            if transient and claim.attempts < self.max_attempts:
                self._retry(claim, message)
            elif transient:
                self._fail(claim, row.webhook_url,
                           f"{message} (gave up after {claim.attempts} attempts)")
            else:
                self._fail(claim, row.webhook_url, message)
        except ConverterError as exc:
            self._fail(claim, row.webhook_url, exc.message)
        except Exception:
            logger.exception("run %s failed unexpectedly", claim.run_id)
            self._fail(claim, row.webhook_url, _INTERNAL)
        else:
            self._finish(claim, row.webhook_url, status="completed",
                         artifact_id=result.artifact.id, error=None)

    def _retry(self, claim: Claim, message: str) -> None:
        delay = min(MAX_RETRY_DELAY, self.retry_base * 2 ** (claim.attempts - 1))
        logger.warning("run %s attempt %d failed (%s); retrying in %.1fs", claim.run_id,
                       claim.attempts, message, delay)

        def write() -> None:
            with self.db.begin() as conn:
                conn.execute(update(runs).where(_held(claim)).values(
                    status="pending", lease_owner=None, lease_expires_at=None,
                    not_before=utcnow() + timedelta(seconds=delay)))

        self._persist(claim, write)
        metrics.RUNS.labels(status="pending").inc()

    def _persist(self, claim: Claim, write: Callable[[], None]) -> None:
        """Run a bookkeeping write, waiting out a database outage instead of losing it.

        The lease is conditioned on its token, not on time: while nobody else claimed
        the run (nobody could, with the database down) the late write still lands.
        """
        deadline = time.monotonic() + MAX_BOOKKEEPING_WAIT
        pause = 0.5
        while True:
            try:
                write()
                return
            except SQLAlchemyError as exc:
                if not is_transient(exc) or time.monotonic() > deadline or self._stop.is_set():
                    raise
                logger.warning("run %s: database unavailable while recording it (%s); "
                               "retrying in %.1fs", claim.run_id,
                               str(exc).splitlines()[0], pause)
            self._stop.wait(pause)
            pause = min(pause * 2, 5.0)

    def _fail(self, claim: Claim, webhook_url: str | None, message: str) -> None:
        self._finish(claim, webhook_url, status="failed", artifact_id=None, error=message)

    def _finish(self, claim: Claim, webhook_url: str | None, status: str,
                artifact_id: str | None, error: str | None) -> None:
        outcome: list[bool] = []

        def write() -> None:
            with self.db.begin() as conn:
                result = conn.execute(update(runs).where(_held(claim)).values(
                    status=status, artifact_id=artifact_id, error=error,
                    completed_at=utcnow(), lease_owner=None, lease_expires_at=None,
                    not_before=None))
                done = result.rowcount == 1
                if done and webhook_url:
                    webhooks.schedule(conn, claim.run_id)
            outcome.append(done)

        self._persist(claim, write)
        done = outcome[-1]
        if not done:
            logger.warning("run %s: lease lost before it finished; another worker owns it",
                           claim.run_id)
            return
        metrics.RUNS.labels(status=status).inc()
        for callback in self.on_finished:
            callback()
