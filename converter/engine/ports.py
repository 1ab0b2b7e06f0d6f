"""Loopback ports for an instance's two listeners, held for them until they listen.

Picking a free port by binding to port 0, closing, and handing the number on leaves
a window between the close and the child's own bind in which any outgoing
connection on the host may get that port as its source port; the child's bind then
fails with EADDRINUSE (seen in the test suite: an instance start lost to it, and
LibreOffice, which only logs a failed accept, would have waited out its connect
timeout). A reservation is a socket bound to the port with SO_REUSEADDR and kept
open, never listening: the kernel never gives a bound port to an outgoing
connection, and a child that binds with SO_REUSEADDR too (LibreOffice's acceptor
and the bridge's server both do) still gets it. It is released once the child
listens, whose own socket holds the port from then on.
"""

from __future__ import annotations

import socket


class PortReservation:
    """A loopback TCP port nobody else on the host can take until release()."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]

    def release(self) -> None:
        """Give the port up (idempotent): its listener holds it now, or it is not needed."""
        self._sock.close()
