"""The HTTP worker serves keep-alive connections in one thread, pipelined or paused alike.

Raw sockets against a served app: requests that follow each other at once, requests
sent together in one packet (pipelined), and a connection left idle long past the
worker's short wait, which must come back from the poller and still be answered.
"""

from __future__ import annotations

import socket
import time

import pytest

from converter.http_worker import NEXT_REQUEST_WAIT_MS
from tests.support.served import ServedApp

pytestmark = pytest.mark.engine


def _request(app: ServedApp) -> bytes:
    return (f"GET /v1/formats HTTP/1.1\r\nHost: 127.0.0.1:{app.port}\r\n"
            f"X-API-Key: {app.key}\r\n\r\n").encode()


def _responses(sock: socket.socket, count: int, timeout: float = 30.0) -> list[bytes]:
    """Read count complete HTTP responses (Content-Length bodies) from sock."""
    sock.settimeout(timeout)
    buffer = b""
    found: list[bytes] = []
    while len(found) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end].decode("latin-1")
            length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n")
                          if line.lower().startswith("content-length:"))
            total = head_end + 4 + length
            if len(buffer) >= total:
                found.append(buffer[:total])
                buffer = buffer[total:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(found)} of {count} responses"
        buffer += chunk
    return found


def test_back_to_back_pipelined_and_paused_requests(service: ServedApp) -> None:
    """One connection: 20 requests in a row, 5 in one packet, then one after a pause."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        for _ in range(20):
            sock.sendall(_request(service))
            [answer] = _responses(sock, 1)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        sock.sendall(_request(service) * 5)
        answers = _responses(sock, 5)
        assert all(a.startswith(b"HTTP/1.1 200") for a in answers), [a[:60] for a in answers]
        # Far past the worker's wait: the connection went back to the poller meanwhile.
        time.sleep(max(0.5, 100 * NEXT_REQUEST_WAIT_MS / 1000))
        sock.sendall(_request(service))
        [late] = _responses(sock, 1)
        assert late.startswith(b"HTTP/1.1 200"), late[:200]
