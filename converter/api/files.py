"""Files: upload, list, fetch, delete, convert."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from converter.api.context import base_url, form_value, principal, services
from converter.api.observe import note
from converter.api.options import CONVERT_FIELDS, request_options
from converter.api.sources import document_source
from converter.errors import InvalidRequest
from converter.service.files import check_expires_in, check_scope
from converter.service.pagination import parse_limit

bp = Blueprint("files", __name__, url_prefix="/v1/files")


@bp.post("")
def upload() -> tuple[Response, int]:
    """Store an uploaded document (multipart field ``file``)."""
    who = principal()
    svc = services()
    stream, filename, url = document_source()
    scope = check_scope(form_value("scope"))
    expires_in = check_expires_in(form_value("expires_in"))
    with svc.oneshot.receive(stream, filename, url) as received:
        record = svc.files.store(who, received, scope, expires_in)
    note(file_id=record.id)
    return jsonify(record.public()), 201


@bp.get("")
def list_files() -> Response:
    """Files visible to this key, newest first."""
    who = principal()
    page, cursor = services().files.list(who, parse_limit(request.args.get("limit")),
                                         request.args.get("cursor") or None)
    return jsonify({"data": [r.public() for r in page], "next_cursor": cursor})


@bp.get("/<file_id>")
def get_file(file_id: str) -> Response:
    """One file's metadata."""
    return jsonify(services().files.get(principal(), file_id).public())


@bp.delete("/<file_id>")
def delete_file(file_id: str) -> tuple[str, int]:
    """Delete a file and every cached artifact of it."""
    services().files.delete(principal(), file_id)
    return "", 204


@bp.post("/<file_id>/convert")
def convert(file_id: str) -> Response:
    """Convert to ``format``; answers from the cache when it can."""
    who = principal()
    svc = services()
    target = form_value("format")
    options = request_options(CONVERT_FIELDS)
    if not target:
        record = svc.files.get(who, file_id)
        valid = svc.matrix.valid_targets(record.format)
        raise InvalidRequest(f"format is required; valid targets for {record.format}: "
                             f"{', '.join(valid)}", field="format", valid_targets=valid)
    result = svc.conversions.convert_file(who, file_id, target, options)
    record = svc.files.get(who, file_id) if result.record is None else result.record
    artifact = result.artifact
    name = svc.conversions.download_name(record, artifact.format, artifact.media_type)
    link = svc.conversions.link(artifact, name, base_url())
    return jsonify({
        "file_id": file_id,
        "format": artifact.format,
        "media_type": artifact.media_type,
        "download_url": link.url,
        "expires_at": link.expires_at.isoformat().replace("+00:00", "Z"),
        "size_bytes": artifact.size_bytes,
        "cached": result.cached,
        "produced_by": artifact.produced_by,
    })
