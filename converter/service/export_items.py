"""What an export produces: each source converted (through the cache), bundled, delivered.

Everything here runs inside an export worker holding the export's lease. Local
copies live in a scratch directory that is removed with the attempt; what
remains is artifacts (downloadable) and what the connector received.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from converter.connectors.delivery import deliver
from converter.connectors.paths import join, numbered, safe_name
from converter.db.engine import utcnow
from converter.db.schema import files, runs
from converter.engine.scheduler import Tenant
from converter.errors import ConverterError, NotFound
from converter.matrix import Matrix
from converter.service.artifact_index import Artifact, FileArtifacts
from converter.service.connectors import ConnectorService
from converter.service.conversion import ConversionService, cache_key, extension_of
from converter.service.runs import file_columns, file_record, iso
from converter.storage import Storage


class RunNotFinished(Exception):
    """A source run is still pending or running: the export waits for it."""


class SourceFailed(ConverterError):
    """A source cannot be exported (its run failed, or it was deleted)."""

    status = 409
    type = "conflict"


@dataclass
class Item:
    """One output of an export, on local disk for the length of the attempt."""

    source: dict[str, str]
    file_id: str
    artifact: Artifact
    filename: str
    local: Path
    sha256: str = ""
    delivery: dict[str, Any] | None = None

    def public(self) -> dict[str, Any]:
        """What the export row's result keeps of it."""
        return {**self.source, "file_id": self.file_id, "artifact_id": self.artifact.id,
                "filename": self.filename, "size_bytes": self.artifact.size_bytes,
                "sha256": self.sha256, "delivery": self.delivery}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Producer:
    """Turns an export row into items, a bundle, and deliveries."""

    def __init__(self, db: Engine, storage: Storage, conversions: ConversionService,
                 matrix: Matrix, connectors: ConnectorService, delivery_attempts: int,
                 backoff: float) -> None:
        self.db = db
        self.storage = storage
        self.conversions = conversions
        self.matrix = matrix
        self.connectors = connectors
        self.delivery_attempts = delivery_attempts
        self.backoff = backoff

    def item(self, row: Any, source: dict[str, str], scratch: Path, index: int) -> Item:
        """Convert (or take as it is) one source and copy the result into scratch."""
        tenant = Tenant(row.workspace, row.api_key_id, "async")
        deadline = time.monotonic() + self.conversions.timeout
        options = json.loads(row.options)
        if "run_id" in source:
            query = (select(runs.c.status, runs.c.artifact_id, runs.c.error, *file_columns())
                     .select_from(runs.join(files, files.c.id == runs.c.file_id))
                     .where(runs.c.id == source["run_id"]))
            with self.db.connect() as conn:
                found = conn.execute(query).first()
            if found is None:
                raise SourceFailed(f"Run {source['run_id']} no longer exists")
            if found.status in ("pending", "running"):
                raise RunNotFinished(source["run_id"])
            if found.status != "completed" or found.artifact_id is None:
                raise SourceFailed(f"Run {source['run_id']} failed ({found.error}); it has "
                                   "no output to export")
            record = file_record(found)
            artifact = self.conversions.artifact(found.artifact_id)
            if row.format and artifact.format != row.format:
                plan = self.matrix.plan(artifact.format, row.format, options)
                artifact = self.conversions.produce(record, artifact.id, artifact.storage_key,
                                                    plan, deadline, tenant).artifact
        else:
            with self.db.connect() as conn:
                found = conn.execute(select(*file_columns())
                                     .where(files.c.id == source["file_id"])).first()
            if found is None:
                raise SourceFailed(f"File {source['file_id']} no longer exists")
            record = file_record(found)
            plan = self.matrix.plan(record.format, row.format, options)
            artifact = self.conversions.produce(record, record.id, record.storage_key, plan,
                                                deadline, tenant).artifact
        filename = safe_name(record.filename, extension_of(artifact.format,
                                                          artifact.media_type))
        local = scratch / f"{index:03d}-{filename}"
        self.storage.download_to(artifact.storage_key, local)
        return Item(source, record.id, artifact, filename, local, _sha256(local))

    def bundle(self, row: Any, items: list[Item], scratch: Path) -> Item:
        """One zip of every item (names made unique), stored as a downloadable artifact."""
        path = scratch / "bundle.zip"
        used: set[str] = set()
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for item in items:
                name = next(numbered(item.filename, n) for n in range(len(items) + 1)
                            if numbered(item.filename, n) not in used)
                used.add(name)
                archive.write(item.local, name)
        first = items[0].file_id
        index = FileArtifacts(self.db, self.storage, first)
        key = cache_key(f"export:{row.id}", "zip", {})
        storage_key = index.storage_key(key, "zip")
        size = self.storage.put_file(storage_key, path, "application/zip")
        artifact = index.record(key, Artifact(
            id="", file_id="", source_id=row.id, format="zip", media_type="application/zip",
            storage_key=storage_key, size_bytes=size, produced_by="export"), {})
        return Item({}, first, artifact, f"export-{row.id.removeprefix('exp_')}.zip", path,
                    _sha256(path))

    def deliver(self, row: Any, outputs: list[Item]) -> None:
        """Write every output to the export's connector (retrying transient failures)."""
        try:
            provider = self.connectors.provider(row.workspace, row.connector_id)
        except NotFound:
            raise SourceFailed(f"Connector {row.connector_id} was deleted before the export "
                               "was delivered") from None
        for item in outputs:
            if (row.attempts or 0) > 1:
                # An earlier attempt of this export may have been killed mid-write: what
                # it left under this name (a temp file, open multipart parts) goes first.
                provider.discard_partial(join(row.subpath, item.filename))
            done = deliver(provider, item.local, row.subpath, item.filename, row.on_conflict,
                           attempts=self.delivery_attempts, backoff=self.backoff)
            item.delivery = {"connector_id": row.connector_id, "path": done.path,
                             "size_bytes": done.size_bytes, "sha256": done.sha256,
                             "delivered_at": iso(utcnow()), "etag": done.etag}

