"""Runs the app under gunicorn: one worker process that owns the engine pool, many threads.

Metrics are kept in prometheus-client's multiprocess mode from the start, so they
stay right however many worker processes serve HTTP: the master empties a
directory under CONVERTER_DATA_DIR and exports PROMETHEUS_MULTIPROC_DIR before any
worker imports prometheus_client, and forgets a worker's live gauges when it exits.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from converter import logs
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


def prepare_metrics_dir(data_path: Path) -> Path:
    """Empty CONVERTER_DATA_DIR/metrics and point PROMETHEUS_MULTIPROC_DIR at it."""
    # prometheus-client picks its storage when its first metric is made; workers fork
    # from this process, so metrics made here already would count in memory, per worker.
    if "converter.metrics" in sys.modules:
        raise RuntimeError("converter.metrics was imported before the serve command set "
                           "PROMETHEUS_MULTIPROC_DIR; import it lazily in the master process")
    path = data_path / "metrics"
    # Files left by a previous run would be added to this one's figures.
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path


def _child_exit(_server: Any, worker: Any) -> None:
    from converter import metrics

    metrics.mark_process_dead(worker.pid)


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn configured from Config instead of a config file."""

    def __init__(self, config: Config) -> None:
        self.converter_config = config
        self.application: Flask | None = None
        self.metrics_dir = prepare_metrics_dir(config.data_path)
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
            "logconfig_dict": logs.dict_config(cfg.log_level, logs.resolve(cfg.log_format)),
            "worker_exit": self._worker_exit,
            "child_exit": _child_exit,
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
