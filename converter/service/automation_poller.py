"""The watched-folder poller: in every service process, list, claim and execute.

One thread lists the source of every enabled automation each
CONVERTER_AUTOMATION_POLL_SECONDS and records what it saw (automation_claims.py
decides, in the database, when a version is stable and who converts it); a few
worker threads claim ready versions and execute them (automation_executor.py);
a heartbeat renews the leases of claims in progress. Every replica runs the
same loops against the same database, and still each version is done once.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine, select

from converter import metrics
from converter.db.schema import automations
from converter.service import automation_claims as claims
from converter.service.automation_executor import Executor
from converter.service.automations import Connectors, automation_of
from converter.service.idle_poll import IdlePoll
from converter.service.run_worker import new_token

logger = logging.getLogger("converter.automations")

WORKER_THREADS = 2


class AutomationPoller:
    """The lister, the claim workers and the lease heartbeat of one process."""

    def __init__(self, db: Engine, connectors: Connectors, executor: Executor,
                 poll_seconds: float, lease_seconds: float,
                 threads: int = WORKER_THREADS) -> None:
        self.db = db
        self.connectors = connectors
        self.executor = executor
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.threads = threads
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._active: dict[str, int] = {}
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Start the lister, the workers and the heartbeat."""
        targets = [("automation-lister", self._list_loop), ("automation-lease", self._heartbeat)]
        targets += [(f"automation-worker-{i}", self._work_loop) for i in range(self.threads)]
        for name, target in targets:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, drain: float = 5.0) -> None:
        """Stop, give claims in progress a moment, then hand the rest back."""
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + drain
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            tokens = list(self._active)
        try:
            released = claims.release(self.db, tokens)
        except Exception:  # shutting down: the leases expire on their own
            logger.exception("could not release automation claims at shutdown")
            return
        if released:
            logger.info("released %d automation claims in progress", released)

    # ------------------------------------------------------------------ listing
    def list_once(self) -> int:
        """List every enabled automation's source once; returns the versions now ready."""
        with self.db.connect() as conn:
            rows = conn.execute(select(automations)
                                .where(automations.c.enabled.is_(True))).all()
        ready = 0
        for row in rows:
            automation = automation_of(row)
            try:
                provider = self.connectors.provider(automation.workspace,
                                                    automation.source_connector_id)
                entries = list(provider.walk(automation.source_path))
                # The stable-after gap: listings of other replicas count as "the previous
                # listing" too, but only when they were made well apart from this one.
                ready += claims.observe(self.db, automation.id, entries,
                                        self.poll_seconds / 2)
            except Exception as exc:  # one broken source must not stop the others
                metrics.AUTOMATION_LISTINGS.labels(outcome="failed").inc()
                logger.warning("automation %s: listing %r failed: %s", automation.id,
                               automation.source_path, exc)
                continue
            metrics.AUTOMATION_LISTINGS.labels(outcome="ok").inc()
        return ready

    def _list_loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if self.list_once():
                    self._wake.set()
            except Exception:  # the loop must outlive a database hiccup
                logger.exception("listing automation sources failed; retrying")
            self._stop.wait(max(0.0, self.poll_seconds - (time.monotonic() - started)))

    # ------------------------------------------------------------------ work
    def work_once(self) -> bool:
        """Claim and execute one ready version; False when there was none."""
        claim = claims.claim_next(self.db, new_token(), self.lease_seconds)
        if claim is None:
            return False
        with self._lock:
            self._active[claim.token] = claim.id
        try:
            self.executor.execute(claim)
        finally:
            with self._lock:
                self._active.pop(claim.token, None)
        return True

    def _work_loop(self) -> None:
        idle = IdlePoll(min(self.poll_seconds, 1.0))
        while not self._stop.is_set():
            try:
                if self.work_once():
                    idle.busy()
                    continue
            except Exception:
                logger.exception("automation claim failed; its lease will expire")
                self._stop.wait(1.0)
                continue
            if self._wake.wait(idle.empty()):
                idle.busy()
            self._wake.clear()

    def _heartbeat(self) -> None:
        interval = max(0.2, self.lease_seconds / 3)
        while not self._stop.wait(interval):
            with self._lock:
                tokens = list(self._active)
            try:
                claims.renew(self.db, tokens, self.lease_seconds)
            except Exception:  # the next beat tries again; the lease has slack
                logger.exception("renewing automation claims failed")
