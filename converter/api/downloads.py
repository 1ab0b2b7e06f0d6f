"""Signed downloads of local artifacts (S3 artifacts are presigned by S3 itself)."""

from __future__ import annotations

from flask import Blueprint, Response, send_file

from converter.api.context import services
from converter.api.observe import note
from converter.errors import NotFound
from converter.storage import attachment_disposition

bp = Blueprint("downloads", __name__, url_prefix="/v1/downloads")


@bp.get("/<token>")
def download(token: str) -> Response:
    """Serve the artifact a valid, unexpired token names; 403 otherwise."""
    svc = services()
    grant = svc.conversions.signer.verify(token)
    artifact = svc.conversions.artifact(grant.artifact_id)
    note(file_id=artifact.file_id)
    path = svc.storage.local_path(artifact.storage_key)
    if path is None or not path.exists():
        raise NotFound("The converted file no longer exists; convert it again")
    response = send_file(path, mimetype=artifact.media_type, conditional=True, etag=True,
                         max_age=0)
    # Werkzeug appends its own charset to text types; the artifact's type already has one.
    response.headers["Content-Type"] = artifact.media_type
    response.headers["Content-Disposition"] = attachment_disposition(grant.filename)
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Converted HTML is untrusted content served from our origin: never let it run.
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response
