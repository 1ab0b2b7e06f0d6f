"""A real HTTP(S) server on a loopback address whose answers each test scripts."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import socket
from typing import Any

Route = Callable[[BaseHTTPRequestHandler], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    origin: Origin

    def get_request(self) -> tuple[socket, Any]:
        # Counted at accept(): a client that connects and gives up is still seen.
        conn, addr = super().get_request()
        with self.origin.lock:
            self.origin.connections += 1
        return conn, addr


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        """Record the request, then answer with the route for its path (404 if none)."""
        origin = self.server.origin
        path = self.path.split("?", 1)[0]
        with origin.lock:
            origin.requests.append((self.path, dict(self.headers.items())))
        route = origin.routes.get(path)
        if route is None:
            self.send_error(404, "no such route")
            return
        route(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Requests are recorded in Origin.requests instead."""


class Origin:
    """Serves routes on host (127.0.0.1 unless told), optionally over TLS."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.lock = threading.Lock()
        self.routes: dict[str, Route] = {}
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.server_names: list[str | None] = []  # SNI names seen in TLS handshakes
        self.release = threading.Event()  # routes that stall wait on it until close()
        self._server = _Server((host, 0), _Handler)
        self._server.origin = self
        if tls is not None:
            tls.sni_callback = self._sni
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def _sni(self, _conn: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
        with self.lock:
            self.server_names.append(name)

    def paths(self) -> list[str]:
        """Request paths (with query) in arrival order."""
        with self.lock:
            return [path for path, _ in self.requests]

    def close(self) -> None:
        """Release stalled routes and stop serving."""
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


def send(handler: BaseHTTPRequestHandler, body: bytes, status: int = 200,
         headers: dict[str, str] | None = None) -> None:
    """Answer with body and a Content-Length."""
    handler.send_response(status)
    for name, value in {"Content-Type": "application/octet-stream", **(headers or {})}.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        handler.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client stopped reading: some tests are about exactly that
