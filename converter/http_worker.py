"""The gunicorn classes `converter serve` plugs in: its worker and its logger.

gthread hands every request of a keep-alive connection from the worker's main
thread (which polls the sockets) to a pool thread and back: a pool submit, a
wake-up through a pipe and a poller registration per request, each changing
threads under the GIL. On a cache hit that was a third of the worker's CPU.
KeepAliveThreadWorker lets the pool thread serve the connection's next request
itself when it arrives within NEXT_REQUEST_WAIT, as a busy client's does, and
gives the connection back to the poller otherwise, so idle connections still
cost no thread.
"""

from __future__ import annotations

import select
from typing import Any

from gunicorn.glogging import Logger
from gunicorn.workers.gthread import ThreadWorker

# Long enough for a client that sends its next request as soon as it has read the
# answer (well under a millisecond on a LAN); short enough that a thread waiting in
# vain is back in the pool before anyone needs it.
NEXT_REQUEST_WAIT_MS = 2


class KeepAliveThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread that keeps serving a connection in its thread while requests keep coming."""

    def handle(self, conn: Any) -> Any:
        """Serve the request that woke the connection, then any that follow at once."""
        keepalive = super().handle(conn)
        while keepalive is True and self.alive and not conn.is_http2 and _next_request(conn):
            keepalive = super().handle(conn)
        return keepalive


def _next_request(conn: Any) -> bool:
    """Whether the connection's next request is already buffered or arrives very soon."""
    if conn.parser.unreader.buf.getvalue():
        return True
    poller = select.poll()
    poller.register(conn.sock, select.POLLIN)
    return bool(poller.poll(NEXT_REQUEST_WAIT_MS))


class QuietAccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger without its access log: the app writes one line per request.

    gunicorn builds an access record for every request whenever a logging config is
    given, even with no access log configured; the app's own line (converter.http)
    already says more, so that work is skipped.
    """

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Nothing: see the class docstring."""
        return None
