"""Per-request observation: one log line and the HTTP metrics for every request.

Routes are named by their template (``/v1/files/<file_id>``), never by the raw
path: paths carry ids and download tokens, which would be unbounded label values
and, for tokens, credentials in the logs.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from converter import metrics
from converter.api.errors import request_id

logger = logging.getLogger("converter.http")
UNMATCHED = "<unmatched>"


def note(**fields: str) -> None:
    """Add ids this request concerns (file_id, run_id) to its log line."""
    noted: dict[str, str] = getattr(g, "log_fields", None) or {}
    noted.update(fields)
    g.log_fields = noted


def route() -> str:
    """This request's route template, or <unmatched> when no route matched."""
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


def _start() -> None:
    g.started = time.perf_counter()
    request_id()  # fixed now so the log line and the X-Request-ID header agree


def _finish(response: Response) -> Response:
    elapsed = time.perf_counter() - getattr(g, "started", time.perf_counter())
    template = route()
    metrics.HTTP_REQUESTS.labels(route=template, method=request.method,
                                 status=str(response.status_code)).inc()
    metrics.HTTP_SECONDS.labels(route=template, method=request.method).observe(elapsed)
    fields: dict[str, str | int | float | None] = {
        "request_id": request_id(),
        "method": request.method,
        "route": template,
        "status": response.status_code,
        "duration_ms": round(elapsed * 1000, 2),
    }
    principal = getattr(g, "principal", None)
    if principal is not None:
        fields["key_id"] = principal.key_id  # the key's id; the key itself is never logged
    view_args = request.view_args or {}
    for name in ("file_id", "run_id"):
        if name in view_args:
            fields[name] = str(view_args[name])
    fields.update(getattr(g, "log_fields", None) or {})
    logger.info("%s %s %d %.1fms", request.method, template, response.status_code,
                elapsed * 1000, extra=fields)
    return response


def init_app(app: Flask) -> None:
    """Register the request hooks on app."""
    app.before_request(_start)
    app.after_request(_finish)
