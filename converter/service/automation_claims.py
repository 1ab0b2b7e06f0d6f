"""Claims in the database: each version of each watched file is converted exactly once.

A listing records every file it sees as a ``seen`` row, unique per (automation,
path, version); the INSERT that creates it is the one that writes the ``seen``
event, so concurrent replicas record it once. A later listing that finds the
same version (and was made at least ``stable_after`` seconds after the first)
marks the row ``ready``: a file still being written changes size or mtime
between listings and so keeps getting new ``seen`` rows instead.

Claiming follows run_worker.py: one UPDATE takes the oldest ``ready`` row, or a
``working`` one whose lease expired because its process died, and sets a fresh
lease token; PostgreSQL locks the candidate with FOR UPDATE SKIP LOCKED, SQLite
runs the statement under its single write lock. Every later write is
conditioned on that token, so a worker that lost its lease records nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite

from converter import metrics
from converter.connectors.base import Entry
from converter.db.engine import next_seq, utcnow
from converter.db.schema import automation_claims, automation_events, automations

claims = automation_claims
EVENT_KINDS = ("seen", "converted", "delivered", "failed")


@dataclass(frozen=True)
class Claim:
    """A file version this worker holds the lease on."""

    id: int
    automation_id: str
    path: str
    version: str
    token: str
    attempts: int
    destinations: dict[str, str] | None
    delivered: bool


@dataclass(frozen=True)
class Event:
    """One line of an automation's history."""

    kind: str
    path: str
    version: str
    format: str | None = None
    destination: str | None = None
    reason: str | None = None


def add_events(conn: Connection, automation_id: str, events: Iterable[Event]) -> None:
    """Append events to an automation's history (in the caller's transaction)."""
    rows = [{"automation_id": automation_id, "kind": e.kind, "path": e.path,
             "version": e.version, "format": e.format, "destination": e.destination,
             "reason": e.reason, "at": utcnow(), "seq": next_seq()} for e in events]
    if rows:
        conn.execute(insert(automation_events), rows)


def count(events: Iterable[Event]) -> None:
    """Count committed events in /metrics (converter_automation_events_total{kind})."""
    for event in events:
        metrics.AUTOMATION_EVENTS.labels(kind=event.kind).inc()


def _insert_new(conn: Connection, values: dict[str, Any]) -> bool:
    """INSERT a claim row unless one exists for its version; True if this one made it."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT that SQLAlchemy gives
    # an implicit RETURNING, so rowcount said "inserted" to both of two racing replicas.
    statement = dialect.insert(claims).values(**values).on_conflict_do_nothing(
        index_elements=["automation_id", "path", "version"]).returning(claims.c.id)
    return conn.execute(statement).first() is not None


def observe(db: Engine, automation_id: str, entries: list[Entry], stable_after: float) -> int:
    """Record one listing of an automation's source; returns how many rows became ready."""
    now = utcnow()
    files = [e for e in entries if not e.is_dir]
    with db.connect() as conn:
        known = {(r.path, r.version): (r.status, r.seen_at) for r in conn.execute(
            select(claims.c.path, claims.c.version, claims.c.status, claims.c.seen_at)
            .where(claims.c.automation_id == automation_id))}
    ready = 0
    for entry in files:
        found = known.get((entry.path, entry.version))
        if found is None:
            with db.begin() as conn:
                seen = [Event("seen", entry.path, entry.version)]
                if not _insert_new(conn, {"automation_id": automation_id, "path": entry.path,
                                          "version": entry.version, "size_bytes": entry.size,
                                          "status": "seen", "seen_at": now, "attempts": 0}):
                    seen = []
                add_events(conn, automation_id, seen)
                # A version that was only seen (never worked on) and is gone now was a
                # file being written: it is not a version anyone will convert.
                conn.execute(delete(claims).where(
                    claims.c.automation_id == automation_id, claims.c.path == entry.path,
                    claims.c.version != entry.version,
                    claims.c.status.in_(("seen", "ready"))))
            count(seen)
            continue
        status, _seen_at = found
        if status != "seen":
            continue
        with db.begin() as conn:
            # Two listings agree, the first at least stable_after ago (replicas list at
            # their own pace, so "the previous listing" may be another replica's).
            ready += int(conn.execute(update(claims).where(
                claims.c.automation_id == automation_id, claims.c.path == entry.path,
                claims.c.version == entry.version, claims.c.status == "seen",
                claims.c.seen_at <= now - timedelta(seconds=stable_after))
                .values(status="ready")).rowcount or 0)
    return ready


def claim_next(db: Engine, token: str, lease_seconds: float) -> Claim | None:
    """Atomically lease the oldest claimable file version to token, or return None."""
    now = utcnow()
    candidate = claims.alias("candidate")
    other = claims.alias("other")
    # A newer version waits while an older one of the same path is still being worked
    # on, so deliveries to one destination name happen in the order of the versions.
    busy_path = exists().where(
        other.c.automation_id == candidate.c.automation_id, other.c.path == candidate.c.path,
        other.c.id != candidate.c.id, other.c.status == "working",
        other.c.lease_expires_at >= now)
    enabled = select(automations.c.id).where(automations.c.enabled.is_(True))
    chosen = (select(candidate.c.id)
              .where(or_(and_(candidate.c.status == "ready",
                              or_(candidate.c.not_before.is_(None),
                                  candidate.c.not_before <= now)),
                         and_(candidate.c.status == "working",
                              candidate.c.lease_expires_at < now)),
                     candidate.c.automation_id.in_(enabled), ~busy_path)
              .order_by(candidate.c.id).limit(1)
              .with_for_update(skip_locked=True).scalar_subquery())
    with db.begin() as conn:
        row = conn.execute(
            update(claims).where(claims.c.id == chosen)
            .values(status="working", lease_owner=token,
                    lease_expires_at=now + timedelta(seconds=lease_seconds),
                    attempts=claims.c.attempts + 1)
            .returning(claims.c.id, claims.c.automation_id, claims.c.path, claims.c.version,
                       claims.c.attempts, claims.c.destinations, claims.c.delivered_at)).first()
    if row is None:
        return None
    return Claim(id=row.id, automation_id=row.automation_id, path=row.path,
                 version=row.version, token=token, attempts=int(row.attempts),
                 destinations=json.loads(row.destinations) if row.destinations else None,
                 delivered=row.delivered_at is not None)


def _held(claim: Claim) -> Any:
    return and_(claims.c.id == claim.id, claims.c.lease_owner == claim.token,
                claims.c.status == "working")


def renew(db: Engine, tokens: list[str], lease_seconds: float) -> int:
    """Extend the leases still held by tokens; returns how many are."""
    if not tokens:
        return 0
    with db.begin() as conn:
        return int(conn.execute(
            update(claims).where(claims.c.lease_owner.in_(tokens), claims.c.status == "working")
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))).rowcount or 0)


def release(db: Engine, tokens: list[str]) -> int:
    """Hand claims back at shutdown (ready again at once); the attempt does not count."""
    if not tokens:
        return 0
    with db.begin() as conn:
        return int(conn.execute(
            update(claims).where(claims.c.lease_owner.in_(tokens), claims.c.status == "working")
            .values(status="ready", lease_owner=None, lease_expires_at=None,
                    attempts=case((claims.c.attempts > 0, claims.c.attempts - 1), else_=0)))
            .rowcount or 0)


def destinations_in_use(db: Engine, claim: Claim) -> tuple[dict[str, str], set[str]]:
    """The names an earlier version of this path was delivered to, and other paths' names."""
    with db.connect() as conn:
        rows = conn.execute(select(claims.c.path, claims.c.destinations)
                            .where(claims.c.automation_id == claim.automation_id,
                                   claims.c.destinations.is_not(None))
                            .order_by(claims.c.id)).all()
    own: dict[str, str] = {}
    others: set[str] = set()
    for row in rows:
        names = json.loads(row.destinations)
        if row.path == claim.path:
            own.update(names)  # the latest version's names win
        else:
            others.update(names.values())
    return own, others


def keep_destinations(db: Engine, claim: Claim, names: dict[str, str]) -> Claim | None:
    """Store the destination names of a claim before anything is delivered to them.

    Returns the claim with its names, or None when the lease was lost meanwhile.
    """
    with db.begin() as conn:
        done = conn.execute(update(claims).where(_held(claim))
                            .values(destinations=json.dumps(names, sort_keys=True))).rowcount
    if not done:
        return None
    return Claim(**{**claim.__dict__, "destinations": names})


def mark_delivered(db: Engine, claim: Claim, events: list[Event]) -> bool:
    """Every format was delivered: say so with its events, if the lease is still ours."""
    with db.begin() as conn:
        if not conn.execute(update(claims).where(_held(claim))
                            .values(delivered_at=utcnow(), error=None)).rowcount:
            return False
        add_events(conn, claim.automation_id, events)
    count(events)
    return True


def finish(db: Engine, claim: Claim, status: str = "done", events: Sequence[Event] = (),
           error: str | None = None) -> bool:
    """End a claim as done, failed or superseded (with events), if the lease is still ours."""
    with db.begin() as conn:
        if not conn.execute(update(claims).where(_held(claim)).values(
                status=status, error=error, completed_at=utcnow(), lease_owner=None,
                lease_expires_at=None)).rowcount:
            return False
        add_events(conn, claim.automation_id, events)
    count(events)
    return True


def retry(db: Engine, claim: Claim, reason: str, delay: float) -> bool:
    """Give a claim back to be tried again after delay seconds (a passing failure)."""
    with db.begin() as conn:
        return bool(conn.execute(update(claims).where(_held(claim)).values(
            status="ready", error=reason, lease_owner=None, lease_expires_at=None,
            not_before=utcnow() + timedelta(seconds=delay))).rowcount)
