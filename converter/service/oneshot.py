"""One-shot conversion: bytes (or a URL) in, converted bytes out, in one call.

It shares the conversion cache, keyed by the sha256 of the bytes, the format
and the options within the caller's workspace, so a sidecar that sends the same
document twice gets the second answer without LibreOffice. Nothing but that
cached artifact is kept unless the caller asks for ``store``; then the upload
is kept as a file, visible like any other upload.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from converter.engine.scheduler import Tenant
from converter.service.artifact_index import Artifact, ContentArtifacts
from converter.service.conversion import ConversionService, Subject, tenant_of
from converter.service.files import FileService, check_scope
from converter.service.intake import Intake, Received, with_extension
from converter.service.metadata_reader import read_metadata
from converter.service.principal import Principal
from converter.service.url_fetch import UrlFetcher
from converter.storage import Storage


@dataclass(frozen=True)
class OneShotResult:
    """What to send back: the artifact, its download name, and what happened."""

    artifact: Artifact
    filename: str
    cached: bool
    file_id: str | None


class OneShotService:
    """Receives, converts through the content-keyed cache, and optionally stores."""

    def __init__(self, intake: Intake, files: FileService, conversions: ConversionService,
                 storage: Storage, fetcher: UrlFetcher) -> None:
        self.intake = intake
        self.files = files
        self.conversions = conversions
        self.storage = storage
        self.fetcher = fetcher

    @contextmanager
    def receive(self, stream: IO[bytes] | None, filename: str | None,
                url: str | None) -> Iterator[Received]:
        """The vetted document of a request: the uploaded stream, or fetched from url."""
        if stream is not None:
            with self.intake.receive(stream, filename) as received:
                yield received
            return
        assert url is not None
        with self.intake.spooled() as tmp:
            fetched = self.fetcher.fetch(url, cast(BinaryIO, tmp), self.intake.max_bytes)
            tmp.flush()
            yield self.intake.vet(Path(tmp.name), fetched.filename, fetched.sha256,
                                  fetched.size_bytes, field="url")

    def convert(self, principal: Principal, received: Received, target: str,
                options: dict[str, Any], store: bool, scope: str | None,
                tenant: Tenant | None = None) -> OneShotResult:
        """Convert a received document; keep it as a file too when store is set.

        tenant places the work in the engine's queue: the caller's key as sync work
        unless given (automations pass their key as async work).
        """
        deadline = time.monotonic() + self.conversions.timeout
        plan = self.conversions.matrix.plan(received.format, target, options)
        scope = check_scope(scope)
        family = self.conversions.matrix.sources[received.format].family
        subject = Subject(
            # The workspace is part of the identity: caches are never shared across owners.
            source_id=f"ws:{principal.workspace}:sha256:{received.sha256}",
            format=received.format, encrypted=received.detection.encrypted,
            fetch=lambda path: _copy(received.path, path),
            index=ContentArtifacts(self.conversions.db, self.storage, principal.workspace,
                                   received.sha256),
            sheets=read_metadata(received, family)["sheets"] if family == "calc" else None,
            tenant=tenant or tenant_of(principal))
        result = self.conversions.run(subject, plan, deadline)
        file_id = self.files.store(principal, received, scope).id if store else None
        name = with_extension(received.filename, _extension(result.artifact))
        return OneShotResult(result.artifact, name, result.cached, file_id)

    @contextmanager
    def local_copy(self, artifact: Artifact) -> Iterator[Path]:
        """A local path to the artifact's bytes (the object itself when storage is local)."""
        local = self.storage.local_path(artifact.storage_key)
        if local is not None and local.exists():
            yield local
            return
        with self.intake.spooled() as tmp:
            self.storage.download_to(artifact.storage_key, Path(tmp.name))
            yield Path(tmp.name)


def _copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)


def _extension(artifact: Artifact) -> str:
    return "zip" if artifact.media_type.startswith("application/zip") else artifact.format
