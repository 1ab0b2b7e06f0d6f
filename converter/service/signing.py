"""Signed, expiring download tokens (HMAC-SHA256), for storage that cannot presign."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from converter.errors import Forbidden


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Grant:
    """What a valid token allows: one artifact, under one filename, until expires."""

    artifact_id: str
    filename: str
    expires: int


class Signer:
    """Issues and verifies download tokens."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("signing secret must be at least 16 bytes")
        self.secret = secret

    def sign(self, grant: Grant) -> str:
        """Return an opaque URL-safe token for grant."""
        # The nonce makes every signing a new URL, even twice in the same second.
        payload = json.dumps([grant.artifact_id, grant.filename, grant.expires,
                              secrets.token_urlsafe(6)],
                             separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        mac = hmac.new(self.secret, payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"

    def verify(self, token: str, now: float | None = None) -> Grant:
        """Return the grant of a valid token; raise Forbidden if tampered or expired."""
        try:
            body, mac_text = token.split(".", 1)
            payload = _unb64(body)
            mac = _unb64(mac_text)
        except (ValueError, TypeError):
            raise Forbidden("Download link is invalid.") from None
        expected = hmac.new(self.secret, payload, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise Forbidden("Download link is invalid.")
        try:
            artifact_id, filename, expires, _nonce = json.loads(payload)
        except (ValueError, TypeError):
            raise Forbidden("Download link is invalid.") from None
        if (now if now is not None else time.time()) >= int(expires):
            raise Forbidden("Download link has expired; request a new one.")
        return Grant(str(artifact_id), str(filename), int(expires))


def load_secret(configured: str, data_dir: Path) -> bytes:
    """CONVERTER_SECRET_KEY, or a random secret kept in the data directory."""
    if configured:
        return configured.encode("utf-8")
    path = data_dir / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32).encode("ascii")
    # Several HTTP workers may get here at once: each writes its own temporary file and
    # links it into place, which fails for all but the first, so they all read one secret.
    tmp = path.with_name(f"secret.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_bytes(secret)
    tmp.chmod(0o600)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes().strip()
