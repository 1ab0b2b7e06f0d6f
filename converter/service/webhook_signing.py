"""Webhook signatures by the Standard Webhooks specification, and the workspace secrets.

Any receiver can check them with a stock library (``standardwebhooks`` in Python):
headers ``webhook-id`` (the message id, the same on every retry),
``webhook-timestamp`` (unix seconds) and ``webhook-signature: v1,<base64
HMAC-SHA256 of "id.timestamp.body">``, keyed with the bytes of the workspace
secret ``whsec_<base64>`` that ``GET /v1/webhooks/secret`` shows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from converter.db.engine import utcnow
from converter.db.schema import workspace_secrets

logger = logging.getLogger("converter.webhooks")

SIGNATURE_HEADER = "webhook-signature"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A fresh signing secret in the Standard Webhooks form, whsec_<base64 of 32 bytes>."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_bytes(secret: str) -> bytes | None:
    """The HMAC key a whsec_ secret stands for, or None if it is not in that form."""
    if not secret.startswith(SECRET_PREFIX):
        return None
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return None
    return key if len(key) >= 24 else None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header value: v1,<base64 HMAC-SHA256 of "id.timestamp.body">."""
    key = secret_bytes(secret)
    if key is None:
        raise ValueError("webhook secrets must be whsec_<base64>")
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def signed_headers(secret: str, message_id: str, body: bytes,
                   now: float | None = None) -> dict[str, str]:
    """The three Standard Webhooks headers for body."""
    timestamp = int(time.time() if now is None else now)
    return {"webhook-id": message_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, message_id, timestamp, body)}


class SecretStore:
    """One signing secret per workspace, created on first use."""

    def __init__(self, db: Engine) -> None:
        self.db = db

    def get(self, workspace: str) -> str:
        """The workspace's webhook secret (created now if it has none)."""
        query = select(workspace_secrets.c.secret).where(
            workspace_secrets.c.workspace == workspace)
        with self.db.connect() as conn:
            found = conn.execute(query).scalar()
        if found is not None and secret_bytes(str(found)) is not None:
            return str(found)
        if found is not None:
            return self._rotate(workspace, str(found))
        try:
            with self.db.begin() as conn:
                secret = new_secret()
                conn.execute(insert(workspace_secrets).values(
                    workspace=workspace, secret=secret, created_at=utcnow()))
            return secret
        except IntegrityError:
            # Another request created it first; theirs is the one.
            with self.db.connect() as conn:
                return str(conn.execute(query).scalar_one())

    def _rotate(self, workspace: str, old: str) -> str:
        # Secrets made before Standard Webhooks signing were URL-safe text that no
        # receiver library can decode; they are replaced once, on first use.
        logger.warning("webhook secret of workspace %s predates Standard Webhooks signing; "
                       "replaced with a whsec_<base64> one", workspace)
        with self.db.begin() as conn:
            conn.execute(update(workspace_secrets)
                         .where(workspace_secrets.c.workspace == workspace,
                                workspace_secrets.c.secret == old)
                         .values(secret=new_secret()))
        return self.get(workspace)
