"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from converter.api.context import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """The process is alive and serving HTTP."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Ready only when every engine instance answers and database and storage are reachable."""
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
    stats = engine_stats()
    ready_instances = sum(1 for i in stats.get("instances", [])
                          if i["state"] in ("idle", "busy", "draining"))
    checks["engine"] = "ok" if stats.get("ready") else (
        f"starting: {ready_instances}/{stats.get('size', 0)} instances ready")
    ok = all(v == "ok" for v in checks.values())
    return jsonify({"status": "ready" if ok else "not_ready", "checks": checks}), (
        200 if ok else 503)


def engine_stats() -> dict[str, Any]:
    """The engine's counters, or a minimal shape for engines without stats."""
    stats = getattr(services().engine, "stats", None)
    return stats() if stats is not None else {"ready": True, "size": 0, "instances": []}


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text exposition of engine and cache counters."""
    svc = services()
    stats = engine_stats()
    lines = [
        "# TYPE converter_engine_instances gauge",
        f"converter_engine_instances {stats.get('size', 0)}",
        "# TYPE converter_engine_busy gauge",
        f"converter_engine_busy {stats.get('busy', 0)}",
        "# TYPE converter_engine_busy_max gauge",
        f"converter_engine_busy_max {stats.get('busy_max', 0)}",
        "# TYPE converter_engine_waiting gauge",
        f"converter_engine_waiting {stats.get('waiting', 0)}",
        "# TYPE converter_engine_conversions_total counter",
        f"converter_engine_conversions_total {stats.get('conversions_total', 0)}",
        "# TYPE converter_engine_calls_total counter",
        f"converter_engine_calls_total {svc.conversions.engine_calls}",
        "# TYPE converter_cache_hits_total counter",
        f"converter_cache_hits_total {svc.conversions.cache_hits}",
        "# TYPE converter_engine_restarts_total counter",
    ]
    for reason, count in sorted(stats.get("restarts", {}).items()):
        lines.append(f'converter_engine_restarts_total{{reason="{reason}"}} {count}')
    lines.append("# TYPE converter_artifacts_produced_total counter")
    for path, count in sorted(svc.conversions.produced.items()):
        lines.append(f'converter_artifacts_produced_total{{path="{path}"}} {count}')
    lines.append("# TYPE converter_engine_instance_conversions gauge")
    for inst in stats.get("instances", []):
        lines.append(f'converter_engine_instance_conversions{{instance="{inst["name"]}"}} '
                     f'{inst["conversions"]}')
    lines.append("# TYPE converter_engine_instance_rss_megabytes gauge")
    for inst in stats.get("instances", []):
        lines.append(f'converter_engine_instance_rss_megabytes{{instance="{inst["name"]}"}} '
                     f'{inst["rss_mb"]}')
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
