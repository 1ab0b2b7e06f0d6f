"""Prometheus metrics: every figure the service reports, declared once.

The serve command points PROMETHEUS_MULTIPROC_DIR at a fresh directory in memory
(``metrics_files``) before any worker imports this module, so prometheus-client
keeps each process's figures in files there and a scrape answered by any worker
adds them all up (see ``exposition``). Without that variable (in-process tests,
benchmarks) the figures live in this process's default registry.

Gauges say how they combine across processes: ``livesum`` adds the processes that
are alive (an exited worker's busy instances are not busy any more), ``livemax``
takes the highest, ``liveall`` keeps one series per live process (a pid label).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from converter.metrics_files import MULTIPROC_ENV

# Multiprocess mode has no *_created series; without it the single-process
# exposition would carry them, and the two would differ for no benefit.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Conversions run from a fraction of a second to CONVERTER_CONVERSION_TIMEOUT (120 s).
_SLOW = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# HTTP answers are mostly cache hits (about a millisecond) but include conversions.
_HTTP = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
         120.0)

# -- conversions and the cache
CONVERSIONS = Counter("converter_conversions", "Conversion requests by source, target and "
                      "outcome (ok, or the error type)", ["source", "target", "outcome"])
CACHE_HITS = Counter("converter_cache_hits", "Conversions answered from the artifact cache")
CACHE_MISSES = Counter("converter_cache_misses", "Conversions not found in the artifact cache")
ENGINE_CALLS = Counter("converter_engine_calls", "Conversions handed to the engine (cache misses "
                       "that led a single-flight)")
FLIGHT_CLAIMS = Counter("converter_flight_claims", "Cache misses by their part in a "
                        "single-flight across the fleet: lead (took the claim), takeover (took "
                        "a lapsed one), wait (another process converts), shared_failure (got "
                        "its leader's failure)", ["role"])
ARTIFACTS_PRODUCED = Counter("converter_artifacts_produced", "Artifacts made, by the path that "
                             "made them: libreoffice, openpyxl (the xlsx CSV fast path) or "
                             "pdf2image (PNG pages)", ["path"])
CONVERSION_SECONDS = Histogram("converter_conversion_duration_seconds", "Time LibreOffice spent "
                               "on one conversion (an instance held), by source and target",
                               ["source", "target"], buckets=_SLOW)
QUEUE_WAIT_SECONDS = Histogram("converter_engine_queue_wait_seconds", "Time a conversion waited "
                               "for a free engine instance", buckets=_SLOW)

# -- the engine pool
ENGINE_CONVERSIONS = Counter("converter_engine_conversions", "Conversions the engine completed")
ENGINE_RESTARTS = Counter("converter_engine_restarts", "Engine instance restarts by reason "
                          "(crash, timeout, recycle, memory)", ["reason"])
ENGINE_INSTANCES = Gauge("converter_engine_instances", "Engine instances configured",
                         multiprocess_mode="livesum")
ENGINE_BUSY = Gauge("converter_engine_busy", "Engine instances converting now",
                    multiprocess_mode="livesum")
ENGINE_BUSY_MAX = Gauge("converter_engine_busy_max", "Most engine instances busy at once since "
                        "start", multiprocess_mode="livemax")
ENGINE_WAITING = Gauge("converter_engine_waiting", "Conversions waiting for a free instance",
                       multiprocess_mode="livesum")
INSTANCE_CONVERSIONS = Gauge("converter_engine_instance_conversions", "Conversions by one "
                             "instance since its last restart", ["instance"],
                             multiprocess_mode="liveall")
INSTANCE_RSS = Gauge("converter_engine_instance_rss_megabytes", "Resident memory of one "
                     "instance's LibreOffice, in MiB", ["instance"], multiprocess_mode="liveall")

# -- HTTP, runs, webhooks
HTTP_REQUESTS = Counter("converter_http_requests", "HTTP requests by route template, method and "
                        "status", ["route", "method", "status"])
HTTP_SECONDS = Histogram("converter_http_request_duration_seconds", "HTTP request latency by "
                         "route template and method", ["route", "method"], buckets=_HTTP)
HTTP_GATE_WAIT = Histogram("converter_http_gate_wait_seconds", "Time a request waited (over "
                           "1 ms) for one of its process's tokens to run Python (cpu_gate)",
                           buckets=_HTTP)
HTTP_GATE_BYPASSED = Counter("converter_http_gate_bypassed", "Requests that went ahead without "
                             "a token after waiting cpu_gate.MAX_WAIT")
RUNS = Counter("converter_runs", "Runs entering a status (pending when created or retried, "
               "running when claimed, completed, failed)", ["status"])
WEBHOOK_DELIVERIES = Counter("converter_webhook_deliveries", "Webhook delivery attempts by "
                             "outcome (delivered, retry, failed)", ["outcome"])

# -- automations (watched folders)
AUTOMATION_EVENTS = Counter("converter_automation_events", "Automation history events by kind: "
                            "seen, converted, delivered, failed", ["kind"])
AUTOMATION_LISTINGS = Counter("converter_automation_listings", "Listings of automation sources "
                              "by outcome: ok, failed", ["outcome"])

# -- retention and converter gc
CLEANUP_PASSES = Counter("converter_cleanup_passes", "Cleanup passes (retention and gc) by "
                         "outcome: ok, failed, lease_lost", ["outcome"])
CLEANUP_ITEMS = Counter("converter_cleanup_items", "What cleanup passes deleted or repaired, "
                        "by kind (files, runs, content_artifacts, orphan_objects, partial_writes, "
                        "missing_artifacts, scratch, profiles, leases, abandoned_runs, "
                        "idempotency_keys, automation_events; missing_originals are found "
                        "and logged)", ["kind"])
CLEANUP_SECONDS = Histogram("converter_cleanup_duration_seconds", "Time one cleanup pass took",
                            buckets=_SLOW)
CLEANUP_LAST_OK = Gauge("converter_cleanup_last_success_timestamp_seconds", "Unix time the "
                        "last cleanup pass of any process completed", multiprocess_mode="max")


def multiprocess() -> bool:
    """True when figures are shared through PROMETHEUS_MULTIPROC_DIR."""
    return bool(os.environ.get(MULTIPROC_ENV))


def exposition() -> tuple[bytes, str]:
    """The text exposition of every process's figures, and its content type."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Forget a dead worker's live gauges (called by the gunicorn master on child exit)."""
    if multiprocess():
        from prometheus_client import multiprocess as mp

        mp.mark_process_dead(pid)  # type: ignore[no-untyped-call]
