"""``python -m tests.support.multiworker``: the real gunicorn server with two HTTP workers.

The serve command runs one worker today; this runs the same GunicornServer (same
metrics directory, hooks and logging) with two, to show the metrics add up across
processes. The engine pool is built but not started: two pools would share one
data directory, and nothing here needs LibreOffice.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from converter import config
from converter.server import GunicornServer


class TwoWorkers(GunicornServer):
    """GunicornServer with two worker processes and an idle engine."""

    def load_config(self) -> None:
        """The usual settings, with two workers."""
        super().load_config()
        self.cfg.set("workers", 2)

    def load(self) -> Flask:
        """The real app, without starting LibreOffice."""
        from converter.app import create_app

        self.application = create_app(self.converter_config, start_engine=False)
        return self.application

    def _post_worker_init(self, _worker: Any) -> None:
        """No engine to wait for."""


if __name__ == "__main__":
    TwoWorkers(config.load()).run()
