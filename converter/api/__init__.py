"""HTTP layer: blueprints with thin handlers, and the one error mapping."""

from __future__ import annotations

from flask import Flask

from converter.api import (
    automations,
    connectors,
    convert,
    docs,
    downloads,
    errors,
    exports,
    files,
    formats,
    health,
    observe,
    runs,
    web,
)


def register(app: Flask) -> None:
    """Attach every blueprint and the error handlers."""
    errors.init_app(app)
    observe.init_app(app)
    for module in (files, convert, formats, downloads, health, runs, connectors, exports,
                   automations, web, docs):
        app.register_blueprint(module.bp)
