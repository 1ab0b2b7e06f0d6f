"""Named leases in the database: work that one replica at a time should do.

A lease row names its holder's token and when the hold ends. Taking it is one
conditional UPDATE (free, expired, or ours already), so two replicas racing for
it cannot both win; the row is created on first use, and a racing INSERT loses
on the primary key. The holder renews while it works and lets go with
``finish``, which also says when the work is next due, so a fleet of replicas
runs it once per interval rather than once per replica.

Like run leases (run_worker.py), expiry compares clocks of different hosts:
replicas need synchronised clocks, with skew well under the lease's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from converter.db.engine import as_utc, utcnow
from converter.db.schema import leases
from converter.service.run_worker import new_token


@dataclass(frozen=True)
class Holder:
    """Who holds a lease and until when (for messages to operators)."""

    owner: str | None
    expires_at: datetime | None


class Lease:
    """One named lease, taken and renewed under this object's own token."""

    def __init__(self, db: Engine, name: str, seconds: float) -> None:
        self.db = db
        self.name = name
        self.seconds = seconds
        self.token = new_token()

    def acquire(self, force: bool = False) -> bool:
        """Take the lease if nobody holds it and (unless force) its work is due."""
        now = utcnow()
        free = or_(leases.c.owner.is_(None), leases.c.expires_at < now,
                   leases.c.owner == self.token)
        if not force:
            free = and_(free, or_(leases.c.next_due_at.is_(None), leases.c.next_due_at <= now))
        with self.db.begin() as conn:
            taken = conn.execute(update(leases).where(leases.c.name == self.name, free).values(
                owner=self.token, expires_at=now + timedelta(seconds=self.seconds))).rowcount
            if taken:
                return True
            if conn.execute(select(leases.c.name).where(leases.c.name == self.name)).first():
                return False
        try:
            with self.db.begin() as conn:
                conn.execute(insert(leases).values(
                    name=self.name, owner=self.token,
                    expires_at=now + timedelta(seconds=self.seconds)))
        except IntegrityError:
            return False  # another replica created it first, and holds it
        return True

    def renew(self) -> bool:
        """Extend the hold; False if the lease was lost (expired and taken by another)."""
        with self.db.begin() as conn:
            return bool(conn.execute(update(leases).where(
                leases.c.name == self.name, leases.c.owner == self.token).values(
                expires_at=utcnow() + timedelta(seconds=self.seconds))).rowcount)

    def finish(self, next_due_in: float) -> None:
        """Let go of the lease; nobody takes it for its work before next_due_in seconds."""
        now = utcnow()
        with self.db.begin() as conn:
            conn.execute(update(leases).where(
                leases.c.name == self.name, leases.c.owner == self.token).values(
                owner=None, expires_at=None, next_due_at=now + timedelta(seconds=next_due_in)))

    def holder(self) -> Holder:
        """The current holder, if any (None owner when free)."""
        with self.db.connect() as conn:
            row = conn.execute(select(leases.c.owner, leases.c.expires_at)
                               .where(leases.c.name == self.name)).first()
        if row is None:
            return Holder(None, None)
        return Holder(row.owner, as_utc(row.expires_at))


def expired_holds(db: Engine, dry_run: bool) -> int:
    """Clear holds whose holder died (expired and never finished); returns how many."""
    stale = and_(leases.c.owner.is_not(None), leases.c.expires_at < utcnow())
    with db.begin() as conn:
        if dry_run:
            return len(conn.execute(select(leases.c.name).where(stale)).all())
        return int(conn.execute(update(leases).where(stale).values(
            owner=None, expires_at=None)).rowcount or 0)

