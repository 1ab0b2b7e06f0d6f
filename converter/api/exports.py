"""Exports (convert, deliver to a connector, download) and the workspace's export defaults."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from converter.api.context import base_url, json_body, principal, services
from converter.api.observe import note
from converter.service.idempotency import HEADER, validate_key
from converter.service.pagination import parse_limit

bp = Blueprint("exports", __name__, url_prefix="/v1")


@bp.post("/exports")
def create_export() -> tuple[Response, int]:
    """Queue an export; 202 with it (replayed for a repeated Idempotency-Key)."""
    who = principal()
    key = validate_key(request.headers.get(HEADER))
    accepted = services().exports.create(who, json_body(), key, base_url())
    note(export_id=str(accepted.body.get("id")))
    response = jsonify(accepted.body)
    for name, value in accepted.headers.items():
        response.headers[name] = value
    return response, accepted.status_code


@bp.get("/exports/<export_id>")
def get_export(export_id: str) -> Response:
    """One export: its status, and its download URL and delivery once completed."""
    return jsonify(services().exports.get(principal(), export_id, base_url()))


@bp.get("/exports")
def list_exports() -> Response:
    """Exports visible to this key, newest first."""
    page, cursor = services().exports.list(
        principal(), request.args.get("status") or None,
        parse_limit(request.args.get("limit")), request.args.get("cursor") or None,
        base_url())
    return jsonify({"data": page, "next_cursor": cursor})


@bp.get("/export-defaults")
def get_export_defaults() -> Response:
    """The workspace's default export destination."""
    return jsonify(services().export_defaults.render(principal()))


@bp.put("/export-defaults")
def put_export_defaults() -> Response:
    """Set (or, with a null connector, clear) the workspace's default destination."""
    return jsonify(services().export_defaults.put(principal(), json_body()))
