"""Configuration: one frozen Config read from CONVERTER_* environment variables.

Every variable is declared once in ``SETTINGS`` with its default and its meaning;
the README table is checked against this list by a test, so the two cannot drift.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from pathlib import Path
from typing import Any

from converter.cpus import available_cpus
from converter.errors import ConfigError

PREFIX = "CONVERTER_"


@dataclass(frozen=True)
class Setting:
    """One environment variable: its field name, parser, default and description."""

    name: str
    parse: Callable[[str], Any]
    default: str
    help: str

    @property
    def env(self) -> str:
        """The environment variable that sets this field."""
        return PREFIX + self.name.upper()


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("must be zero or a positive number")
    return value


def _scheduler(raw: str) -> str:
    if raw not in ("fair", "fifo"):
        raise ValueError("must be 'fair' or 'fifo'")
    return raw


# Values of CONVERTER_SOFFICE_ALLOCATOR; converter/engine/allocator.py acts on them.
SOFFICE_ALLOCATORS = ("auto", "jemalloc", "system")


def _allocator(raw: str) -> str:
    if raw not in SOFFICE_ALLOCATORS:
        raise ValueError("must be one of " + ", ".join(repr(c) for c in SOFFICE_ALLOCATORS))
    return raw


def _workers(raw: str) -> int:
    if raw in ("", "auto"):
        # One instance per CPU plus one. LibreOffice instances cannot be preempted but the
        # OS time-slices cores for free: under the fair scheduler heavy work never takes
        # the last idle instance, so with the extra one it still fills every core, and the
        # extra instance is what light work (a neighbour's small document) gets at once
        # while the OS shares the cores between them. At least 2, so there is a last one.
        return max(2, available_cpus() + 1)
    return _positive_int(raw)


def _http_workers(raw: str) -> int:
    if raw in ("", "auto"):
        # Handlers mostly wait (on the engine, the database, storage), so a process's
        # threads cover the waiting; processes are for the Python work in between, which
        # the GIL keeps to one core per process. Two per CPU: when a process's threads
        # hand the GIL round, another process has Python ready for that core (measured on
        # 2 cores, 32 clients of cache hits: 4 workers served 1,700 req/s, 2 workers
        # 1,550, 6 workers no more than 4). That also makes at least two, so a worker that
        # dies or is being replaced never leaves the port without a server.
        return 2 * available_cpus()
    return _positive_int(raw)


def _engine_url(raw: str) -> str:
    if raw and not raw.startswith(("unix://", "http://")):
        raise ValueError("must be unix:///path/to/engine.sock or http://host:port "
                         "(a `converter engine` process), or empty to start one")
    return raw.rstrip("/")


def _storage(raw: str) -> str:
    if raw not in ("local", "s3"):
        raise ValueError("must be 'local' or 's3'")
    return raw


def _text(raw: str) -> str:
    return raw


def _url(raw: str) -> str:
    if raw and not raw.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return raw.rstrip("/")


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _log_format(raw: str) -> str:
    if raw not in ("", "json", "text"):
        raise ValueError("must be 'json' or 'text' (or empty: text on a terminal, JSON otherwise)")
    return raw


def _days(raw: str) -> float:
    value = _non_negative_float(raw)
    # Past a century the expiry would overflow datetime arithmetic for no gain.
    if value > 36500:
        raise ValueError("must be at most 36500 days (0 keeps everything forever)")
    return value


def _optional_days(raw: str) -> float | None:
    return None if raw.strip() == "" else _days(raw)


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _directories(raw: str) -> tuple[str, ...]:
    # Commas or colons (as in PATH) both separate: either reads naturally in an env file.
    parts = tuple(part.strip() for part in raw.replace(":", ",").split(",") if part.strip())
    for part in parts:
        if not os.path.isabs(part):
            raise ValueError(f"{part!r} is not an absolute directory path")
    return parts


SETTINGS: tuple[Setting, ...] = (
    Setting("host", _text, "127.0.0.1", "Interface the HTTP server binds to."),
    Setting("port", _positive_int, "8080", "Port the HTTP server listens on."),
    Setting("data_dir", _text, "./data", "Directory for the SQLite database, local artifacts and engine profiles."),
    Setting("database_url", _text, "", "SQLAlchemy URL; empty means SQLite at CONVERTER_DATA_DIR/converter.db."),
    Setting("storage", _storage, "local", "Artifact storage backend: local or s3."),
    Setting("s3_bucket", _text, "", "Bucket for CONVERTER_STORAGE=s3."),
    Setting("s3_endpoint_url", _text, "", "S3 endpoint (for MinIO, moto or another S3-compatible store); empty means AWS."),
    Setting("s3_prefix", _text, "converter/", "Key prefix for objects in the S3 bucket."),
    Setting("public_url", _text, "", "Base URL used in download links; empty means the URL the request came in on."),
    Setting("secret_key", _text, "", "HMAC key for download tokens and webhooks; empty means one generated and kept in CONVERTER_DATA_DIR."),
    Setting("url_ttl", _positive_int, "3600", "Seconds a signed download URL stays valid."),
    Setting("max_upload_mb", _positive_int, "100", "Largest accepted upload, in MiB."),
    Setting("max_uncompressed_mb", _positive_int, "1024", "Largest total a zip-based document may declare when unpacked (zip-bomb guard), in MiB."),
    Setting("workers", _workers, "auto", "LibreOffice instances in the engine pool; auto means one per CPU this process may use (its CPU affinity, capped by the cgroup CPU limit of a container, cpu.max) plus one, at least 2: the extra instance is what light work gets at once while heavy work fills the cores."),
    Setting("min_free_mb", _non_negative_int, "256", "Free space (MiB) the data and engine scratch file systems must keep: below it uploads and conversions are refused with 507 insufficient_storage and /readyz reports not ready (0: only a write that runs out of space is refused)."),
    Setting("max_png_pages", _positive_int, "200", "Most pages one PNG request may draw (options.pages); more is refused with 400."),
    Setting("conversion_timeout", _positive_float, "120", "Seconds one conversion may take, queueing included."),
    Setting("queue_size", _non_negative_int, "32", "Conversions that may wait for a free instance before 503 overloaded."),
    Setting("queue_per_workspace", _non_negative_int, "16", "Conversions one workspace may have waiting for an instance before its next is refused with 503 overloaded (fair scheduler; 0: only CONVERTER_QUEUE_SIZE bounds it)."),
    Setting("engine_scheduler", _scheduler, "fair", "Order of the engine wait queue: fair (sync before async runs, then shared across workspaces and their keys by estimated cost) or fifo (arrival order)."),
    Setting("heavy_seconds", _positive_float, "1.0", "Estimated LibreOffice seconds (from size, pages and format) from which a conversion counts as heavy: under the fair scheduler it never takes the last idle instance of a pool of 2 or more while another instance converts."),
    Setting("recycle_after", _positive_int, "200", "Conversions after which an instance is restarted gracefully."),
    Setting("max_rss_mb", _positive_int, "1536", "LibreOffice resident memory (MiB) above which an instance is recycled."),
    Setting("soffice", _text, "", "Path to soffice.bin; empty means the Debian location or the one on PATH."),
    Setting("soffice_allocator", _allocator, "auto", "Memory allocator LibreOffice runs with: auto (jemalloc when Debian's libjemalloc2 is installed, else the system's), jemalloc (refuse to start without it) or system (glibc malloc). jemalloc cut LibreOffice's CPU per document by 13 to 15%."),
    Setting("engine_python", _text, "", "Python that can import uno and runs the engine bridge; empty means this one if it can, else /usr/bin/python3."),
    Setting("http_workers", _http_workers, "auto", "gunicorn worker processes serving HTTP; auto means two per CPU. They share one engine process."),
    Setting("http_threads", _positive_int, "64", "Threads of each gunicorn worker that serve HTTP requests."),
    Setting("engine_url", _engine_url, "", "Where HTTP workers send conversions: a `converter engine` at unix:///path.sock or http://host:port; empty means converter serve starts one on a Unix socket in CONVERTER_DATA_DIR."),
    Setting("shutdown_grace", _non_negative_float, "30", "Seconds converter serve lets conversions and runs in flight finish after SIGTERM; runs still unfinished are handed back to the queue."),
    Setting("bootstrap_key", _text, "", "API key to create on first start (sk_live_...) instead of a random one."),
    Setting("runs_per_hour", _positive_int, "30", "POST /v1/runs requests per API key per hour."),
    Setting("runs_window_seconds", _positive_int, "3600", "Length of the window CONVERTER_RUNS_PER_HOUR counts runs in, in seconds (shorten only for tests)."),
    Setting("requests_per_minute", _positive_int, "600", "Requests per API key per minute on every other endpoint."),
    Setting("flight_lease_seconds", _positive_float, "5", "Seconds a process's claim on a conversion in flight lasts unrenewed (its heartbeat renews it every quarter of that); once it lapses (the process died) an identical request waiting on another process or replica takes over."),
    Setting("run_workers", _non_negative_int, "2", "Threads per process that execute async runs."),
    Setting("run_lease_seconds", _positive_int, "60", "Seconds a claimed run (or automation claim) stays leased before another worker may reclaim it."),
    Setting("run_max_attempts", _positive_int, "3", "Attempts at a run before it fails on transient engine errors."),
    Setting("automation_poll_seconds", _positive_float, "30", "Seconds between two listings of an automation's source (watched folder); a file is converted once two listings agree on it. Fractions are allowed."),
    Setting("webhook_allow", _csv, "", "Comma-separated CIDRs that webhook targets and URL imports may use despite the default deny list (loopback, private, link-local)."),
    Setting("url_fetch_timeout", _positive_float, "30", "Seconds a URL import may wait on one connect or read (the whole fetch may take ten times that)."),
    Setting("webhook_timeout", _positive_float, "10", "Seconds one webhook delivery may take."),
    Setting("webhook_max_attempts", _positive_int, "5", "Delivery attempts per webhook before giving up."),
    Setting("webhook_backoff_seconds", _positive_float, "10", "Delay before the second webhook attempt; each later one waits twice as long."),
    Setting("retention_days", _days, "0", "Days an uploaded file and its artifacts (and one-shot cache entries) are kept; 0 keeps them forever. Fractions are allowed."),
    Setting("run_retention_days", _optional_days, "", "Days a finished run (and its exports and Idempotency-Key replay) is kept; empty means CONVERTER_RETENTION_DAYS, 0 forever. A file is kept while a run on it is."),
    Setting("cleanup_interval_seconds", _non_negative_float, "600", "Seconds between cleanup passes (retention and converter gc) on one replica at a time; 0 turns the loop off."),
    Setting("cleanup_batch_size", _positive_int, "500", "Rows or objects one cleanup step handles per database transaction."),
    Setting("orphan_grace_seconds", _positive_float, "3600", "Age under which an object without a row, or a scratch file, is never treated as garbage (a conversion may be about to commit it)."),
    Setting("local_connector_roots", _directories, "", "Comma- or colon-separated absolute directories under which local connectors may read and write; empty means local connectors are refused."),
    Setting("connector_delivery_attempts", _positive_int, "4", "Attempts at delivering an export to its connector before it fails (transient errors only)."),
    Setting("connector_backoff_seconds", _non_negative_float, "2", "Delay before the second delivery attempt; each later one waits twice as long."),
    Setting("log_level", _text, "INFO", "Python logging level."),
    Setting("url", _url, "", "Client side: base URL of the service the converter CLI and Client.from_env() talk to (e.g. http://127.0.0.1:8080); the server ignores it."),
    Setting("api_key", _text, "", "Client side: API key the converter CLI and Client.from_env() send; the server ignores it."),
    Setting("log_format", _log_format, "", "Log lines as json or text; empty means text on a terminal and JSON otherwise."),
)


@dataclass(frozen=True)
class Config:
    """Validated service configuration."""

    host: str
    port: int
    data_dir: str
    database_url: str
    storage: str
    s3_bucket: str
    s3_endpoint_url: str
    s3_prefix: str
    public_url: str
    secret_key: str
    url_ttl: int
    max_upload_mb: int
    max_uncompressed_mb: int
    min_free_mb: int
    workers: int
    max_png_pages: int
    conversion_timeout: float
    queue_size: int
    queue_per_workspace: int
    engine_scheduler: str
    heavy_seconds: float
    recycle_after: int
    max_rss_mb: int
    soffice: str
    soffice_allocator: str
    engine_python: str
    http_workers: int
    http_threads: int
    engine_url: str
    shutdown_grace: float
    bootstrap_key: str
    runs_per_hour: int
    runs_window_seconds: int
    requests_per_minute: int
    flight_lease_seconds: float
    run_workers: int
    run_lease_seconds: int
    run_max_attempts: int
    automation_poll_seconds: float
    webhook_allow: tuple[str, ...]
    url_fetch_timeout: float
    webhook_timeout: float
    webhook_max_attempts: int
    webhook_backoff_seconds: float
    retention_days: float
    run_retention_days: float | None
    cleanup_interval_seconds: float
    cleanup_batch_size: int
    orphan_grace_seconds: float
    local_connector_roots: tuple[str, ...]
    connector_delivery_attempts: int
    connector_backoff_seconds: float
    log_level: str
    url: str
    api_key: str
    log_format: str

    @property
    def data_path(self) -> Path:
        """CONVERTER_DATA_DIR as an absolute path."""
        return Path(self.data_dir).resolve()

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to SQLite inside the data directory."""
        return self.database_url or f"sqlite:///{self.data_path / 'converter.db'}"

    @property
    def max_upload_bytes(self) -> int:
        """CONVERTER_MAX_UPLOAD_MB in bytes."""
        return self.max_upload_mb * 1024 * 1024

    @property
    def file_retention(self) -> timedelta | None:
        """How long files live (CONVERTER_RETENTION_DAYS), None for forever."""
        return timedelta(days=self.retention_days) if self.retention_days else None

    @property
    def run_retention(self) -> timedelta | None:
        """How long finished runs live (CONVERTER_RUN_RETENTION_DAYS), None for forever."""
        days = self.retention_days if self.run_retention_days is None else self.run_retention_days
        return timedelta(days=days) if days else None

    def replace(self, **changes: Any) -> Config:
        """Return a copy with some fields changed (tests and the CLI use this)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Config(**values)


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Read and validate configuration; raise ConfigError naming the bad variable."""
    env = os.environ if environ is None else environ
    known = {s.env for s in SETTINGS}
    unknown = sorted(k for k in env if k.startswith(PREFIX) and k not in known
                     and not k.startswith(PREFIX + "TEST_"))
    if unknown:
        raise ConfigError(
            f"Unknown setting {unknown[0]}; valid variables are: {', '.join(sorted(known))}"
        )
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.name in overrides:
            values[setting.name] = overrides[setting.name]
            continue
        raw = env.get(setting.env, setting.default)
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(
                f"{setting.env}={raw!r} is invalid: {exc} ({setting.help})"
            ) from None
    config = Config(**values)
    _validate(config)
    return config


def _validate(config: Config) -> None:
    if config.storage == "s3" and not config.s3_bucket:
        raise ConfigError("CONVERTER_S3_BUCKET must be set when CONVERTER_STORAGE=s3")
    if config.bootstrap_key and not config.bootstrap_key.startswith("sk_live_"):
        raise ConfigError("CONVERTER_BOOTSTRAP_KEY must start with 'sk_live_'")
    if config.bootstrap_key and len(config.bootstrap_key) < len("sk_live_") + 16:
        raise ConfigError(
            "CONVERTER_BOOTSTRAP_KEY is too short: use sk_live_ and at least 16 random characters"
        )
    if config.public_url and not config.public_url.startswith(("http://", "https://")):
        raise ConfigError("CONVERTER_PUBLIC_URL must start with http:// or https://")
