"""Conversions: matrix check → cache lookup → single-flight → engine → atomic store."""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.exc import IntegrityError

from converter import metrics
from converter.db.engine import utcnow
from converter.db.schema import artifacts
from converter.engine.pool import EngineJob
from converter.errors import ConversionTimeout, ConverterError, NotFound
from converter.matrix import ExportPlan, Matrix
from converter.service.files import FileRecord, FileService
from converter.service.principal import Principal
from converter.service.signing import Grant, Signer
from converter.service.singleflight import SingleFlight
from converter.storage import Storage


class ConversionEngine(Protocol):
    """What the service needs from the engine (EnginePool, or a fake in unit tests)."""

    def scratch(self) -> AbstractContextManager[Path]:
        """A private directory for one conversion."""
        ...

    def convert(self, source: Path, target: Path, job: EngineJob, deadline: float) -> None:
        """Convert source into target before the monotonic deadline."""
        ...


@dataclass(frozen=True)
class Artifact:
    """A stored conversion result."""

    id: str
    file_id: str
    source_id: str
    format: str
    media_type: str
    storage_key: str
    size_bytes: int


@dataclass(frozen=True)
class Conversion:
    """The answer to a convert call."""

    artifact: Artifact
    cached: bool
    record: FileRecord


@dataclass(frozen=True)
class Link:
    """A signed download URL."""

    url: str
    expires_at: datetime


def cache_key(source_id: str, target: str, options: dict[str, Any]) -> str:
    """The artifact identity: (source, target format, normalised options)."""
    canonical = json.dumps([source_id, target, options], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# Built once: the cache-hit path runs it on every repeat call.
_LOOKUP = select(artifacts).where(artifacts.c.cache_key == bindparam("key"))


def _artifact(row: Any) -> Artifact:
    return Artifact(id=row.id, file_id=row.file_id, source_id=row.source_id, format=row.format,
                    media_type=row.media_type, storage_key=row.storage_key,
                    size_bytes=row.size_bytes)


class ConversionService:
    """Produces artifacts, at most once per cache key, and signs links to them."""

    def __init__(self, db: Engine, storage: Storage, matrix: Matrix, engine: ConversionEngine,
                 files: FileService, signer: Signer, url_ttl: int, timeout: float) -> None:
        self.db = db
        self.storage = storage
        self.matrix = matrix
        self.engine = engine
        self.files = files
        self.signer = signer
        self.url_ttl = url_ttl
        self.timeout = timeout
        self.flight: SingleFlight[Artifact] = SingleFlight()
        self._lock = threading.Lock()
        self.engine_calls = 0
        self.cache_hits = 0

    # ------------------------------------------------------------------ public
    def convert_file(self, principal: Principal, file_id: str, target: str,
                     options: dict[str, Any] | None = None) -> Conversion:
        """Convert a visible file (or return its cached artifact)."""
        deadline = time.monotonic() + self.timeout
        record = self.files.get(principal, file_id)
        plan = self.matrix.plan(record.format, target, options)
        return self.produce(record, record.id, record.storage_key, plan, deadline)

    def produce(self, record: FileRecord, source_id: str, source_key: str, plan: ExportPlan,
                deadline: float) -> Conversion:
        """Return the artifact for (source_id, plan), converting only on a cache miss."""
        outcome = "ok"
        try:
            return self._produce(record, source_id, source_key, plan, deadline)
        except ConverterError as exc:
            outcome = exc.type
            raise
        except Exception:
            outcome = "internal_error"
            raise
        finally:
            metrics.CONVERSIONS.labels(source=plan.source, target=plan.target,
                                       outcome=outcome).inc()

    def _produce(self, record: FileRecord, source_id: str, source_key: str, plan: ExportPlan,
                 deadline: float) -> Conversion:
        key = cache_key(source_id, plan.target, plan.options)
        found = self._lookup(key)
        if found is not None:
            with self._lock:
                self.cache_hits += 1
            metrics.CACHE_HITS.inc()
            return Conversion(found, cached=True, record=record)
        metrics.CACHE_MISSES.inc()

        def work() -> Artifact:
            again = self._lookup(key)
            if again is not None:
                return again
            return self._convert(record, source_id, source_key, plan, key, deadline)

        artifact, _leader = self.flight.run(
            key, work, timeout=deadline - time.monotonic(),
            on_timeout=lambda: ConversionTimeout(
                "Conversion exceeded CONVERTER_CONVERSION_TIMEOUT while waiting for an "
                "identical conversion"))
        return Conversion(artifact, cached=False, record=record)

    def link(self, artifact: Artifact, filename: str, base_url: str) -> Link:
        """A fresh signed URL for an artifact, valid for CONVERTER_URL_TTL seconds."""
        expires = int(time.time()) + self.url_ttl
        expires_at = utcnow().replace(microsecond=0) + timedelta(seconds=self.url_ttl)
        presigned = self.storage.presigned_url(
            artifact.storage_key, filename=filename, content_type=artifact.media_type,
            expires_in=self.url_ttl)
        if presigned:
            return Link(presigned, expires_at)
        token = self.signer.sign(Grant(artifact.id, filename, expires))
        return Link(f"{base_url.rstrip('/')}/v1/downloads/{token}", expires_at)

    def artifact(self, artifact_id: str) -> Artifact:
        """An artifact by id (for downloads, which authenticate by token)."""
        with self.db.connect() as conn:
            row = conn.execute(select(artifacts).where(artifacts.c.id == artifact_id)).first()
        if row is None or not self._present(row.storage_key):
            raise NotFound("The converted file no longer exists; convert it again")
        return _artifact(row)

    def download_name(self, record: FileRecord, target: str) -> str:
        """Original file name with the target extension."""
        stem = record.filename.rsplit(".", 1)[0] if "." in record.filename else record.filename
        return f"{stem}.{target}"

    # ------------------------------------------------------------------ internals
    def _present(self, storage_key: str) -> bool:
        local = self.storage.local_path(storage_key)
        # Local artifacts cost a stat to check; remote ones are trusted to the row,
        # and a missing object shows up as a failed download rather than a slow hit.
        return local.exists() if local is not None else True

    def _lookup(self, key: str) -> Artifact | None:
        with self.db.connect() as conn:
            row = conn.execute(_LOOKUP, {"key": key}).first()
        if row is None or not self._present(row.storage_key):
            return None
        return _artifact(row)

    def _convert(self, record: FileRecord, source_id: str, source_key: str, plan: ExportPlan,
                 key: str, deadline: float) -> Artifact:
        job = EngineJob(import_filter=plan.import_filter, export_filter=plan.export_filter,
                        filter_options=_filter_options(plan), source=plan.source,
                        target=plan.target)
        storage_key = f"artifacts/{record.id}/{key}.{plan.target}"
        with self.engine.scratch() as scratch:
            source = scratch / f"source.{plan.source}"
            target = scratch / f"result.{plan.target}"
            self.storage.download_to(source_key, source)
            with self._lock:
                self.engine_calls += 1
            metrics.ENGINE_CALLS.inc()
            self.engine.convert(source, target, job, deadline)
            size = self.storage.put_file(storage_key, target, plan.media_type)
        artifact = Artifact(id="art_" + secrets.token_hex(12), file_id=record.id,
                            source_id=source_id, format=plan.target,
                            media_type=plan.media_type, storage_key=storage_key,
                            size_bytes=size)
        try:
            with self.db.begin() as conn:
                conn.execute(insert(artifacts).values(
                    id=artifact.id, file_id=record.id, source_id=source_id, cache_key=key,
                    format=plan.target, options=json.dumps(plan.options, sort_keys=True),
                    media_type=plan.media_type, storage_key=storage_key, size_bytes=size,
                    created_at=utcnow()))
        except IntegrityError:
            # Another replica stored the same conversion first; both wrote the same
            # object key, so its row is as good as ours.
            existing = self._lookup(key)
            if existing is None:
                raise
            return existing
        return artifact


def _filter_options(plan: ExportPlan) -> list[str]:
    options = [f"{name}={_option_text(value)}" for name, value in plan.filter_data.items()]
    if plan.filter_options:
        options.append(plan.filter_options)
    return options


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

