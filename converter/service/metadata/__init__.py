"""Document metadata (pages, sheet names, title, author) read without LibreOffice.

Each format's reader takes what the file stores about itself: OOXML docProps and the
workbook/presentation parts, ODF meta.xml and content.xml (or the flat file), OLE2 property
sets and BIFF records, RTF's info group. A field the document simply lacks is None; a field
a reader could not determine is listed in ``unknown`` for the service to fill in later
(after the first PDF). Hostile input never raises: whatever breaks leaves fields unknown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from converter.service.metadata.found import Found
from converter.service.metadata.odf import read_flat_odf, read_odf
from converter.service.metadata.ole import read_ole
from converter.service.metadata.ooxml import read_ooxml
from converter.service.metadata.rtf import read_rtf

logger = logging.getLogger("converter.metadata")

FIELDS = ("pages", "sheets", "title", "author")
# Which fields mean anything for a family: pages for documents and decks, sheets for
# workbooks. The others are None and known.
APPLICABLE = {"writer": ("pages", "title", "author"), "calc": ("sheets", "title", "author"),
              "impress": ("pages", "title", "author")}
_READERS: dict[str, Callable[[Path, str, str], Found]] = {
    **dict.fromkeys(("docx", "xlsx", "pptx"), lambda p, fmt, _f: read_ooxml(p, fmt)),
    **dict.fromkeys(("odt", "ods", "odp"), lambda p, _fmt, family: read_odf(p, family)),
    **dict.fromkeys(("fodt", "fods", "fodp"), lambda p, _fmt, family: read_flat_odf(p, family)),
    **dict.fromkeys(("doc", "xls", "ppt"), lambda p, fmt, _f: read_ole(p, fmt)),
    "rtf": lambda p, _fmt, _f: read_rtf(p),
}


@dataclass(frozen=True)
class DocumentMetadata:
    """What a document says about itself, and which of it could not be read."""

    pages: int | None
    sheets: list[str] | None
    title: str | None
    author: str | None
    encrypted: bool
    unknown: tuple[str, ...]  # fields this reader could not determine (filled in later)


def read_metadata(path: Path, fmt: str, family: str, encrypted: bool) -> DocumentMetadata:
    """Read the metadata of the document at path, detected as fmt of family; never raises."""
    applicable = APPLICABLE.get(family, FIELDS)
    found = Found()
    reader = _READERS.get(fmt)
    # An encrypted document's parts are ciphertext: nothing in them can be trusted.
    if reader is not None and not encrypted:
        try:
            found = reader(path, fmt, family)
        # Hostile files break parsers in every way there is; the answer is "unknown".
        except Exception as exc:
            logger.info("metadata of %s (%s) unreadable: %s: %s", path.name, fmt,
                        exc.__class__.__name__, exc)
            found = Found()
    unknown = tuple(name for name in FIELDS if name in applicable and name not in found)
    return DocumentMetadata(
        pages=found.get("pages") if "pages" in applicable else None,
        sheets=found.get("sheets") if "sheets" in applicable else None,
        title=found.get("title"),
        author=found.get("author"),
        encrypted=encrypted,
        unknown=unknown,
    )
