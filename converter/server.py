"""Runs the app under gunicorn: one worker process that owns the engine pool, many threads."""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from converter.config import Config

logger = logging.getLogger("converter")


def _announce_when_ready(app: Flask, config: Config) -> None:
    services = app.extensions["converter"]
    engine = services.engine
    try:
        engine.wait_ready(300)
    except Exception as exc:  # reported, not raised: /readyz keeps saying why
        logger.error("engine failed to start: %s", exc)
        return
    logger.info("ready: http://%s:%d (engine: %d instances)", config.host, config.port,
                len(getattr(engine, "instances", [])))


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn configured from Config instead of a config file."""

    def __init__(self, config: Config) -> None:
        self.converter_config = config
        self.application: Flask | None = None
        super().__init__()

    def load_config(self) -> None:
        """Map Config onto gunicorn settings."""
        cfg = self.converter_config
        # One worker process: the engine pool, the single-flight table and the run
        # workers live in it; threads give concurrency, LibreOffice gives parallelism.
        settings: dict[str, Any] = {
            "bind": f"{cfg.host}:{cfg.port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": cfg.http_threads,
            "timeout": 0 if cfg.conversion_timeout > 600 else int(cfg.conversion_timeout) + 60,
            "graceful_timeout": int(min(cfg.conversion_timeout, 60)) + 5,
            "keepalive": 5,
            "backlog": 2048,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": cfg.log_level.lower(),
            "worker_exit": self._worker_exit,
            "post_worker_init": self._post_worker_init,
            # Several services (tests, sidecars) may share a host; none needs the socket.
            "control_socket_disable": True,
        }
        for key, value in settings.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """Build the app inside the worker process (after fork), starting the engine."""
        from converter.app import create_app

        self.application = create_app(self.converter_config)
        return self.application

    def _post_worker_init(self, _worker: Any) -> None:
        if self.application is not None:
            threading.Thread(target=_announce_when_ready,
                             args=(self.application, self.converter_config),
                             daemon=True).start()

    def _worker_exit(self, _server: Any, _worker: Any) -> None:
        if self.application is not None:
            self.application.extensions["converter"].close()
