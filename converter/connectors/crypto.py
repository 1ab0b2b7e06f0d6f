"""Connector credentials at rest: Fernet under a key derived from the service secret.

The key is HKDF-SHA256 of CONVERTER_SECRET_KEY (or the generated secret kept in
the data directory) with a purpose label, so it is never the same key that
signs download links and webhooks, and replicas sharing the secret can read
each other's connectors.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from converter.errors import ConnectorFailed

_PURPOSE = b"converter connector credentials v1"


class CredentialBox:
    """Encrypts and decrypts a connector's credentials (a dict of strings)."""

    def __init__(self, secret: bytes) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(secret)
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def seal(self, credentials: dict[str, str]) -> str:
        """The credentials as a Fernet token (authenticated, timestamped ciphertext)."""
        plain = json.dumps(credentials, sort_keys=True, separators=(",", ":"))
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def open(self, token: str | None) -> dict[str, str]:
        """The credentials sealed in token ({} for none); ConnectorFailed if unreadable."""
        if not token:
            return {}
        try:
            value: Any = json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, ValueError):
            raise ConnectorFailed(
                "this connector's credentials cannot be decrypted: CONVERTER_SECRET_KEY "
                "changed since they were saved; set them again with PATCH "
                "/v1/connectors/{id}", field="credentials") from None
        return {str(k): str(v) for k, v in dict(value).items()}
