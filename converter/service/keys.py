"""API keys: creation, hashing and verification.

Keys are ``sk_live_`` plus 32 URL-safe random characters (192 bits). Only their
SHA-256 is stored; a request's key is hashed and looked up by that hash, then the
stored hash is compared in constant time.

Verified keys are cached in memory. Revocation (``converter keys revoke``, another
process) commits ``revoked_at`` and then replaces a marker file in the data
directory; every authentication stats that file (about a microsecond, no database
round trip) and trusts only cache entries made under the marker it sees now, so a
revoked key is refused on its very next request to any process on that host.
On PostgreSQL the revocation also sends a NOTIFY that replicas on other hosts hear
(revocations.py) and answer with ``invalidate()``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, func, insert, select, text, update

from converter.db.engine import as_utc, utcnow
from converter.db.schema import api_keys
from converter.errors import Unauthorized
from converter.service.principal import Principal

KEY_PREFIX = "sk_live_"
# A verified key is remembered this long so a cache hit does not pay a database
# round trip for authentication. Revocation on this host is seen at once through the
# marker file, on other hosts through NOTIFY; the TTL bounds how long a process that
# missed both (its listener reconnecting) may still accept a revoked key.
VERIFIED_TTL = 5.0
MARKER_NAME = "keys.revoked"
# The PostgreSQL NOTIFY channel revocations are announced on.
CHANNEL = "converter_key_revoked"
# (inode, mtime_ns) of the marker or None when there is none, and the invalidation count.
Stamp = tuple[tuple[int, int] | None, int]


@dataclass(frozen=True)
class KeyInfo:
    """What an operator may see of a key: never the key itself."""

    id: str
    prefix: str
    workspace: str
    user_id: str
    created_at: datetime
    revoked_at: datetime | None


def hash_key(raw: str) -> str:
    """SHA-256 hex digest of a raw key."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


class KeyStore:
    """Creates and verifies API keys."""

    def __init__(self, db: Engine, data_path: Path | None = None) -> None:
        self.db = db
        self.marker = data_path / MARKER_NAME if data_path is not None else None
        self._verified: dict[str, tuple[float, Stamp, Principal]] = {}
        self._lock = threading.Lock()
        self._generation = 0

    def _stamp(self) -> Stamp:
        if self.marker is None:
            return None, self._generation
        try:
            st = os.stat(self.marker)
        except FileNotFoundError:
            return None, self._generation
        return (st.st_ino, st.st_mtime_ns), self._generation

    def invalidate(self) -> None:
        """Distrust every cached key (a revocation elsewhere was announced)."""
        with self._lock:
            self._generation += 1
            self._verified.clear()

    def create(self, workspace: str, user_id: str, raw: str | None = None) -> tuple[str, str]:
        """Create a key for a user in a workspace; return (key_id, raw key) — shown once."""
        if not workspace or not user_id:
            raise ValueError("workspace and user are required")
        raw = raw or new_key()
        key_id = "key_" + uuid.uuid4().hex[:20]
        with self.db.begin() as conn:
            conn.execute(insert(api_keys).values(
                id=key_id, key_hash=hash_key(raw), prefix=raw[:12], workspace=workspace,
                user_id=user_id, created_at=utcnow()))
        return key_id, raw

    def count(self) -> int:
        """Number of keys (the first start creates one when this is 0)."""
        with self.db.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(api_keys)).scalar_one())

    def authenticate(self, raw: str | None) -> Principal:
        """Return the principal of a raw key or raise Unauthorized (one generic message)."""
        if not raw or not raw.startswith(KEY_PREFIX) or len(raw) > 200:
            raise Unauthorized()
        digest = hash_key(raw)
        now = time.monotonic()
        # Taken before the lookup: an entry cached by a lookup that raced a revocation
        # carries the old stamp and is never trusted once the new marker is visible.
        stamp = self._stamp()
        cached = self._verified.get(digest)
        if cached is not None and cached[0] > now and cached[1] == stamp:
            return cached[2]
        with self.db.connect() as conn:
            row = conn.execute(
                select(api_keys.c.id, api_keys.c.key_hash, api_keys.c.workspace,
                       api_keys.c.user_id, api_keys.c.revoked_at)
                .where(api_keys.c.key_hash == digest)
            ).first()
        if row is None or row.revoked_at is not None or not hmac.compare_digest(
                row.key_hash, digest):
            raise Unauthorized()
        principal = Principal(key_id=row.id, workspace=row.workspace, user_id=row.user_id)
        with self._lock:
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[digest] = (now + VERIFIED_TTL, stamp, principal)
        return principal

    def list(self) -> list[KeyInfo]:
        """Every key, oldest first, revoked ones included."""
        with self.db.connect() as conn:
            rows = conn.execute(
                select(api_keys.c.id, api_keys.c.prefix, api_keys.c.workspace,
                       api_keys.c.user_id, api_keys.c.created_at, api_keys.c.revoked_at)
                .order_by(api_keys.c.created_at, api_keys.c.id)).all()
        return [KeyInfo(id=r.id, prefix=r.prefix, workspace=r.workspace, user_id=r.user_id,
                        created_at=as_utc(r.created_at) or utcnow(),
                        revoked_at=as_utc(r.revoked_at)) for r in rows]

    def revoke(self, key_id: str) -> bool:
        """Revoke a key by id; False if no such key. Every process on this host sees it now."""
        with self.db.begin() as conn:
            row = conn.execute(select(api_keys.c.revoked_at)
                               .where(api_keys.c.id == key_id)).first()
            if row is None:
                return False
            if row.revoked_at is None:
                conn.execute(update(api_keys).where(api_keys.c.id == key_id)
                             .values(revoked_at=utcnow()))
            if conn.dialect.name == "postgresql":
                # Delivered on commit to every replica's RevocationListener.
                conn.execute(text("SELECT pg_notify(:channel, :key_id)"),
                             {"channel": CHANNEL, "key_id": key_id})
        # After the commit, so a process that sees the new marker also sees revoked_at.
        self._bump_marker()
        self.invalidate()
        return True

    def _bump_marker(self) -> None:
        if self.marker is None:
            return
        self.marker.parent.mkdir(parents=True, exist_ok=True)
        # A fresh file renamed into place gets a new inode, so the stamp changes even
        # when two revocations fall within the filesystem's timestamp granularity.
        tmp = self.marker.with_name(f"{MARKER_NAME}.{uuid.uuid4().hex}")
        tmp.write_text(utcnow().isoformat())
        os.replace(tmp, self.marker)
