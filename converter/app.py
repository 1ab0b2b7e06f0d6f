"""The Flask app factory: wiring only."""

from __future__ import annotations

from typing import Any

from flask import Flask

from converter import config as config_module
from converter import cpu_gate, logs
from converter.api import register
from converter.config import Config
from converter.wiring import Services, build


def create_app(config: Config | None = None, *, services: Services | None = None,
               engine: Any = None, start_engine: bool = True) -> Flask:
    """Create the application; builds the services unless given."""
    config = config or (services.config if services else config_module.load())
    logs.configure(config.log_level, config.log_format)
    app = Flask("converter", static_folder=None)
    # Werkzeug rejects larger bodies before parsing them; the multipart envelope
    # gets some room above the file limit itself, which FileService enforces exactly.
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes + 1024 * 1024
    app.config["MAX_FORM_MEMORY_SIZE"] = 1024 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["converter"] = services or build(config, engine=engine,
                                                    start_engine=start_engine)
    register(app)
    # Bounds the request threads running Python at once (converter/cpu_gate.py).
    app.wsgi_app = cpu_gate.GateMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app
