"""The conversion matrix, as clients see it."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from converter.api.context import services

bp = Blueprint("formats", __name__, url_prefix="/v1/formats")


@bp.get("")
def list_formats() -> Response:
    """Every source format and the targets (with options) it converts to."""
    return jsonify({"sources": services().matrix.describe()})
