"""Claim rows: which process in the fleet is making the artifact of a cache key.

A claim is taken with one ``INSERT ... ON CONFLICT DO NOTHING`` on the key (the
primary key), so of any number of processes and replicas racing for it exactly one
inserts; PostgreSQL decides on the unique index, SQLite under its single write lock.
A claim whose ``expires_at`` has passed belongs to a leader that died (or one that
failed on the document, once its failure stops being shared): one conditional
UPDATE hands it to the next taker, and the database again lets only one win.

Waiters only read the row (``peek``), so waiting writes nothing, which matters on
SQLite where every write takes the one write lock.

Like run leases, expiry compares clocks of different hosts: replicas need
synchronised clocks, with skew well under CONVERTER_FLIGHT_LEASE_SECONDS.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from converter.db.engine import as_utc, process_tag, utcnow
from converter.db.schema import conversion_claims
from converter.errors import ConverterError

# How long a failure on a document is handed to identical requests instead of the
# engine: long enough for every waiter of the flight to read it (they poll at most
# every quarter second) and for a client's immediate retry, short enough that a
# fixed engine or a changed deployment is tried again soon.
FAILURE_SECONDS = 10.0


def claim_token() -> str:
    """A token unique to one claim, naming its process for operators (as run leases do)."""
    return f"{uuid.uuid4().hex[:16]}@{process_tag()}"[:80]


@dataclass(frozen=True)
class Taken:
    """The claim is ours: new, or taken over from a holder whose lease lapsed."""

    took_over: bool


@dataclass(frozen=True)
class Seen:
    """What a claim row says to someone who does not hold it."""

    owner: str
    expired: bool
    # The leader's failure, rebuilt, while it is shared (state failed, not expired).
    error: ConverterError | None = None


def _shareable_types() -> dict[str, type[ConverterError]]:
    found: dict[str, type[ConverterError]] = {}
    pending: list[type[ConverterError]] = [ConverterError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        # Client errors built from (message, **details) only: rebuilt exactly on a waiter.
        if 400 <= cls.status < 500 and cls.__init__ is ConverterError.__init__:
            found.setdefault(cls.type, cls)
    return found


def shareable(exc: BaseException) -> bool:
    """Whether a failure is a verdict on the document that identical requests would meet too.

    4xx answers (unprocessable, wrong password, unknown sheet) are; 5xx ones
    (engine timeouts, overload, outages) pass, so a waiter tries again itself.
    """
    return (isinstance(exc, ConverterError) and 400 <= exc.status < 500
            and type(exc).__init__ is ConverterError.__init__)


def revive(error_type: str | None, message: str | None,
           details: str | None) -> ConverterError | None:
    """The error a failed claim row describes, or None if this release does not know it."""
    cls = _shareable_types().get(error_type or "")
    if cls is None:
        return None
    return cls(message or "", **(json.loads(details) if details else {}))


class Claims:
    """Takes, renews, releases and reads claim rows."""

    def __init__(self, db: Engine, lease_seconds: float,
                 failure_seconds: float = FAILURE_SECONDS) -> None:
        self.db = db
        self.lease_seconds = lease_seconds
        self.failure_seconds = failure_seconds
        dialect = postgresql if db.dialect.name == "postgresql" else sqlite
        self._insert = dialect.insert

    def acquire(self, key: str, token: str) -> Taken | Seen:
        """Take the claim for token, or say who holds it."""
        now = utcnow()
        lease = now + timedelta(seconds=self.lease_seconds)
        with self.db.begin() as conn:
            # RETURNING says whether the row is ours: an INSERT's rowcount is not
            # reported by every driver (psycopg gives -1 here).
            inserted = conn.execute(self._insert(conversion_claims).values(
                cache_key=key, owner=token, state="running", expires_at=lease,
                created_at=now).on_conflict_do_nothing().returning(
                conversion_claims.c.cache_key)).first()
            if inserted is not None:
                return Taken(took_over=False)
            # Expired: its leader died, or its failure is no longer shared. Only the
            # UPDATE that still sees it expired wins (PostgreSQL re-checks the WHERE
            # on the row it waited for; SQLite runs one writer at a time).
            taken = conn.execute(update(conversion_claims).where(
                conversion_claims.c.cache_key == key, conversion_claims.c.expires_at < now,
            ).values(owner=token, state="running", expires_at=lease, error_type=None,
                     error_message=None, error_details=None, created_at=now)).rowcount
            if taken:
                return Taken(took_over=True)
            row = conn.execute(select(conversion_claims).where(
                conversion_claims.c.cache_key == key)).first()
        # Gone in between (released, or removed by gc): the caller looks again.
        return _seen(row, now) if row is not None else Seen("", expired=True)

    def peek(self, key: str) -> Seen | None:
        """The claim on key as a waiter sees it, or None when there is none."""
        with self.db.connect() as conn:
            row = conn.execute(select(conversion_claims).where(
                conversion_claims.c.cache_key == key)).first()
        return None if row is None else _seen(row, utcnow())

    def renew(self, key: str, token: str) -> bool:
        """Extend token's running claim; False if it was lost (expired and taken)."""
        with self.db.begin() as conn:
            return bool(conn.execute(update(conversion_claims).where(
                conversion_claims.c.cache_key == key, conversion_claims.c.owner == token,
                conversion_claims.c.state == "running").values(
                expires_at=utcnow() + timedelta(seconds=self.lease_seconds))).rowcount)

    def release(self, key: str, token: str) -> None:
        """Drop token's claim: the artifact is recorded, or the failure is not to be shared."""
        with self.db.begin() as conn:
            conn.execute(delete(conversion_claims).where(
                conversion_claims.c.cache_key == key, conversion_claims.c.owner == token))

    def fail(self, key: str, token: str, exc: ConverterError) -> None:
        """Leave token's claim failed with exc, shared for failure_seconds."""
        with self.db.begin() as conn:
            conn.execute(update(conversion_claims).where(
                conversion_claims.c.cache_key == key, conversion_claims.c.owner == token,
            ).values(state="failed", error_type=exc.type, error_message=exc.message,
                     error_details=json.dumps(exc.details, sort_keys=True, default=str),
                     expires_at=utcnow() + timedelta(seconds=self.failure_seconds)))


def _seen(row: Any, now: datetime) -> Seen:
    expires = as_utc(row.expires_at)
    expired = expires is None or expires < now
    error = None
    if row.state == "failed" and not expired:
        error = revive(row.error_type, row.error_message, row.error_details)
    return Seen(row.owner, expired, error)


def expired_claims(db: Engine, dry_run: bool) -> int:
    """Delete claims past their expiry (dead leaders, failures no longer shared); how many."""
    stale = conversion_claims.c.expires_at < utcnow()
    with db.begin() as conn:
        if dry_run:
            return len(conn.execute(select(conversion_claims.c.cache_key).where(stale)).all())
        return int(conn.execute(delete(conversion_claims).where(stale)).rowcount or 0)
