"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from converter import metrics
from converter.api.context import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive and serving HTTP."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready only when every engine instance answers, database and storage are reachable
    and the disk has CONVERTER_MIN_FREE_MB free."""
    svc = services()
    checks: dict[str, Any] = {}
    try:
        with svc.db.connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # a probe reports every failure instead of raising
        checks["database"] = f"error: {exc.__class__.__name__} (check CONVERTER_DATABASE_URL)"
    try:
        svc.storage.check()
        checks["storage"] = "ok"
    except Exception as exc:  # same: the probe's job is to describe, not to fail
        checks["storage"] = f"error: {exc}"
    # Below CONVERTER_MIN_FREE_MB uploads and conversions are refused: not ready either.
    short = svc.disk.shortage()
    checks["disk"] = f"error: {short}" if short else "ok"
    # Fresh, not the status cached for up to a quarter second: each HTTP worker keeps its
    # own, so a cached one could say "starting" just after another worker said ready,
    # or "ready" just after an instance died. A probe is rare; one call is cheap.
    stats = engine_stats(fresh=True)
    ready_instances = sum(1 for i in stats.get("instances", [])
                          if i["state"] in ("idle", "busy", "draining"))
    checks["engine"] = "ok" if stats.get("ready") else stats.get("error") or (
        f"starting: {ready_instances}/{stats.get('size', 0)} instances ready")
    ok = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ok else "not_ready", "checks": checks}), (
        200 if ok else 503)


def engine_stats(fresh: bool = False) -> dict[str, Any]:
    """The engine's counters, or a minimal shape for engines without stats."""
    stats = getattr(services().engine, "stats", None)
    return stats(fresh=fresh) if stats is not None else {"ready": True, "size": 0,
                                                         "instances": []}


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    """Prometheus text exposition, added up over every worker process."""
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
