"""Document metadata at upload, as FileRecord fields and files-table columns."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from converter.service.intake import Received
from converter.service.metadata import FIELDS
from converter.service.metadata import read_metadata as read_document

if TYPE_CHECKING:
    from converter.service.files import FileRecord

METADATA_FIELDS = FIELDS


def read_metadata(received: Received, family: str) -> dict[str, Any]:
    """FileRecord metadata fields of a vetted document, read without LibreOffice."""
    found = read_document(received.path, received.format, family,
                          received.detection.encrypted)
    return {"encrypted": found.encrypted, "pages": found.pages, "sheets": found.sheets,
            "title": found.title, "author": found.author, "unknown": found.unknown}


def metadata_columns(record: FileRecord) -> dict[str, Any]:
    """The files-table columns of a record's metadata."""
    return {"encrypted": record.encrypted, "pages": record.pages,
            "sheets": json.dumps(record.sheets) if record.sheets is not None else None,
            "title": record.title, "author": record.author,
            "metadata_unknown": json.dumps(list(record.unknown))}
