"""Idempotency keys: a retried POST replays its first response instead of acting twice.

A key is scoped to the API key that sent it and remembered for 24 hours. The
stored request hash covers method, path and body, so reusing a key for a
different request is refused (409 ``idempotency_key_in_use``). Only successful
responses are stored: a request that failed validation did nothing, and its key
may be used again.

Concurrent requests with the same key are serialised by ``lock_api_key`` taken
at the start of the writing transaction; the second one then finds the first's
stored response and replays it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update

from converter.db.engine import as_utc, utcnow
from converter.db.schema import api_keys, idempotency_keys
from converter.errors import IdempotencyKeyInUse, InvalidRequest

TTL = timedelta(hours=24)
HEADER = "Idempotency-Key"
# Set on a response that replays a stored one.
REPLAYED_HEADER = "Idempotent-Replayed"
_PURGE_EVERY = 600.0


@dataclass(frozen=True)
class Replay:
    """A stored response to send again."""

    status_code: int
    body: dict[str, Any]


def validate_key(raw: str | None) -> str | None:
    """The header's value, or InvalidRequest if it is empty, too long or not printable."""
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > 255 or not key.isprintable() or not key.isascii():
        raise InvalidRequest(f"{HEADER} must be 1 to 255 printable ASCII characters",
                             field=HEADER)
    return key


def request_hash(method: str, path: str, body: Any) -> str:
    """sha256 of the canonical JSON of (method, path, body): equal requests hash equal."""
    canonical = json.dumps([method.upper(), path, body], sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def lock_api_key(conn: Connection, key_id: str) -> None:
    """Serialise writers for one API key until the transaction ends.

    A no-op UPDATE takes the row lock on PostgreSQL and the write lock on SQLite;
    as the transaction's first statement it also keeps SQLite from starting on a
    read snapshot that a concurrent writer could make stale.
    """
    conn.execute(update(api_keys).where(api_keys.c.id == key_id)
                 .values(prefix=api_keys.c.prefix))


class IdempotencyStore:
    """Looks up and remembers responses by (API key, Idempotency-Key)."""

    def __init__(self, db: Engine) -> None:
        self.db = db
        self._last_purge = 0.0
        self._lock = threading.Lock()

    def lookup(self, conn: Connection, key_id: str, key: str, digest: str) -> Replay | None:
        """The stored response for key, None if unknown or expired; 409 if the body differs."""
        row = conn.execute(select(idempotency_keys).where(
            idempotency_keys.c.api_key_id == key_id, idempotency_keys.c.key == key)).first()
        if row is None:
            return None
        created = as_utc(row.created_at)
        if created is None or created < utcnow() - TTL:
            conn.execute(delete(idempotency_keys).where(
                idempotency_keys.c.api_key_id == key_id, idempotency_keys.c.key == key))
            return None
        if row.request_hash != digest:
            raise IdempotencyKeyInUse(
                f"{HEADER} {key!r} was already used for a different request; use a new key "
                "for a new request", field=HEADER)
        if row.response is None or row.status_code is None:
            # Rows are written complete inside the creating transaction; an empty one
            # can only come from an interrupted older writer, so treat it as unknown.
            return None
        return Replay(int(row.status_code), json.loads(row.response))

    def peek(self, key_id: str, key: str, digest: str) -> Replay | None:
        """lookup() in its own short transaction (the fast path before any work)."""
        with self.db.begin() as conn:
            return self.lookup(conn, key_id, key, digest)

    def remember(self, conn: Connection, key_id: str, key: str, digest: str,
                 status_code: int, body: dict[str, Any], subject_id: str | None = None,
                 ) -> None:
        """Store the response in the caller's transaction (commits with the work it describes).

        subject_id names the run (or export) the response is about: deleting that
        record by retention deletes this row too.
        """
        conn.execute(insert(idempotency_keys).values(
            api_key_id=key_id, key=key, request_hash=digest, status_code=status_code,
            response=json.dumps(body, separators=(",", ":")), created_at=utcnow(),
            subject_id=subject_id))

    def create_once(self, key_id: str, key: str | None, digest: str, status_code: int,
                    write: Callable[[Connection], tuple[dict[str, Any], str]],
                    ) -> tuple[dict[str, Any], bool]:
        """Run write (which returns the response body and its subject's id) at most once per key.

        Returns (body, replayed). Without a key, write simply runs in its own transaction.
        The caller validates the request first: a refused request stores nothing.
        """
        if key:
            replay = self.peek(key_id, key, digest)
            if replay is not None:
                return replay.body, True
        with self.db.begin() as conn:
            if key:
                lock_api_key(conn, key_id)
                replay = self.lookup(conn, key_id, key, digest)
                if replay is not None:
                    return replay.body, True
            body, subject_id = write(conn)
            if key:
                self.remember(conn, key_id, key, digest, status_code, body,
                              subject_id=subject_id)
        return body, False

    def purge_expired(self, force: bool = False, dry_run: bool = False) -> int:
        """Delete keys older than 24 hours; runs at most every 10 minutes unless forced.

        A dry run counts them instead (and always runs).
        """
        expired = idempotency_keys.c.created_at < utcnow() - TTL
        if dry_run:
            with self.db.connect() as conn:
                return int(conn.execute(select(func.count()).where(expired)).scalar_one())
        now = time.monotonic()
        with self._lock:
            if not force and now - self._last_purge < _PURGE_EVERY:
                return 0
            self._last_purge = now
        with self.db.begin() as conn:
            result = conn.execute(delete(idempotency_keys).where(expired))
        return int(result.rowcount or 0)
