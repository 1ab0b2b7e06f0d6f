"""Uploads by owners of their own, so identical bytes are each real work for the engine.

The content cache converts the same bytes of one owner once; tests that need every
upload to reach LibreOffice (queues, recycling, fairness) give each one a new user.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from converter.db.engine import connect
from converter.service.keys import KeyStore
from tests.support.served import ServedApp


def uploads_by_new_owners(app: ServedApp, path: Path, workspace: str, count: int,
                          ) -> list[tuple[str, str]]:
    """count uploads of one document as (file id, API key), each by a user of its own."""
    store = KeyStore(connect(f"sqlite:///{app.data_dir / 'converter.db'}"), app.data_dir)
    try:
        keys = [store.create(workspace, f"user-{secrets.token_hex(4)}")[1]
                for _ in range(count)]
    finally:
        store.db.dispose()
    return [(app.upload_ok(path, key=key)["id"], key) for key in keys]
