"""The floor for a cache hit: one SQLite lookup, an HMAC signature, a JSON reply.

It answers the same route as the service's convert call, deployed the way such
an app is deployed when it only does this: ``gunicorn -w <cores>`` sync workers
(one request per process at a time, no threads), the honest floor for the
service's cache hit. Run: ``python -m bench.minimal_app --port P --data DIR``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request
from gunicorn.app.base import BaseApplication

from converter.cpus import available_cpus

FILE_ID = "file_minimal"
SECRET = b"minimal-app-benchmark-secret-key"


def cache_key(file_id: str, target: str) -> str:
    """The same kind of key the service derives for (file, target format)."""
    return hashlib.sha256(f"{file_id}:{target}".encode()).hexdigest()


def prepare_db(path: Path) -> None:
    """Create the one-table database with one cached artifact for FILE_ID as pdf."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS artifacts (cache_key TEXT PRIMARY KEY, "
                     "id TEXT, filename TEXT, size_bytes INTEGER)")
        conn.execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)",
                     (cache_key(FILE_ID, "pdf"), "art_minimal", "document.pdf", 12345))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def create_app(db_path: Path) -> Flask:
    """The minimal app: POST /v1/files/<id>/convert answers from SQLite, signed."""
    app = Flask("minimal", static_folder=None)
    local = threading.local()

    def db() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(db_path, check_same_thread=False)
            local.conn = conn
        return conn

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True})

    @app.post("/v1/files/<file_id>/convert")
    def convert(file_id: str) -> Any:
        if not request.headers.get("X-API-Key"):
            return jsonify({"error": {"type": "unauthorized"}}), 401
        target = request.form.get("format", "")
        row = db().execute("SELECT id, filename, size_bytes FROM artifacts WHERE cache_key = ?",
                           (cache_key(file_id, target),)).fetchone()
        if row is None:
            return jsonify({"error": {"type": "not_found"}}), 404
        expires = int(time.time()) + 3600
        payload = json.dumps([row[0], row[1], expires], separators=(",", ":")).encode()
        token = f"{_b64(payload)}.{_b64(hmac.new(SECRET, payload, hashlib.sha256).digest())}"
        return jsonify({"file_id": file_id, "format": target,
                        "download_url": f"{request.host_url}v1/downloads/{token}",
                        "expires_at": expires, "size_bytes": row[2], "cached": True})

    return app


class MinimalServer(BaseApplication):  # type: ignore[misc]
    """gunicorn with one sync worker per CPU, serving the minimal app."""

    def __init__(self, port: int, app: Flask, workers: int) -> None:
        self.port = port
        self.minimal_app = app
        self.workers = workers
        super().__init__()

    def load_config(self) -> None:
        """``gunicorn -w <cores> -k sync -b 127.0.0.1:port``, quiet."""
        for key, value in {"bind": f"127.0.0.1:{self.port}", "workers": self.workers,
                           "worker_class": "sync", "backlog": 2048, "accesslog": None,
                           "errorlog": "-", "loglevel": "warning",
                           "control_socket_disable": True}.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """The prebuilt minimal app."""
        return self.minimal_app


def main(argv: list[str] | None = None) -> int:
    """Serve the minimal app on 127.0.0.1:port."""
    parser = argparse.ArgumentParser("bench.minimal_app")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=0, help="sync workers (default: CPUs)")
    args = parser.parse_args(argv)
    args.data.mkdir(parents=True, exist_ok=True)
    db_path = args.data / "minimal.db"
    prepare_db(db_path)
    MinimalServer(args.port, create_app(db_path), args.workers or available_cpus()).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
