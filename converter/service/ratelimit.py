"""Per-key request budgets for the synchronous endpoints, shared by every process of a host.

Each key's budget is one row in a small SQLite file in the data directory
(``ratelimit.db``, WAL), updated by the generic cell rate algorithm (GCRA): the
row holds the key's "theoretical arrival time", so a key may spend its whole
budget in a burst and then one request per ``window / limit`` seconds. One row
and one short write transaction per request, whatever the budget.

Why a file of its own on the host rather than the metadata database: the
budget is checked on every request, cache hits included, so it must cost
microseconds; a round trip to PostgreSQL, or a write under the metadata
SQLite's single lock that uploads and run claims wait on, would not. The price
is that replicas on other hosts keep budgets of their own (a key may spend its
budget once per host), as they did per process before.

Writers take turns on a lock of their own (a thread lock, then ``flock`` on
``ratelimit.db.lock`` across processes) before they open the transaction. SQLite
alone would make a writer that finds the file locked sleep and poll (1, 2, 5 ... 100
ms): under 32 concurrent requests that put a second on the slowest ones. A kernel
lock wakes the next writer as soon as the previous commits.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import random
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from converter.errors import RateLimitExceeded

logger = logging.getLogger("converter")

# Rows of keys whose budget is full again are removed on about one request in this many.
PRUNE_EVERY = 1000

# GCRA in one statement: the new theoretical arrival time, or no row when it would run
# more than the tolerance ahead of now (the budget is spent).
_SPEND = ("INSERT INTO budgets (key, tat) VALUES (:key, :now + :interval) "
          "ON CONFLICT(key) DO UPDATE SET tat = max(tat, :now) + :interval "
          "WHERE max(tat, :now) - :now <= :tolerance RETURNING tat")


@dataclass(frozen=True)
class Budget:
    """The state of one key's budget after a request was counted."""

    limit: int
    remaining: int
    reset_seconds: int


class RateLimiter:
    """Allows ``limit`` requests per key per ``window`` seconds, across processes."""

    def __init__(self, limit: int, path: Path, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self.path = path
        self._local = threading.local()
        self._turn = threading.Lock()
        # Opened per process (see _lock_fd): an flock is held by an open file description,
        # which forked workers would otherwise share and all hold at once.
        self._lock_file: tuple[int, int] | None = None
        self._connect()  # creates the table now: a broken data directory fails at start

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # Budgets are not worth an fsync: losing the last second of them in a power
            # cut only gives keys some budget back.
            conn.execute("PRAGMA synchronous=OFF")
            conn.execute("CREATE TABLE IF NOT EXISTS budgets "
                         "(key TEXT PRIMARY KEY, tat REAL NOT NULL)")
            self._local.conn = conn
        return conn

    def _lock_fd(self) -> int:
        pid = os.getpid()
        if self._lock_file is None or self._lock_file[0] != pid:
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._lock_file = (pid, fd)
        return self._lock_file[1]

    def hit(self, key: str, now: float | None = None) -> Budget:
        """Count one request; raise RateLimitExceeded when the budget is spent."""
        now = time.time() if now is None else now
        interval = self.window / self.limit
        tolerance = self.window - interval
        try:
            tat = self._advance(key, now, interval, tolerance)
        except sqlite3.Error as exc:
            # The budget protects the service; it is not worth refusing requests over.
            logger.warning("rate limit store %s failed (%s); request let through. "
                           "Check that CONVERTER_DATA_DIR is writable", self.path, exc)
            return Budget(self.limit, self.limit, math.ceil(self.window))
        if tat is None:
            raise self._refusal(key, now, interval, tolerance)
        ahead = tat - now
        remaining = max(0, min(self.limit, math.floor((tolerance - ahead) / interval) + 1))
        return Budget(self.limit, remaining, max(1, math.ceil(ahead)))

    def _advance(self, key: str, now: float, interval: float,
                 tolerance: float) -> float | None:
        """Spend one request of key's budget: its new arrival time, or None if refused."""
        conn = self._connect()
        with self._turn:
            fd = self._lock_fd()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                return self._spend(conn, key, now, interval, tolerance)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    @staticmethod
    def _spend(conn: sqlite3.Connection, key: str, now: float, interval: float,
               tolerance: float) -> float | None:
        # One statement (its own transaction): the read, the check and the write that
        # would otherwise take BEGIN, SELECT, UPSERT and COMMIT. No row comes back when
        # the key's budget is spent, since the WHERE keeps the update from happening.
        row = conn.execute(_SPEND, {"key": key, "now": now, "interval": interval,
                                    "tolerance": tolerance + 1e-9}).fetchone()
        if random.randrange(PRUNE_EVERY) == 0:  # noqa: S311 - not for security
            conn.execute("DELETE FROM budgets WHERE tat < ?", (now,))
        return float(row[0]) if row else None

    def _refusal(self, key: str, now: float, interval: float,
                 tolerance: float) -> RateLimitExceeded:
        row = self._connect().execute("SELECT tat FROM budgets WHERE key = ?",
                                      (key,)).fetchone()
        tat = float(row[0]) if row else now
        retry = max(1, math.ceil(tat - now - tolerance))
        error = RateLimitExceeded(
            f"Rate limit of {self.limit} requests per {self.window:g}s exceeded "
            f"(CONVERTER_REQUESTS_PER_MINUTE); retry in {retry}s", retry_after=retry)
        error.headers.update(headers(Budget(self.limit, 0, retry)))
        return error


def headers(budget: Budget) -> dict[str, str]:
    """IETF RateLimit header fields for a budget."""
    return {
        "RateLimit-Limit": str(budget.limit),
        "RateLimit-Remaining": str(budget.remaining),
        "RateLimit-Reset": str(budget.reset_seconds),
    }
