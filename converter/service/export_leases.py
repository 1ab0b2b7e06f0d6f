"""Leases on export rows: claim, renew, release, and every later write conditioned on them.

The same scheme as runs (run_worker.py): one UPDATE claims the oldest claimable
export (pending and due, or processing under an expired lease: its process died)
with a fresh token; a heartbeat renews the leases in progress; the outcome is
written only where the row still carries the token, so a worker that lost its
lease never records a result, and two replicas never both finish one export.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, and_, bindparam, case, func, or_, select, update

from converter.db.engine import utcnow
from converter.db.schema import exports


@dataclass(frozen=True)
class Claim:
    """An export this worker holds the lease on."""

    export_id: str
    token: str
    attempts: int


def _claim_statement() -> Any:
    """UPDATE ... RETURNING that leases the oldest claimable export, built once."""
    now = bindparam("now", type_=exports.c.created_at.type)
    candidate = exports.alias("candidate")
    chosen = (select(candidate.c.id)
              .where(or_(and_(candidate.c.status == "pending",
                              or_(candidate.c.not_before.is_(None),
                                  candidate.c.not_before <= now)),
                         and_(candidate.c.status == "processing",
                              candidate.c.lease_expires_at < now)))
              .order_by(candidate.c.seq).limit(1)
              .with_for_update(skip_locked=True).scalar_subquery())
    return (update(exports).where(exports.c.id == chosen)
            .values(status="processing", lease_owner=bindparam("token"),
                    lease_expires_at=bindparam("expires"),
                    attempts=exports.c.attempts + 1,
                    started_at=func.coalesce(exports.c.started_at, now))
            .returning(exports.c.id, exports.c.attempts))


_CLAIM = _claim_statement()


def claim_next(db: Engine, token: str, lease_seconds: float) -> Claim | None:
    """Atomically lease the oldest claimable export to token, or return None."""
    now = utcnow()
    with db.begin() as conn:
        row = conn.execute(_CLAIM, {"now": now, "token": token,
                                    "expires": now + timedelta(seconds=lease_seconds)}).first()
    return None if row is None else Claim(row.id, token, int(row.attempts))


def held(claim: Claim) -> Any:
    """SQL condition: the export is still leased to this claim."""
    return and_(exports.c.id == claim.export_id, exports.c.lease_owner == claim.token,
                exports.c.status == "processing")


def renew(db: Engine, tokens: list[str], lease_seconds: float) -> int:
    """Extend the leases still held by tokens; returns how many are still held."""
    if not tokens:
        return 0
    with db.begin() as conn:
        result = conn.execute(
            update(exports).where(exports.c.lease_owner.in_(tokens),
                                  exports.c.status == "processing")
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds)))
    return int(result.rowcount or 0)


def release(db: Engine, tokens: list[str]) -> int:
    """Hand exports back at shutdown; the interrupted attempt does not count."""
    if not tokens:
        return 0
    with db.begin() as conn:
        result = conn.execute(
            update(exports).where(exports.c.lease_owner.in_(tokens),
                                  exports.c.status == "processing")
            .values(status="pending", lease_owner=None, lease_expires_at=None,
                    attempts=case((exports.c.attempts > 0, exports.c.attempts - 1), else_=0)))
    return int(result.rowcount or 0)


def postpone(db: Engine, claim: Claim, seconds: float, count_attempt: bool) -> bool:
    """Put a held export back in the queue until seconds from now; False if the lease is lost."""
    values: dict[str, Any] = {"status": "pending", "lease_owner": None,
                              "lease_expires_at": None,
                              "not_before": utcnow() + timedelta(seconds=seconds)}
    if not count_attempt:
        values["attempts"] = case((exports.c.attempts > 0, exports.c.attempts - 1), else_=0)
    with db.begin() as conn:
        return conn.execute(update(exports).where(held(claim)).values(**values)).rowcount == 1


def finish(db: Engine, claim: Claim, status: str, result: str | None,
           error: str | None) -> bool:
    """Record the outcome of a held export; False if the lease was lost meanwhile."""
    with db.begin() as conn:
        done = conn.execute(update(exports).where(held(claim)).values(
            status=status, result=result, error=error, completed_at=utcnow(),
            lease_owner=None, lease_expires_at=None, not_before=None))
    return done.rowcount == 1
