"""The page for people at /: static HTML, CSS and JavaScript that call the public API."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

from converter.api.page_headers import harden

STATIC = Path(__file__).resolve().parents[1] / "web" / "static"

bp = Blueprint("web", __name__, static_folder=str(STATIC), static_url_path="/web")

# Only our own files may run, load or be fetched from the page; the API lives on the same
# origin and download links are plain navigations, so nothing else is needed.
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")


@bp.get("/")
def index() -> Response:
    """The upload-convert-download page."""
    return send_from_directory(STATIC, "index.html")


@bp.after_request
def _harden(response: Response) -> Response:
    return harden(response, _CSP)
