"""Per-request helpers shared by the blueprints: services, the caller, the base URL."""

from __future__ import annotations

from typing import Any, cast

from flask import Response, current_app, g, request

from converter.errors import InvalidRequest
from converter.service.idempotency import REPLAYED_HEADER
from converter.service.principal import Principal
from converter.service.ratelimit import headers
from converter.wiring import Services


def services() -> Services:
    """The process's service graph."""
    return cast(Services, current_app.extensions["converter"])


def principal() -> Principal:
    """Authenticate the request (X-API-Key or Authorization: Bearer) and count it."""
    found: Principal | None = getattr(g, "principal", None)
    if found is not None:
        return found
    raw = request.headers.get("X-API-Key")
    if not raw:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        raw = token.strip() if scheme.lower() == "bearer" else None
    svc = services()
    found = svc.keys.authenticate(raw)
    g.principal = found
    if request.endpoint != "runs.create_run":  # runs have their own hourly budget
        g.ratelimit_headers = headers(svc.limiter.hit(found.key_id))
    return found


def base_url() -> str:
    """Where download links should point: CONVERTER_PUBLIC_URL or this request's host."""
    configured = services().config.public_url
    # Built from the parts: request.host_url also converts the URL to an IRI, which
    # cost more than the rest of a cache hit's link.
    return configured or f"{request.scheme}://{request.host}{request.root_path}/"


def form_value(name: str) -> str | None:
    """A form field (multipart or urlencoded) or JSON body value."""
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        value = body.get(name)
        return None if value is None else str(value)
    value = request.form.get(name)
    return value


def json_body() -> Any:
    """The request's JSON body; InvalidRequest when it is not JSON."""
    body = request.get_json(silent=True)
    if body is None:
        raise InvalidRequest("request body must be JSON (Content-Type: application/json)")
    return body


def replayable(response: Response, replayed: bool) -> Response:
    """Mark a response that replays an Idempotency-Key's stored answer."""
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response
