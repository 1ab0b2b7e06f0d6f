"""The API's description at /openapi.json, and Swagger UI rendering it at /docs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from flask import Blueprint, Response, current_app, jsonify, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from converter.api import openapi
from converter.api.context import services
from converter.api.page_headers import harden

DOCS = Path(__file__).resolve().parents[1] / "web" / "docs"
# Swagger UI's own files, shipped by the swagger-ui-bundle package (no CDN).
ASSETS = Path(str(swagger_ui_path))

bp = Blueprint("docs", __name__)

# Swagger UI sets style attributes on its elements (hence 'unsafe-inline' for styles only)
# and draws icons from data: URLs; scripts and requests stay on this origin.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; "
        "frame-ancestors 'none'")


def description() -> dict[str, Any]:
    """The complete description for this app's matrix (built once per app)."""
    cached = current_app.extensions.get("converter.openapi")
    if cached is None:
        cached = openapi.build(services().matrix)
        current_app.extensions["converter.openapi"] = cached
    return cast(dict[str, Any], cached)


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3.1 description of every route."""
    return jsonify(description())


@bp.get("/docs")
def docs() -> Response:
    """Swagger UI on /openapi.json."""
    return send_from_directory(DOCS, "index.html")


@bp.get("/docs/init.js")
def docs_init() -> Response:
    """The script that starts Swagger UI (a file, since the CSP forbids inline scripts)."""
    return send_from_directory(DOCS, "init.js")


@bp.get("/docs/assets/<path:asset>")
def docs_asset(asset: str) -> Response:
    """One of Swagger UI's files from the swagger-ui-bundle package."""
    return send_from_directory(ASSETS, asset)


@bp.after_request
def _harden(response: Response) -> Response:
    return harden(response, _CSP)
