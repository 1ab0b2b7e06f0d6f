"""One-shot conversion: POST /v1/convert answers with the converted bytes."""

from __future__ import annotations

from flask import Blueprint, Response, send_file

from converter.api.context import form_value, principal, services
from converter.api.observe import note
from converter.api.options import ONESHOT_FIELDS, parse_flag, request_options
from converter.api.sources import document_source
from converter.errors import InvalidRequest
from converter.storage import attachment_disposition

bp = Blueprint("convert", __name__, url_prefix="/v1/convert")


@bp.post("")
def convert() -> Response:
    """Convert a multipart ``file`` (or a ``url``) to ``format`` and send the result."""
    who = principal()
    svc = services()
    target = form_value("format")
    options = request_options(ONESHOT_FIELDS)
    store = parse_flag("store", form_value("store"))
    stream, filename, url = document_source()
    oneshot = svc.oneshot
    with oneshot.receive(stream, filename, url) as received:
        if not target:
            valid = svc.matrix.valid_targets(received.format)
            raise InvalidRequest(f"format is required; valid targets for {received.format}: "
                                 f"{', '.join(valid)}", field="format", valid_targets=valid)
        result = oneshot.convert(who, received, target, options, store, form_value("scope"))
    # send_file opens the file at once: the response streams it from that descriptor,
    # so a temporary copy (remote storage) may be unlinked when the context ends.
    with oneshot.local_copy(result.artifact) as path:
        response = send_file(path, mimetype=result.artifact.media_type, max_age=0)
    # Werkzeug appends its own charset to text types; the artifact's type already has one.
    response.headers["Content-Type"] = result.artifact.media_type
    response.headers["Content-Disposition"] = attachment_disposition(result.filename)
    response.headers["X-Converter-Cache"] = "hit" if result.cached else "miss"
    response.headers["X-Converter-Produced-By"] = result.artifact.produced_by
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Converted HTML is untrusted content: never let it run in our origin.
    response.headers["Content-Security-Policy"] = "sandbox; default-src 'none'"
    if result.file_id:
        note(file_id=result.file_id)
        response.headers["X-Converter-File-Id"] = result.file_id
    return response
