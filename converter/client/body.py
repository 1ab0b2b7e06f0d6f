"""Upload bodies: a document from a path, bytes or stream, sent as streamed multipart.

requests would build a multipart body in memory; this one is read in chunks, so a
100 MiB upload costs no extra memory, reports progress, and can be rewound for a retry.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from urllib3.fields import RequestField

# What an upload may come from: a path, the document's bytes, or a readable binary stream.
Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO
# Called with (bytes done, total bytes or None) as a transfer advances.
Progress = Callable[[int, int | None], None]
_CHUNK = 256 * 1024
_SPOOL_IN_MEMORY = 8 * 1024 * 1024


class Document:
    """A source opened for upload: a seekable stream, its size and a file name."""

    def __init__(self, source: Source, filename: str | None = None) -> None:
        self._owned = False
        if isinstance(source, (bytes, bytearray, memoryview)):
            stream: BinaryIO = io.BytesIO(bytes(source))
            name = filename or "document"
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            stream = path.open("rb")
            self._owned = True
            name = filename or path.name
        else:
            stream = source
            name = filename or Path(str(getattr(source, "name", "") or "document")).name
            if not _seekable(stream):
                # A pipe cannot be rewound for a retry: keep a copy (in memory while small).
                spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)  # noqa: SIM115
                shutil.copyfileobj(stream, spool)
                spool.seek(0)
                stream = spool  # type: ignore[assignment]
                self._owned = True
        self.stream = stream
        self.filename = name
        self.start = stream.tell()
        stream.seek(0, os.SEEK_END)
        self.size = stream.tell() - self.start
        stream.seek(self.start)

    def close(self) -> None:
        """Close the stream if this object opened it."""
        if self._owned:
            self.stream.close()


def _seekable(stream: BinaryIO) -> bool:
    try:
        return stream.seekable()
    except (AttributeError, ValueError):
        return False


class MultipartBody:
    """multipart/form-data with text fields and one file part, read in chunks."""

    def __init__(self, fields: dict[str, str], file_field: str, document: Document,
                 progress: Progress | None = None) -> None:
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in fields.items():
            part = RequestField(name, value)
            part.make_multipart()
            parts.append(f"--{boundary}\r\n{part.render_headers()}{value}\r\n".encode())
        file_part = RequestField(file_field, b"", filename=document.filename)
        file_part.make_multipart(content_type="application/octet-stream")
        parts.append(f"--{boundary}\r\n{file_part.render_headers()}".encode())
        self._head = b"".join(parts)
        self._tail = f"\r\n--{boundary}--\r\n".encode()
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self.document = document
        self.progress = progress
        self._length = len(self._head) + document.size + len(self._tail)
        self.rewind()

    def __len__(self) -> int:
        return self._length

    def rewind(self) -> None:
        """Start again from the first byte (before a retry)."""
        self.document.stream.seek(self.document.start)
        self._pending = [self._head]
        self._file_done = False
        self._sent = 0
        self._tail_done = False
        self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(min(self._sent, self.document.size), self.document.size)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the body (``b""`` at the end)."""
        if self._pending:
            return self._pending.pop(0)
        if not self._file_done:
            chunk = self.document.stream.read(_CHUNK if size is None or size < 0 else size)
            if chunk:
                self._sent += len(chunk)
                self._report()
                return bytes(chunk)
            self._file_done = True
        if not self._tail_done:
            self._tail_done = True
            return self._tail
        return b""

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK):
            yield chunk
