"""Conversions: matrix check → cache lookup (file, then content) → single-flight → make → store.

The content cache: a stored file's artifacts are also keyed by its owner and its
bytes (``content_identity``), so a second upload of the same bytes by the same owner
converts from the cache: the artifact is copied under the new file, which then owns
it like one it made (deleted with it, never with the first file).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, select

from converter import metrics
from converter.db.engine import utcnow
from converter.db.schema import artifacts
from converter.diskspace import DiskGuard
from converter.engine.pool import EngineJob
from converter.engine.scheduler import ANONYMOUS, Lane, Tenant
from converter.errors import (
    ConversionTimeout,
    ConverterError,
    NotFound,
    PasswordIncorrect,
    PasswordRequired,
    UnprocessableDocument,
    UpstreamError,
)
from converter.matrix import ExportPlan, Matrix
from converter.service import decrypt, png_render
from converter.service.artifact_index import (
    Artifact,
    ArtifactIndex,
    FileArtifacts,
    SourceGone,
    file_artifact,
    present,
)
from converter.service.claims import Claims
from converter.service.csv_export import CsvExporter
from converter.service.files import FileRecord, FileService
from converter.service.intake import with_extension
from converter.service.principal import Principal
from converter.service.production import Demand, Made, Producer, estimate_cost
from converter.service.shared_flight import SharedFlight
from converter.service.signing import Grant, Signer
from converter.storage import ObjectMissing, Storage, StorageError

logger = logging.getLogger("converter.conversion")

__all__ = ["Artifact", "Conversion", "ConversionService", "Link", "Subject", "cache_key",
           "content_identity", "tenant_of"]


class ConversionEngine(Protocol):
    """What the service needs from the engine (EnginePool, or a fake in unit tests)."""

    def scratch(self) -> AbstractContextManager[Path]:
        """A private directory for one conversion."""
        ...

    def convert(self, source: Path, target: Path, job: EngineJob, deadline: float) -> None:
        """Convert source into target before the monotonic deadline."""
        ...


@dataclass(frozen=True)
class Subject:
    """What is converted, and where its artifacts are recorded."""

    source_id: str
    format: str
    encrypted: bool
    fetch: Callable[[Path], None]
    index: ArtifactIndex
    record: FileRecord | None = None
    sheets: list[str] | None = None
    # The metadata this conversion may fill in (fields the file's reader could not know).
    learn: Callable[..., None] = field(default=lambda **_found: None)
    # Who asks (workspace, key) and in which class: the engine's queue is ordered by it.
    tenant: Tenant = ANONYMOUS
    # Page count of the source when known (a file's metadata): part of the cost estimate.
    pages: int | None = None
    # Who owns these bytes and their sha256 (content_identity), when artifacts made from
    # them may be shared with the owner's other uploads of them; None: never shared.
    content_id: str | None = None


@dataclass(frozen=True)
class Conversion:
    """The answer to a convert call."""

    artifact: Artifact
    cached: bool
    record: FileRecord | None


@dataclass(frozen=True)
class Link:
    """A signed download URL."""

    url: str
    expires_at: datetime


def content_identity(record: FileRecord) -> str:
    """The owner of a file's bytes and their sha256: what its content cache is keyed by.

    The owner is the user for personal files and the workspace for workspace files, so
    an upload never learns (from ``cached``) what bytes another owner holds.
    """
    owner = (f"workspace:{record.workspace}" if record.scope == "workspace"
             else f"user:{record.workspace}:{record.owner}")
    return f"files:{owner}:sha256:{record.sha256}"


def cache_key(source_id: str, target: str, options: dict[str, Any],
              password_tag: str = "") -> str:
    """The artifact identity: (source, target format, normalised options[, password tag]).

    A password is part of the identity (a wrong one must not reach an artifact made
    with the right one) but only as a keyed digest, never in clear.
    """
    parts: list[Any] = [source_id, target, options]
    if password_tag:
        parts.append(password_tag)
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ConversionService:
    """Produces artifacts, at most once per cache key, and signs links to them."""

    def __init__(self, db: Engine, storage: Storage, matrix: Matrix, engine: ConversionEngine,
                 files: FileService, signer: Signer, url_ttl: int, timeout: float,
                 max_png_pages: int = 200, disk: DiskGuard | None = None,
                 flight_lease: float = 5.0) -> None:
        self.db = db
        # No paths: nothing is refused in advance, only writes that run out of space.
        self.disk = disk or DiskGuard((), 0)
        self.storage = storage
        self.matrix = matrix
        self.engine = engine
        self.files = files
        self.signer = signer
        self.url_ttl = url_ttl
        self.timeout = timeout
        self.producer = Producer(engine, max_png_pages)
        self.csv = CsvExporter(self.producer)
        self.flight: SharedFlight[Artifact] = SharedFlight(Claims(db, flight_lease))
        self._lock = threading.Lock()
        self.cache_hits = 0
        # Which path made each artifact: libreoffice, openpyxl, pdf2image (for /metrics).
        self.produced: Counter[str] = Counter()

    @property
    def engine_calls(self) -> int:
        """LibreOffice conversions started by this process."""
        return self.producer.engine_calls

    # ------------------------------------------------------------------ public
    def convert_file(self, principal: Principal, file_id: str, target: str,
                     options: dict[str, Any] | None = None) -> Conversion:
        """Convert a visible file (or return its cached artifact)."""
        deadline = time.monotonic() + self.timeout
        # One query for the file and its artifacts in target: a cache hit needs no other.
        record, made = self.files.get_with_artifacts(principal, file_id, target)
        plan = self.matrix.plan(record.format, target, options)
        return self.produce(record, record.id, record.storage_key, plan, deadline,
                            tenant_of(principal), known=made)

    def produce(self, record: FileRecord, source_id: str, source_key: str, plan: ExportPlan,
                deadline: float, tenant: Tenant = ANONYMOUS,
                known: dict[str, Any] | None = None) -> Conversion:
        """Return the artifact of a stored file (or of an earlier artifact) for plan.

        known: the file's artifact rows by cache key, when the caller read them already.
        """
        own = source_id == record.id
        subject = Subject(
            source_id=source_id, format=plan.source, encrypted=own and record.encrypted,
            fetch=lambda path: self.storage.download_to(source_key, path),
            index=FileArtifacts(self.db, self.storage, record.id, known), record=record,
            sheets=record.sheets if own else None,
            learn=(lambda **found: self.files.learn(record, **found)) if own else (
                lambda **_found: None), tenant=tenant, pages=record.pages if own else None,
            content_id=content_identity(record) if own else None)
        return self.run(subject, plan, deadline)

    def run(self, subject: Subject, plan: ExportPlan, deadline: float) -> Conversion:
        """The artifact for (subject, plan), making it only on a cache miss; counted."""
        outcome = "ok"
        try:
            return self._run(subject, plan, deadline)
        except ConverterError as exc:
            outcome = exc.type
            raise
        except Exception:
            outcome = "internal_error"
            raise
        finally:
            metrics.CONVERSIONS.labels(source=plan.source, target=plan.target,
                                       outcome=outcome).inc()

    def _run(self, subject: Subject, plan: ExportPlan, deadline: float) -> Conversion:
        if subject.encrypted and not plan.password:
            raise PasswordRequired(
                "The document is encrypted: send its password as options.password",
                field="options.password")
        key = self._key(subject.source_id, subject, plan)
        content = self._key(subject.content_id, subject, plan) if subject.content_id else None

        def lookup() -> Artifact | None:
            found = subject.index.lookup(key)
            if found is None and content is not None:
                found = self._adopt(subject, key, content, plan)
            return found

        found = lookup()
        if found is not None:
            with self._lock:
                self.cache_hits += 1
            metrics.CACHE_HITS.inc()
            return Conversion(found, cached=True, record=subject.record)
        metrics.CACHE_MISSES.inc()
        # Threads meet on the file's own key; processes and replicas on the content key
        # when there is one, so identical bytes of one owner convert once however many
        # files hold them (the others adopt the artifact once it is recorded).
        artifact = self.flight.run(
            key, content or key, lookup, lambda: self._make(subject, plan, key, content,
                                                            deadline),
            deadline, on_timeout=lambda: ConversionTimeout(
                "Conversion exceeded CONVERTER_CONVERSION_TIMEOUT while waiting for an "
                "identical conversion"))
        return Conversion(artifact, cached=False, record=subject.record)

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
        if row is None or not present(self.storage, row.storage_key):
            raise NotFound("The converted file no longer exists; convert it again")
        return file_artifact(row)

    def download_name(self, record: FileRecord, target: str, media_type: str = "") -> str:
        """Original file name with the target's extension (.zip for several pages or sheets)."""
        return with_extension(record.filename, extension_of(target, media_type))

    # ------------------------------------------------------------------ internals
    def _key(self, source_id: str, subject: Subject, plan: ExportPlan) -> str:
        tag = self._password_tag(source_id, plan.password) if subject.encrypted else ""
        return cache_key(source_id, plan.target, plan.options, tag)

    def _adopt(self, subject: Subject, key: str, content: str,
               plan: ExportPlan) -> Artifact | None:
        """Copy the artifact another file of the same owner and bytes has, as this file's."""
        donor = subject.index.donor(content)
        if donor is None:
            return None
        extension = donor.storage_key.rsplit(".", 1)[-1]
        storage_key = subject.index.storage_key(key, extension)
        self.disk.check()
        with self.engine.scratch() as scratch:
            local = scratch / f"adopted.{extension}"
            try:
                self.storage.download_to(donor.storage_key, local)
            except ObjectMissing:
                return None  # its file was deleted meanwhile (or the object lost): convert
            size = self.storage.put_file(storage_key, local, donor.media_type)
            self._learn_from(subject, plan, local)
        # Its own copy, so deleting either file never breaks the other's artifact.
        mine = replace(donor, id="", file_id="", source_id=subject.source_id,
                       storage_key=storage_key, size_bytes=size)
        return self._record(subject, key, mine, plan.options, content)

    def _password_tag(self, source_id: str, password: str | None) -> str:
        if not password:
            return ""
        return hmac.new(self.signer.secret, f"password\0{source_id}\0{password}".encode(),
                        hashlib.sha256).hexdigest()

    def _make(self, subject: Subject, plan: ExportPlan, key: str, content: str | None,
              deadline: float) -> Artifact:
        # Cache hits never get here: answering from artifacts already stored writes nothing.
        self.disk.check()
        with self.engine.scratch() as scratch:
            try:
                made = self._produce(subject, plan, scratch, deadline)
            except (UnprocessableDocument, PasswordIncorrect, UpstreamError, StorageError,
                    OSError) as exc:
                # LibreOffice reports a full disk as a failed export: a verdict on the
                # document only if space was not what ran out. Asked while the scratch
                # directory still holds whatever filled the disk.
                self.disk.explain(exc)
                raise
            self._learn_from(subject, plan, made.path)
            storage_key = subject.index.storage_key(key, extension_of(plan.target,
                                                                      made.media_type))
            size = self.storage.put_file(storage_key, made.path, made.media_type)
        with self._lock:
            self.produced[made.produced_by] += 1
        metrics.ARTIFACTS_PRODUCED.labels(path=made.produced_by).inc()
        artifact = Artifact(id="", file_id="", source_id=subject.source_id, format=plan.target,
                            media_type=made.media_type, storage_key=storage_key,
                            size_bytes=size, produced_by=made.produced_by)
        return self._record(subject, key, artifact, plan.options, content)

    def _record(self, subject: Subject, key: str, artifact: Artifact, options: dict[str, Any],
                content: str | None) -> Artifact:
        """Record a stored artifact; if its file was deleted meanwhile, drop the object too."""
        try:
            return subject.index.record(key, artifact, options, content)
        except SourceGone:
            # The file's delete already removed its prefix; this object came after it.
            self.storage.delete(artifact.storage_key)
            raise

    def _produce(self, subject: Subject, plan: ExportPlan, scratch: Path,
                 deadline: float) -> Made:
        if plan.render_from:
            # PNG pages are drawn from the PDF, which is cached as the artifact it is:
            # PNG after PDF (or other pages after some) costs no second LibreOffice call.
            pdf_plan = self.matrix.plan(plan.source, plan.render_from,
                                        {"password": plan.password} if plan.password else {})
            # _run, not run: the request is counted once, as the PNG it asked for.
            pdf = self._run(subject, pdf_plan, deadline).artifact
            local = scratch / "source.pdf"
            self.storage.download_to(pdf.storage_key, local)
            return self.producer.png(local, plan, scratch, deadline - time.monotonic())
        source = scratch / f"source.{plan.source}"
        subject.fetch(source)
        encrypted = subject.encrypted
        if encrypted and plan.password and decrypt.handles(plan.source):
            plain = scratch / f"plain.{plan.source}"
            decrypt.decrypt(source, plan.password, plain)
            source, encrypted = plain, False
            plan = replace(plan, password=None)
        # Costed from the bytes at hand (every path has them), pages when the file has them.
        demand = Demand(subject.tenant, estimate_cost(source.stat().st_size, subject.pages))
        if plan.target == "csv":
            return self.csv.export(source, plan, scratch, deadline, encrypted,
                                   subject.sheets, lambda names: subject.learn(sheets=names),
                                   demand)
        return self.producer.document(source, plan, scratch, deadline, encrypted, demand)

    def _learn_from(self, subject: Subject, plan: ExportPlan, made: Path) -> None:
        # A default PDF, made here or adopted from the same bytes, tells the file's metadata.
        if plan.target != "pdf" or plan.options:
            return
        try:
            self._learn_from_pdf(subject, made, plan.family)
        except Exception:  # metadata is a bonus; never fail the conversion for it
            logger.warning("could not read metadata from the PDF of %s",
                           subject.source_id, exc_info=True)

    def _learn_from_pdf(self, subject: Subject, pdf: Path, family: str) -> None:
        # The first default PDF tells what the file's reader could not: page count,
        # and title and author for formats without a library.
        info = png_render.pdf_info(pdf)
        found: dict[str, Any] = {}
        # A workbook's pages depend on print ranges; only documents and decks have pages.
        if info.get("Pages") and family != "calc":
            found["pages"] = int(str(info["Pages"]))
        for field_name, key in (("title", "Title"), ("author", "Author")):
            value = str(info.get(key) or "").strip()
            found[field_name] = value or None
        subject.learn(**found)


def tenant_of(principal: Principal, lane: Lane = "sync") -> Tenant:
    """The engine's view of a caller: its workspace and key, and the class of the work."""
    return Tenant(principal.workspace, principal.key_id, lane)


def extension_of(target: str, media_type: str) -> str:
    """The file extension of an artifact: the target's, or zip for an archive of parts."""
    return "zip" if media_type.startswith("application/zip") else target

