"""Automations (watched folders): create, list, fetch, change, delete, and their history."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from converter.api.context import principal, replayable, services
from converter.errors import InvalidRequest
from converter.service import automation_history
from converter.service.automations import AutomationService
from converter.service.idempotency import HEADER, validate_key
from converter.service.pagination import parse_limit

bp = Blueprint("automations", __name__, url_prefix="/v1/automations")


def _service() -> AutomationService:
    found: AutomationService = services().extras["automations"]
    return found


def _json_body() -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidRequest("request body must be JSON (Content-Type: application/json)")
    return body


@bp.post("")
def create_automation() -> tuple[Response, int]:
    """Watch a connector path and deliver conversions of what appears there."""
    who = principal()
    key = validate_key(request.headers.get(HEADER))
    created, replayed = _service().create(who, _json_body(), key)
    return replayable(jsonify(created), replayed), 201


@bp.get("")
def list_automations() -> Response:
    """The workspace's automations, newest first."""
    page, cursor = _service().list(principal(), parse_limit(request.args.get("limit")),
                                   request.args.get("cursor") or None)
    return jsonify({"data": [a.public() for a in page], "next_cursor": cursor})


@bp.get("/<automation_id>")
def get_automation(automation_id: str) -> Response:
    """One automation."""
    return jsonify(_service().get(principal(), automation_id).public())


@bp.patch("/<automation_id>")
def update_automation(automation_id: str) -> Response:
    """Change some of an automation's fields."""
    return jsonify(_service().update(principal(), automation_id, _json_body()).public())


@bp.delete("/<automation_id>")
def delete_automation(automation_id: str) -> tuple[str, int]:
    """Stop and remove an automation and its history (delivered files stay)."""
    _service().delete(principal(), automation_id)
    return "", 204


@bp.get("/<automation_id>/events")
def automation_events(automation_id: str) -> Response:
    """The automation's history, newest first: seen, converted, delivered, failed."""
    service = _service()
    found = service.get(principal(), automation_id)
    page, cursor = automation_history.page(
        service.db, found.id, request.args.get("kind") or None,
        parse_limit(request.args.get("limit")), request.args.get("cursor") or None)
    return jsonify({"data": page, "next_cursor": cursor})
