"""converter: office documents in, signed download URLs out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(*args: Any, **kwargs: Any) -> Flask:
    """Build the Flask application (see converter.app.create_app)."""
    # Imported lazily: the engine bridge imports this package under LibreOffice's
    # Python and must not pay for (or depend on) Flask.
    from converter.app import create_app as _create_app

    return _create_app(*args, **kwargs)
