"""Connectors: create, list, fetch, update, delete, test and browse (per workspace)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from converter.api.context import json_body, principal, replayable, services
from converter.service.idempotency import HEADER, validate_key
from converter.service.pagination import parse_limit

bp = Blueprint("connectors", __name__, url_prefix="/v1/connectors")


@bp.post("")
def create_connector() -> tuple[Response, int]:
    """Store a connector (its credentials encrypted); 201 with it, credentials masked."""
    who = principal()
    key = validate_key(request.headers.get(HEADER))
    body, replayed = services().connectors.create(who, json_body(), key)
    return replayable(jsonify(body), replayed), 201


@bp.get("")
def list_connectors() -> Response:
    """The workspace's connectors, newest first."""
    page, cursor = services().connectors.list(principal(),
                                              parse_limit(request.args.get("limit")),
                                              request.args.get("cursor") or None)
    return jsonify({"data": page, "next_cursor": cursor})


@bp.get("/<connector_id>")
def get_connector(connector_id: str) -> Response:
    """One connector."""
    return jsonify(services().connectors.get(principal(), connector_id))


@bp.patch("/<connector_id>")
def update_connector(connector_id: str) -> Response:
    """Change a connector's name, fields or credentials."""
    return jsonify(services().connectors.update(principal(), connector_id, json_body()))


@bp.delete("/<connector_id>")
def delete_connector(connector_id: str) -> tuple[str, int]:
    """Remove a connector: 204."""
    services().connectors.delete(principal(), connector_id)
    return "", 204


@bp.post("/<connector_id>/test")
def test_connector(connector_id: str) -> Response:
    """Write and delete a probe object; 400 with the provider's reason when that fails."""
    return jsonify(services().connectors.test(principal(), connector_id))


@bp.get("/<connector_id>/browse")
def browse_connector(connector_id: str) -> Response:
    """One page of the folders and files at ?path= (the root when absent)."""
    return jsonify(services().connectors.browse(
        principal(), connector_id, request.args.get("path"),
        request.args.get("cursor") or None, parse_limit(request.args.get("limit"))))
