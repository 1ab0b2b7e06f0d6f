"""The HTTP server: gunicorn with CONVERTER_HTTP_WORKERS processes of many threads each.

`converter serve` (converter/supervisor.py) runs this as a child, ``python -m
converter.server``, with CONVERTER_ENGINE_URL pointing at the engine process it
started and PROMETHEUS_MULTIPROC_DIR already prepared, so every worker is a
plain client of one shared engine. Nothing here starts threads before gunicorn
forks its workers: each worker builds the app (database, run workers, cleanup
loop) after the fork, in ``load``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from converter import config as config_module
from converter import logs
from converter.config import Config

logger = logging.getLogger("converter")

# Seconds beyond CONVERTER_SHUTDOWN_GRACE a worker gets to hand unfinished runs back
# and close its connections before gunicorn's master kills it.
EXIT_MARGIN = 5


def _child_exit(_server: Any, worker: Any) -> None:
    from converter import metrics

    metrics.mark_process_dead(worker.pid)


def _heartbeat_dir() -> str | None:
    """Where gunicorn's workers keep their heartbeat file: /dev/shm when there is one.

    A worker touches that file (utime) on every turn of its event loop, at least once
    per request. On a disk-backed /tmp each touch dirties an inode in the journal: it
    was a fifth of a worker's busy time on a cache hit. In memory it costs nothing.
    """
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn configured from Config instead of a config file."""

    def __init__(self, config: Config) -> None:
        self.converter_config = config
        self.application: Flask | None = None
        super().__init__()

    def load_config(self) -> None:
        """Map Config onto gunicorn settings."""
        cfg = self.converter_config
        settings: dict[str, Any] = {
            "bind": f"{cfg.host}:{cfg.port}",
            "workers": cfg.http_workers,
            "worker_class": "converter.http_worker.KeepAliveThreadWorker",
            "logger_class": "converter.http_worker.QuietAccessLogger",
            "threads": cfg.http_threads,
            "timeout": 0 if cfg.conversion_timeout > 600 else int(cfg.conversion_timeout) + 60,
            # Requests in flight get the grace; then the worker's exit hook hands back
            # unfinished runs, within the margin.
            "graceful_timeout": int(cfg.shutdown_grace) + EXIT_MARGIN,
            "keepalive": 5,
            "backlog": 2048,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": cfg.log_level.lower(),
            "logconfig_dict": logs.dict_config(cfg.log_level, logs.resolve(cfg.log_format)),
            "worker_exit": self._worker_exit,
            "child_exit": _child_exit,
            "post_worker_init": self._post_worker_init,
            # Several services (tests, sidecars) may share a host; none needs the socket.
            "control_socket_disable": True,
            "worker_tmp_dir": _heartbeat_dir(),
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """Build the app inside the worker process (after fork)."""
        from converter.app import create_app

        self.application = create_app(self.converter_config)
        return self.application

    def _post_worker_init(self, _worker: Any) -> None:
        """On SIGTERM, stop claiming runs at once, while requests in flight finish."""
        previous = signal.getsignal(signal.SIGTERM)
        grace = self.converter_config.shutdown_grace

        def on_term(signum: int, frame: FrameType | None) -> None:
            if self.application is not None:
                self.application.extensions["converter"].begin_shutdown(
                    time.monotonic() + grace)
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_term)

    def _worker_exit(self, _server: Any, _worker: Any) -> None:
        if self.application is not None:
            self.application.extensions["converter"].close()


def main() -> int:
    """``python -m converter.server``: serve HTTP with the configuration from the environment."""
    cfg = config_module.load()
    logs.configure(cfg.log_level, cfg.log_format)
    GunicornServer(cfg).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
