"""API keys: creation, hashing and verification.

Keys are ``sk_live_`` plus 32 URL-safe random characters (192 bits). Only their
SHA-256 is stored; a request's key is hashed and looked up by that hash, then the
stored hash is compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
import uuid

from sqlalchemy import Engine, func, insert, select

from converter.db.engine import utcnow
from converter.db.schema import api_keys
from converter.errors import Unauthorized
from converter.service.principal import Principal

KEY_PREFIX = "sk_live_"
# A verified key is remembered this long so a cache hit does not pay a database
# round trip for authentication; revocation takes effect within this window.
VERIFIED_TTL = 5.0


def hash_key(raw: str) -> str:
    """SHA-256 hex digest of a raw key."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def new_key() -> str:
    """A fresh random API key."""
    return KEY_PREFIX + secrets.token_urlsafe(24)


class KeyStore:
    """Creates and verifies API keys."""

    def __init__(self, db: Engine) -> None:
        self.db = db
        self._verified: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

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
        cached = self._verified.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
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
            self._verified[digest] = (now + VERIFIED_TTL, principal)
        return principal
