"""Receiving a document: spool it to disk under the size limit, then decide what it really is.

Uploads, one-shot conversions and URL imports all come in through here, so each
of them gets the same limits and the same verdicts on what it was sent.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from converter.detect import Detection, check_extension, detect
from converter.diskspace import DiskGuard, full_disk, no_space
from converter.errors import InvalidRequest, PayloadTooLarge, UnprocessableDocument
from converter.matrix import Matrix

# LibreOffice's layout time grows steeply with table nesting (1,000 levels: 6 s; 5,000:
# minutes); real documents stay in single digits.
MAX_TABLE_DEPTH = 50
CHUNK = 1024 * 1024
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]+")


def safe_filename(raw: str | None) -> str:
    """The client's file name without directories or control characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE.sub("_", name).strip(" .")
    return name[:255] or "document"


@dataclass(frozen=True)
class Received:
    """A vetted document in a temporary file, removed when its context ends."""

    path: Path
    filename: str
    size_bytes: int
    sha256: str
    format: str
    detection: Detection


class Intake:
    """Spools and vets incoming documents."""

    def __init__(self, matrix: Matrix, tmp_dir: Path, max_bytes: int,
                 max_uncompressed: int, disk: DiskGuard) -> None:
        self.matrix = matrix
        self.disk = disk
        self.tmp_dir = tmp_dir
        self.max_bytes = max_bytes
        self.max_uncompressed = max_uncompressed
        tmp_dir.mkdir(parents=True, exist_ok=True)

    @contextmanager
    def spooled(self, field: str = "file") -> Iterator[IO[bytes]]:
        """A temporary file to spool into; removed when the context ends.

        Refused with 507 when disk space is short, and a write that runs out of space
        while the file is in use (the spool itself, or storing what was spooled) is too.
        """
        self.disk.check()
        try:
            with tempfile.NamedTemporaryFile(dir=self.tmp_dir, prefix="upload-") as tmp:
                yield tmp
        except OSError as exc:
            if no_space(exc):
                raise full_disk() from exc
            raise

    def spool(self, stream: IO[bytes], out: IO[bytes], field: str = "file") -> tuple[str, int]:
        """Copy stream to out in chunks; return (sha256, size); 413 past the limit."""
        sha = hashlib.sha256()
        size = 0
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise PayloadTooLarge(
                    f"{field} is larger than the {self.max_bytes // 2**20} MiB limit "
                    "(CONVERTER_MAX_UPLOAD_MB)", field=field, limit_bytes=self.max_bytes)
            sha.update(chunk)
            out.write(chunk)
        out.flush()
        return sha.hexdigest(), size

    @contextmanager
    def receive(self, stream: IO[bytes], filename: str | None,
                field: str = "file") -> Iterator[Received]:
        """Spool and vet a stream; the Received file lives until the context ends."""
        name = safe_filename(filename)
        with self.spooled() as tmp:
            digest, size = self.spool(stream, tmp, field)
            yield self.vet(Path(tmp.name), name, digest, size, field)

    def vet(self, path: Path, name: str, digest: str, size: int,
            field: str = "file") -> Received:
        """Decide the real format of a spooled file and refuse what must not be converted."""
        if size == 0:
            raise InvalidRequest(f"{field} is empty", field=field)
        found = detect(path, name)
        contradiction = check_extension(found, name)
        if contradiction:
            raise InvalidRequest(f"{field}: {contradiction}", field=field)
        if found.format is None or found.format not in self.matrix.sources:
            raise InvalidRequest(
                f"{field}: unsupported document ({found.reason or found.container}); "
                f"supported formats: {', '.join(self.matrix.sources)}",
                field=field, valid_formats=list(self.matrix.sources))
        if found.table_depth > MAX_TABLE_DEPTH:
            raise UnprocessableDocument(
                f"The document nests tables {found.table_depth} levels deep; at most "
                f"{MAX_TABLE_DEPTH} are supported")
        if found.uncompressed_size > self.max_uncompressed:
            raise UnprocessableDocument(
                f"The document unpacks to {found.uncompressed_size // 2**20} MiB, more than "
                f"the {self.max_uncompressed // 2**20} MiB allowed")
        return Received(path=path, filename=name, size_bytes=size, sha256=digest,
                        format=found.format, detection=found)


def with_extension(filename: str, extension: str) -> str:
    """The original file name with a new extension."""
    stem = filename.rsplit(".", 1)[0] if "." in filename else filename
    return f"{stem or 'document'}.{extension}"

