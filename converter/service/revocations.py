"""Key revocations from other hosts, heard through PostgreSQL LISTEN/NOTIFY.

The marker file in the data directory tells every process on the revoking host at
once (see keys.py). Replicas elsewhere share only the database: ``KeyStore.revoke``
sends ``NOTIFY`` in its transaction, and this listener clears the verified-key cache
when one arrives, milliseconds after the commit instead of up to VERIFIED_TTL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from sqlalchemy import URL

from converter.service.keys import CHANNEL

logger = logging.getLogger("converter.keys")


def conninfo(url: URL) -> str:
    """A libpq URI for psycopg from a SQLAlchemy URL (postgresql or postgresql+psycopg)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class RevocationListener:
    """A thread that calls ``on_revoked`` for each revocation NOTIFY (and after reconnects)."""

    def __init__(self, url: URL, on_revoked: Callable[[], None]) -> None:
        self.conninfo = conninfo(url)
        self.on_revoked = on_revoked
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread = threading.Thread(target=self._run, name="key-revocations", daemon=True)

    def start(self) -> None:
        """Start listening in the background."""
        self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        """True once LISTEN is in place (tests and start-up checks)."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        """Stop the thread and close its connection."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    # Revocations sent while nobody listened are lost: forget every
                    # cached key once, then follow the notifications.
                    self.on_revoked()
                    self._listening.set()
                    delay = 1.0
                    while not self._stop.is_set():
                        for _notice in conn.notifies(timeout=0.5):
                            self.on_revoked()
            except psycopg.Error as exc:
                self._listening.clear()
                logger.warning("key revocation listener lost PostgreSQL (%s); reconnecting in "
                               "%.0fs; until then other hosts' revocations take up to 5 s",
                               exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
