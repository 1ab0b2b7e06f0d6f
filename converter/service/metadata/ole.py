"""Metadata of legacy OLE2 documents (doc, xls, ppt) without opening their content.

Title and author come from the SummaryInformation property set ([MS-OLEPS]), read with
olefile; so do Word's saved page count and, from DocumentSummaryInformation, PowerPoint's
slide and hidden-slide counts. Excel sheet names come from the BOUNDSHEET records at the
start of the BIFF8 Workbook stream ([MS-XLS] 2.4.28), parsed here in a few lines.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import olefile

from converter.service.metadata.found import Found, clean

if TYPE_CHECKING:  # generic only in the stubs
    Ole = olefile.OleFileIO[Any]
_SUMMARY = "\x05SummaryInformation"
_DOC_SUMMARY = "\x05DocumentSummaryInformation"
_CODEPAGE, _TITLE, _AUTHOR, _PAGECOUNT = 1, 2, 4, 14  # PIDSI_*
_SLIDES, _HIDDEN = 7, 9  # PIDDSI_SLIDECOUNT, PIDDSI_HIDDENCOUNT
# Code pages with no "cpNNNN" codec name in Python.
_CODECS = {65001: "utf-8", 1200: "utf-16-le", 1201: "utf-16-be", 10000: "mac_roman",
           20127: "ascii", 28591: "latin-1"}
# BIFF record types; the globals substream ends at the first EOF.
_BOF, _EOF, _BOUNDSHEET, _FILEPASS = 0x0809, 0x000A, 0x0085, 0x002F
_BIFF8 = b"\x00\x06"  # BOF version 0x0600, little-endian
_VB_MODULE = 6  # BOUNDSHEET sheet type that is code, not a sheet
MAX_WORKBOOK_STREAM = 64 << 20  # olefile reads a whole stream into memory to open it
MAX_SHEETS = 10_000


def read_ole(path: Path, fmt: str) -> Found:
    """Title and author, plus pages (doc, ppt) or sheet names (xls)."""
    with olefile.OleFileIO(str(path)) as ole:
        found = Found()
        summary = _properties(ole, _SUMMARY)
        if summary is None:
            found.update(Found(title=None, author=None))  # no property set: it has none
        else:
            encoding = _encoding(summary.get(_CODEPAGE))
            found.update(Found(title=_text(summary.get(_TITLE), encoding),
                               author=_text(summary.get(_AUTHOR), encoding)))
            pages = summary.get(_PAGECOUNT)
            if fmt == "doc" and isinstance(pages, int) and pages > 0:
                found["pages"] = pages
        try:
            if fmt == "ppt":
                found.update(_slides(ole))
            elif fmt == "xls":
                found.update(_sheets(ole))
        # olefile raises many types on broken sector chains; the fields just stay unknown
        # and the title already read is kept.
        except Exception:
            pass
        return found


def _properties(ole: Ole, stream: str) -> Mapping[int, object] | None:
    if not ole.exists(stream):
        return None
    return ole.getproperties(stream, convert_time=False)


def _encoding(codepage: object) -> str:
    if not isinstance(codepage, int):
        return "cp1252"
    codepage &= 0xFFFF  # stored as a signed 16-bit value: 65001 arrives as -535
    name = _CODECS.get(codepage, f"cp{codepage}")
    try:
        "".encode(name)
    except LookupError:
        return "cp1252"
    return name


def _text(value: object, encoding: str) -> str | None:
    if isinstance(value, bytes):
        return clean(value.split(b"\x00", 1)[0].decode(encoding, "replace"))
    return clean(value) if isinstance(value, str) else None


def _slides(ole: Ole) -> Found:
    """Slides a PDF will show: PowerPoint's saved count less its hidden ones."""
    props = _properties(ole, _DOC_SUMMARY) or {}
    slides, hidden = props.get(_SLIDES), props.get(_HIDDEN, 0)
    if isinstance(slides, int) and isinstance(hidden, int) and 0 <= hidden <= slides:
        return Found(pages=slides - hidden)
    return Found()


def _sheets(ole: Ole) -> Found:
    """Sheet names from the BIFF8 workbook globals' BOUNDSHEET records, in order."""
    # Excel 95 (BIFF5, a "Book" stream) is left unknown: nothing here could test it.
    if not ole.exists("Workbook") or ole.get_size("Workbook") > MAX_WORKBOOK_STREAM:
        return Found()
    data = ole.openstream("Workbook").read()
    names: list[str] = []
    pos = 0
    # Each record is a 2-byte type, a 2-byte length and that many bytes of data.
    while pos + 4 <= len(data):
        kind, length = struct.unpack_from("<HH", data, pos)
        body = data[pos + 4:pos + 4 + length]
        if len(body) < length:
            return Found()  # cut short: the list may be incomplete
        if pos == 0 and (kind != _BOF or body[:2] != _BIFF8):
            return Found()
        pos += 4 + length
        if kind == _FILEPASS:
            return Found()  # what follows is encrypted; names read now would be noise
        if kind == _BOUNDSHEET:
            name = _sheet_name(body)
            if name is None or len(names) >= MAX_SHEETS:
                return Found()
            if body[5] != _VB_MODULE:
                names.append(name)
        elif kind == _EOF:
            return Found(sheets=names)
    return Found()


def _sheet_name(body: bytes) -> str | None:
    """The name in a BOUNDSHEET record: stream offset (4), state (1), type (1), then a
    ShortXLUnicodeString: length, flags (bit 0: two bytes a character), characters."""
    if len(body) < 8:
        return None
    count, wide = body[6], body[7] & 1
    raw = body[8:8 + count * (2 if wide else 1)]
    if len(raw) != count * (2 if wide else 1):
        return None
    # Compressed strings drop the high byte of UTF-16, so they are Latin-1.
    return raw.decode("utf-16-le" if wide else "latin-1")
