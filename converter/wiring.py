"""Builds the service graph from a Config: database, storage, matrix, engine, services."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from converter.config import Config
from converter.connectors.crypto import CredentialBox
from converter.connectors.registry import Settings as ConnectorSettings
from converter.datadir import prepare as prepare_data_dir
from converter.db.engine import connect
from converter.diskspace import DiskGuard
from converter.matrix import Matrix
from converter.matrix import load as load_matrix
from converter.service.automation_executor import Executor
from converter.service.automation_poller import AutomationPoller
from converter.service.automations import AutomationService, Connectors
from converter.service.cleanup import build as build_cleanup
from converter.service.connectors import ConnectorService
from converter.service.conversion import ConversionEngine, ConversionService
from converter.service.export_defaults import DefaultsStore
from converter.service.export_items import Producer
from converter.service.export_worker import ExportWorker
from converter.service.exports import ExportService
from converter.service.files import FileService
from converter.service.idempotency import IdempotencyStore
from converter.service.intake import Intake
from converter.service.keys import KeyStore
from converter.service.oneshot import OneShotService
from converter.service.ratelimit import RateLimiter
from converter.service.run_worker import RunWorker
from converter.service.runs import RunService
from converter.service.signing import Signer, load_secret
from converter.service.url_fetch import UrlFetcher
from converter.service.webhook_signing import SecretStore
from converter.service.webhooks import WebhookDispatcher, WebhookPolicy
from converter.storage import Storage, open_storage

logger = logging.getLogger("converter")


@dataclass
class Services:
    """Everything a request handler may call, built once per process."""

    config: Config
    db: Engine
    storage: Storage
    matrix: Matrix
    keys: KeyStore
    files: FileService
    conversions: ConversionService
    limiter: RateLimiter
    runs: RunService
    oneshot: OneShotService
    engine: Any
    disk: DiskGuard
    connectors: ConnectorService
    exports: ExportService
    export_defaults: DefaultsStore
    extras: dict[str, Any] = field(default_factory=dict)
    _closed: threading.Event = field(default_factory=threading.Event)

    def begin_shutdown(self, deadline: float) -> None:
        """SIGTERM: claim no more runs; those in progress may finish until deadline."""
        worker = self.extras.get("run_worker")
        if worker is not None:
            worker.begin_drain(deadline)

    def close(self) -> None:
        """Stop background work and the engine; safe to call twice."""
        if self._closed.is_set():
            return
        self._closed.set()
        for extra in self.extras.values():
            stop = getattr(extra, "stop", None)
            if stop is not None:
                stop()
        stop_engine = getattr(self.engine, "stop", None)
        if stop_engine is not None:
            stop_engine()
        self.db.dispose()


def build(config: Config, engine: ConversionEngine | None = None,
          start_engine: bool = True) -> Services:
    """Wire the services; starts the engine pool unless one is given."""
    prepare_data_dir(config.data_path)
    matrix = load_matrix()
    db = connect(config.sqlalchemy_url)
    storage = open_storage(config)
    secret = load_secret(config.secret_key, config.data_path)
    signer = Signer(secret)
    if engine is None and config.engine_url:
        from converter.engine.remote import RemoteEngine

        engine = RemoteEngine(config.engine_url, config.data_path / "tmp")
    if engine is None:
        from converter.engine.pool import EnginePool

        pool = EnginePool(config)
        if start_engine:
            pool.start(wait=False)
        engine = pool
    scratch_root = getattr(engine, "scratch_root", config.data_path / "engine" / "scratch")
    disk = DiskGuard([config.data_path, scratch_root], config.min_free_mb)
    intake = Intake(matrix, config.data_path / "tmp", config.max_upload_bytes,
                    config.max_uncompressed_mb * 2**20, disk)
    files = FileService(db, storage, matrix, intake, config.file_retention)
    conversions = ConversionService(db, storage, matrix, engine, files, signer,
                                    config.url_ttl, config.conversion_timeout,
                                    config.max_png_pages, disk, config.flight_lease_seconds)
    runs, extras = _build_runs(config, db, matrix, files, conversions)
    fetcher = UrlFetcher(WebhookPolicy(config.webhook_allow), config.url_fetch_timeout)
    oneshot = OneShotService(intake, files, conversions, storage, fetcher)
    keys = KeyStore(db, config.data_path)
    connectors = ConnectorService(db, CredentialBox(secret), ConnectorSettings(
        local_roots=config.local_connector_roots,
        denial=WebhookPolicy(config.webhook_allow).denial))
    exports, defaults = _build_exports(config, db, storage, matrix, files, conversions,
                                       connectors, extras)
    runs.exports = exports
    extras.update(build_automations(config, db, matrix, oneshot, connectors))
    cleanup = build_cleanup(config, db, storage)
    cleanup.start()
    extras["cleanup"] = cleanup
    if db.dialect.name == "postgresql":
        # Replicas on other hosts share only the database: hear their revocations.
        from converter.service.revocations import RevocationListener

        listener = RevocationListener(db.url, keys.invalidate)
        listener.start()
        extras["revocations"] = listener
    return Services(config=config, db=db, storage=storage, matrix=matrix, keys=keys,
                    files=files, conversions=conversions,
                    limiter=RateLimiter(config.requests_per_minute,
                                        config.data_path / "ratelimit.db"), runs=runs,
                    oneshot=oneshot, engine=engine, disk=disk, connectors=connectors,
                    exports=exports, export_defaults=defaults, extras=extras)


def build_automations(config: Config, db: Engine, matrix: Matrix, oneshot: OneShotService,
                      connectors: Connectors) -> dict[str, Any]:
    """The automation service and its poller (started), as extras."""
    executor = Executor(db, connectors, oneshot, config.run_max_attempts,
                        config.connector_delivery_attempts)
    poller = AutomationPoller(db, connectors, executor, config.automation_poll_seconds,
                              config.run_lease_seconds)
    poller.start()
    return {"automations": AutomationService(db, matrix, connectors),
            "automation_poller": poller}


def _build_runs(config: Config, db: Engine, matrix: Matrix, files: FileService,
                conversions: ConversionService) -> tuple[RunService, dict[str, Any]]:
    """The run service, and the run workers and webhook dispatcher it feeds (started)."""
    policy = WebhookPolicy(config.webhook_allow)
    secrets_store = SecretStore(db)
    # Webhooks are sent without a request to take a host from; behind a proxy set
    # CONVERTER_PUBLIC_URL so their download links point at the public address.
    webhook_base = config.public_url or f"http://{config.host}:{config.port}"
    runs = RunService(db, files, conversions, matrix, policy, IdempotencyStore(db),
                      secrets_store, config.runs_per_hour, config.runs_window_seconds,
                      webhook_base)
    worker = RunWorker(db, conversions, matrix, config.run_workers, config.run_lease_seconds,
                       config.run_max_attempts)
    dispatcher = WebhookDispatcher(db, policy, secrets_store, runs.notice,
                                   config.webhook_timeout, config.webhook_max_attempts,
                                   config.webhook_backoff_seconds)
    runs.on_created.append(worker.wake)
    worker.on_finished.append(dispatcher.wake)
    worker.start()
    dispatcher.start()
    return runs, {"run_worker": worker, "webhooks": dispatcher}


def _build_exports(config: Config, db: Engine, storage: Storage, matrix: Matrix,
                   files: FileService, conversions: ConversionService,
                   connectors: ConnectorService,
                   extras: dict[str, Any]) -> tuple[ExportService, DefaultsStore]:
    """The export service and its workers (started), woken by new exports and finished runs."""
    defaults = DefaultsStore(db, connectors.exists)
    exports = ExportService(db, files, conversions, matrix, connectors, IdempotencyStore(db),
                            defaults)
    producer = Producer(db, storage, conversions, matrix, connectors,
                        config.connector_delivery_attempts, config.connector_backoff_seconds)
    worker = ExportWorker(db, producer, config.data_path / "tmp" / "exports",
                          config.run_workers, config.run_lease_seconds,
                          config.run_max_attempts)
    exports.on_created.append(worker.wake)
    extras["run_worker"].on_finished.append(worker.wake)
    worker.start()
    extras["export_worker"] = worker
    return exports, defaults
