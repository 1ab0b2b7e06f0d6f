"""Files: upload, list, fetch, delete, convert."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request

from converter.api.context import base_url, form_value, principal, services
from converter.api.observe import note
from converter.errors import InvalidRequest
from converter.service.pagination import parse_limit

bp = Blueprint("files", __name__, url_prefix="/v1/files")


@bp.post("")
def upload() -> tuple[Response, int]:
    """Store an uploaded document (multipart field ``file``)."""
    who = principal()
    upload = request.files.get("file")
    if upload is None:
        raise InvalidRequest("file is required: send the document as multipart/form-data "
                             "field 'file'", field="file")
    record = services().files.upload(who, upload.filename, upload.stream,
                                     request.form.get("scope"))
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


def parse_options(raw: Any) -> dict[str, Any]:
    """Options as a JSON object (or a JSON-encoded string of one, from a form)."""
    if raw in (None, ""):
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise InvalidRequest("options must be a JSON object", field="options") from None
    if not isinstance(raw, dict):
        raise InvalidRequest("options must be a JSON object", field="options")
    return raw


@bp.post("/<file_id>/convert")
def convert(file_id: str) -> Response:
    """Convert to ``format``; answers from the cache when it can."""
    who = principal()
    svc = services()
    target = form_value("format")
    if request.is_json:
        body = request.get_json(silent=True) or {}
        options = parse_options(body.get("options"))
    else:
        options = parse_options(request.form.get("options"))
    if not target:
        record = svc.files.get(who, file_id)
        valid = svc.matrix.valid_targets(record.format)
        raise InvalidRequest(f"format is required; valid targets for {record.format}: "
                             f"{', '.join(valid)}", field="format", valid_targets=valid)
    result = svc.conversions.convert_file(who, file_id, target, options)
    name = svc.conversions.download_name(result.record, result.artifact.format)
    link = svc.conversions.link(result.artifact, name, base_url())
    return jsonify({
        "file_id": file_id,
        "format": result.artifact.format,
        "download_url": link.url,
        "expires_at": link.expires_at.isoformat().replace("+00:00", "Z"),
        "size_bytes": result.artifact.size_bytes,
        "cached": result.cached,
    })
