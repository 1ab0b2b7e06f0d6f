"""Document metadata at upload: what a library can read without LibreOffice, as row values."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from converter.service.intake import Received

if TYPE_CHECKING:
    from converter.service.files import FileRecord

METADATA_FIELDS = ("pages", "sheets", "title", "author")


def read_metadata(received: Received) -> dict[str, Any]:
    """FileRecord metadata fields for a vetted document."""
    return {"encrypted": received.detection.encrypted, "unknown": METADATA_FIELDS}


def metadata_columns(record: FileRecord) -> dict[str, Any]:
    """The files-table columns of a record's metadata."""
    return {"encrypted": record.encrypted, "pages": record.pages,
            "sheets": json.dumps(record.sheets) if record.sheets is not None else None,
            "title": record.title, "author": record.author,
            "metadata_unknown": json.dumps(list(record.unknown))}
