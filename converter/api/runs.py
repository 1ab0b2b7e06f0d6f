"""Async runs: create, poll, list, re-export; and the workspace's webhook signing secret."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from converter.api.context import base_url, json_body, principal, services
from converter.api.observe import note
from converter.service.idempotency import HEADER, validate_key
from converter.service.pagination import parse_limit
from converter.service.runs import Accepted
from converter.service.webhook_signing import SIGNATURE_HEADER

bp = Blueprint("runs", __name__, url_prefix="/v1")


def _respond(accepted: Accepted) -> tuple[Response, int]:
    response = jsonify(accepted.body)
    for name, value in accepted.headers.items():
        response.headers[name] = value
    return response, accepted.status_code


@bp.post("/runs")
def create_run() -> tuple[Response, int]:
    """Queue a conversion; 202 with the run id (replayed for a repeated Idempotency-Key)."""
    who = principal()
    key = validate_key(request.headers.get(HEADER))
    body = json_body()
    accepted = services().runs.create(who, body, key, base_url())
    # Only once the run exists is body's file_id known to be a real, visible file.
    note(run_id=str(accepted.body.get("run_id")), file_id=str(body["file_id"]))
    return _respond(accepted)


@bp.get("/runs/<run_id>")
def get_run(run_id: str) -> Response:
    """A run's status, and its signed download_url once completed."""
    return jsonify(services().runs.get(principal(), run_id, base_url()))


@bp.get("/runs")
def list_runs() -> Response:
    """Runs visible to this key, newest first."""
    who = principal()
    page, cursor = services().runs.list(
        who, request.args.get("status") or None, request.args.get("file_id") or None,
        parse_limit(request.args.get("limit")), request.args.get("cursor") or None,
        base_url())
    return jsonify({"data": page, "next_cursor": cursor})


@bp.post("/runs/<run_id>/export")
def export_run(run_id: str) -> tuple[Response, int]:
    """Convert a completed run's output to another format."""
    who = principal()
    key = validate_key(request.headers.get(HEADER))
    return _respond(services().runs.export(who, run_id, json_body(), key, base_url()))


@bp.get("/webhooks/secret")
def webhook_secret() -> Response:
    """The workspace's webhook signing secret and how to check a signature with it."""
    who = principal()
    return jsonify({
        "workspace": who.workspace,
        "secret": services().runs.webhook_secret(who.workspace),
        "signature_header": SIGNATURE_HEADER,
        "scheme": "Standard Webhooks: webhook-signature is v1,<base64 HMAC-SHA256 of "
                  "'<webhook-id>.<webhook-timestamp>.<raw body>'>, keyed with the base64-"
                  "decoded part of the secret after whsec_",
    })
