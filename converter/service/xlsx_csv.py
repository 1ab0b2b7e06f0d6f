"""xlsx to CSV without LibreOffice: openpyxl's sheet parser over the cached cell values.

What the fast path writes (one sheet per call):

- Cells hold the value Excel cached when it last calculated; formulas are never evaluated.
  A formula cell without a cached value raises NeedsLibreOffice before anything is written.
- Numbers are written as stored, not as displayed: no number format is applied (no
  percent sign, currency, thousands separator or fixed decimals), rounded to 15
  significant digits as Excel and LibreOffice do (``0.1+0.2`` is ``0.3``), with ``.``
  as decimal separator, positional from 1e-15 to 1e16 (``0.000001``,
  ``1000000000000000``) and ``1.23456789012346E+19`` beyond. Integers below 10**15
  are written as integers.
- Cells with a date or time number format are written as ISO 8601: ``2024-01-15``
  (a datetime at midnight), ``2024-01-15 13:45:30``, ``13:45:30`` (a time without a
  date), with ``.fff`` only when there are milliseconds; durations as ``26:03:00``.
- Booleans are ``TRUE``/``FALSE``; error values their code (``#DIV/0!``, ``#N/A``).
- Text is written as is. A field is quoted with ``"`` (doubled inside) only when it
  contains the delimiter, a quote, CR or LF. Lines end with LF.
- The sheet is written from A1 to the last row and the last column that hold a value;
  every line has that many fields (formatting alone does not extend the area). Merged
  cells keep their value in the top-left cell only. An empty sheet, or a chart sheet,
  is one empty line. Hidden rows, columns and sheets are written like the others.
- Characters the encoding cannot represent (windows-1252) become ``?``, one per
  character; ``utf-8-sig`` starts with a BOM.

LibreOffice's CSV export with "save cell contents as shown" false
(``libreoffice_filter_options``: ``44,34,76,1,,0,false,true,false,false,false,<sheet>``
for comma and UTF-8) writes the same cells with the same values. It spells some of them
differently: percentages as ``25%``, dates and times whose format is not ISO 8601 in
the locale's input form (``01/15/2024``, ``01:45:30 PM``, ``12/30/1899 16:00:00`` for a
time in a date format), exponents as ``1E+019``, and the 15th digit rounded from the
decimal rather than the binary value. Its decimal separator and date order follow the
process locale (``de_DE`` gives ``3,14`` and ``15.01.2024``) unless the profile pins
``/org.openoffice.Setup/L10N/ooSetupSystemLocale``. Where LibreOffice recalculates on
load regardless of the profile (formulas whose cached value is a boolean, an error or
empty text; pivot tables, which it rebuilds with its own captions) it writes its own
results, where the fast path keeps Excel's.

Hostile or corrupt packages (a DTD in any part, no package relationships, XML that is
not well-formed) raise UnprocessableDocument; anything else openpyxl cannot read, or a
worksheet it would misread (strict OOXML, rows out of order), raises NeedsLibreOffice.
"""

from __future__ import annotations

import datetime as dt
import re
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, BinaryIO
from xml.etree.ElementTree import ParseError, fromstring, iterparse

import openpyxl
from openpyxl.chartsheet import Chartsheet
from openpyxl.workbook import Workbook
from openpyxl.worksheet._read_only import ReadOnlyWorksheet
from openpyxl.worksheet._reader import WorkSheetParser
from openpyxl.xml.constants import SHEET_MAIN_NS

from converter.errors import InvalidRequest, UnprocessableDocument

DELIMITERS = (",", ";", "\t", "|")
ENCODINGS = ("utf-8", "utf-8-sig", "windows-1252")

# LibreOffice's tokens for the same choices: separator as a character code, charset as an
# rtl_TextEncoding (76 UTF-8, 1 windows-1252; it writes no BOM, so utf-8-sig is UTF-8 there).
_LO_SEPARATORS = {",": 44, ";": 59, "\t": 9, "|": 124}
_LO_CHARSETS = {"utf-8": 76, "utf-8-sig": 76, "windows-1252": 1}

_ROW = f"{{{SHEET_MAIN_NS}}}row"
_SHEET_DATA = f"{{{SHEET_MAIN_NS}}}sheetData"
_FORMULA = f"{{{SHEET_MAIN_NS}}}f"
_VALUE = f"{{{SHEET_MAIN_NS}}}v"
_OFFICE_DOCUMENT = "/officeDocument"
# Office writers put the root element within the first few hundred bytes; a prolog
# longer than this is treated as an attempt to hide a DTD behind padding.
_PROLOG_LIMIT = 65536
_PROLOG_ITEM = re.compile(rb"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
_ELEMENT_START = re.compile(rb"<[A-Za-z_]")
_MAX_RELS_BYTES = 1 << 20
# Beyond 15 significant digits a double holds binary noise that Excel never shows.
_EXACT_INT = 10**15
_MAX_ROW = 1_048_576
# The fast path runs in the web process and holds a whole sheet in memory; anything
# bigger goes to LibreOffice, whose supervised instances have memory limits and timeouts.
MAX_UNCOMPRESSED_BYTES = 256 * 1024 * 1024
MAX_OUTPUT_CHARS = 256 * 1024 * 1024
_POSITIONAL_MIN = 1e-15
_POSITIONAL_MAX = 1e16


class NeedsLibreOffice(Exception):
    """The fast path cannot produce a faithful CSV (e.g. formulas without cached values); use LibreOffice."""  # noqa: E501


def sheet_names(path: Path) -> list[str]:
    """Names of the workbook's sheets (chart sheets included) in workbook order."""
    _check_package(path)
    workbook = _load(path)
    try:
        return list(workbook.sheetnames)
    finally:
        workbook.close()


def write_csv(path: Path, sheet_index: int, out: BinaryIO, delimiter: str,
              encoding: str) -> None:
    """Write sheet ``sheet_index`` (0-based) of an xlsx as CSV to ``out``, all or nothing."""
    if delimiter not in DELIMITERS:
        raise InvalidRequest(f"delimiter must be one of {DELIMITERS!r}", field="options.delimiter",
                             valid_values=list(DELIMITERS))
    if encoding not in ENCODINGS:
        raise InvalidRequest(f"encoding must be one of {', '.join(ENCODINGS)}",
                             field="options.encoding", valid_values=list(ENCODINGS))
    _check_package(path)
    workbook = _load(path)
    try:
        names = workbook.sheetnames
        if not 0 <= sheet_index < len(names):
            raise InvalidRequest(
                f"sheet {sheet_index + 1} does not exist; the workbook has {len(names)}",
                field="options.sheet")
        sheet = workbook[names[sheet_index]]
        if isinstance(sheet, Chartsheet):
            # LibreOffice imports a chart sheet as a sheet without cells.
            text = "\n"
        elif isinstance(sheet, ReadOnlyWorksheet):
            text = _render(_sheet_rows(workbook, sheet), delimiter)
        else:
            raise NeedsLibreOffice(f"unexpected sheet type {type(sheet).__name__}")
    finally:
        workbook.close()
    # Encoded only once the whole sheet is known, so a failure leaves ``out`` untouched.
    out.write(text.encode(encoding, errors="replace"))


def libreoffice_filter_options(sheet_number: int, delimiter: str, encoding: str) -> str:
    """The CSV filter options under which LibreOffice writes the values this module writes."""
    # Tokens: separator, text delimiter ("), charset, first line, cell formats (none),
    # language (default), quote all text false, detect special numbers true, save as
    # shown FALSE (stored values, not the number format), formulas false, remove space
    # false, 1-based sheet number.
    return (f"{_LO_SEPARATORS[delimiter]},34,{_LO_CHARSETS[encoding]},1,,0,"
            f"false,true,false,false,false,{sheet_number}")


def _check_package(path: Path) -> None:
    """Refuse what is not a readable OPC package, or carries a DTD, before parsing it."""
    try:
        with zipfile.ZipFile(path) as archive:
            # Declared sizes bound what zipfile will inflate (it stops there, CRC fails).
            declared = sum(info.file_size for info in archive.infolist())
            if declared > MAX_UNCOMPRESSED_BYTES:
                raise NeedsLibreOffice(f"{declared} bytes unpacked is too large for the fast path")
            for info in archive.infolist():
                if info.filename.endswith((".xml", ".rels")) and not info.is_dir():
                    with archive.open(info) as member:
                        _check_prolog(info.filename, member)
            rels = _read_capped(archive, "_rels/.rels")
    # zipfile raises NotImplementedError for compression methods it does not support.
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError,
            NotImplementedError) as exc:
        raise UnprocessableDocument(f"not a readable xlsx package: {exc}") from None
    try:
        root = fromstring(rels)  # its prolog was checked above: no DTD
    except ParseError as exc:
        raise UnprocessableDocument(f"the package relationships are corrupt: {exc}") from None
    if not any(rel.get("Type", "").endswith(_OFFICE_DOCUMENT) for rel in root):
        raise UnprocessableDocument("the package relationships name no office document")


def _check_prolog(name: str, member: IO[bytes]) -> None:
    """Raise if an XML part declares a DTD (entity bombs, external entities)."""
    head = member.read(4096)
    verdict = _prolog_verdict(head)
    if verdict is None and len(head) == 4096:
        head += member.read(_PROLOG_LIMIT - len(head))
        verdict = _prolog_verdict(head)
        if verdict is None and len(head) >= _PROLOG_LIMIT:
            raise UnprocessableDocument(f"{name} has no root element in its first "
                                        f"{_PROLOG_LIMIT} bytes")
    if verdict is False:
        raise UnprocessableDocument(f"{name} declares a DTD; office documents do not")


def _prolog_verdict(head: bytes) -> bool | None:
    """True: the root element starts after a clean prolog; False: a DTD; None: unknown."""
    # UTF-16 parts: dropping the zero bytes leaves the ASCII markup searchable.
    flat = head.replace(b"\x00", b"").lstrip(b"\xef\xbb\xbf\xfe\xff")
    position = 0
    # Skip what may precede the root element (declaration, comments, PIs, space) so
    # that markup quoted inside a comment cannot pass for the root.
    while (item := _PROLOG_ITEM.match(flat, position)) is not None:
        position = item.end()
    if flat.startswith(b"<!DOCTYPE", position) or flat.startswith(b"<!ENTITY", position):
        return False
    if _ELEMENT_START.match(flat, position):
        return True
    return None


def _read_capped(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        with archive.open(name) as member:
            data = member.read(_MAX_RELS_BYTES + 1)
    except KeyError:
        raise UnprocessableDocument("the package has no _rels/.rels") from None
    if len(data) > _MAX_RELS_BYTES:
        raise UnprocessableDocument("_rels/.rels is implausibly large")
    return data


def _load(path: Path) -> Workbook:
    try:
        return openpyxl.load_workbook(path, read_only=True, data_only=True, keep_links=False)
    except ParseError as exc:
        # Checked packages have no DTD, so this is malformed XML in a workbook part.
        raise UnprocessableDocument(f"a workbook part is not well-formed XML: {exc}") from None
    except Exception as exc:  # openpyxl raises anything from KeyError to TypeError
        raise NeedsLibreOffice(f"openpyxl cannot read the workbook: {exc!r}") from None


class _CachedValueParser(WorkSheetParser):
    """openpyxl's cell parser that refuses formula cells without a cached value."""

    def parse_cell(self, element: Any) -> dict[str, Any]:
        """Parse one <c>; raise NeedsLibreOffice for a formula nobody calculated."""
        cell: dict[str, Any] = super().parse_cell(element)
        if cell["value"] is None and element.find(_FORMULA) is not None:
            # Only a text formula may legitimately cache the empty string (<v></v>).
            if element.get("t") != "str" or element.find(_VALUE) is None:
                raise NeedsLibreOffice(
                    f"cell {element.get('r', '?')} has a formula without a cached value")
        return cell


def _sheet_rows(workbook: Workbook, sheet: ReadOnlyWorksheet) -> Iterator[tuple[int, list[str]]]:
    """Yield (1-based row number, cell texts without trailing empties) for rows with cells."""
    # openpyxl keeps the sheet's XML stream and the style-derived date sets private; they
    # are what its own read-only iterator feeds the same parser, minus its per-cell objects.
    with sheet._get_source() as source:  # type: ignore[attr-defined]
        parser = _CachedValueParser(
            source, sheet._shared_strings, data_only=True,  # type: ignore[attr-defined]
            epoch=workbook.epoch, date_formats=workbook._date_formats,  # type: ignore[attr-defined]
            timedelta_formats=workbook._timedelta_formats)  # type: ignore[attr-defined]
        try:
            # End events only: a second event per element costs more than it saves.
            events = iterparse(source, events=("end",))
            previous = 0
            for _, element in events:
                if element.tag == _ROW:
                    try:
                        number, cells = _parse_row(parser, element, previous)
                    except (IndexError, KeyError, ValueError, TypeError, OverflowError) as exc:
                        # A shared-string index past the table, "abc" in a number cell:
                        # LibreOffice has its own ways of reading such cells.
                        raise NeedsLibreOffice(f"openpyxl cannot read row {previous + 1} "
                                               f"or the next: {exc!r}") from None
                    # The emptied <row> stays in the tree, a few dozen bytes per row.
                    element.clear()
                    if number <= previous or number > _MAX_ROW:
                        raise NeedsLibreOffice(f"row {number} is out of order or range")
                    previous = number
                    texts = _row_texts(cells)
                    if texts:
                        yield number, texts
                elif element.tag == _SHEET_DATA:
                    # Nothing after the cells (merges, formatting, extensions) changes a CSV.
                    return
            # No sheetData in the transitional namespace: strict OOXML or not a worksheet.
            raise NeedsLibreOffice("the worksheet part has no SpreadsheetML sheetData")
        except ParseError as exc:
            raise UnprocessableDocument(f"the worksheet is not well-formed XML: {exc}") from None


def _parse_row(parser: _CachedValueParser, row: Any, previous: int,
               ) -> tuple[int, list[dict[str, Any]]]:
    """openpyxl's parse_row, minus the cells that hold nothing (styled blanks)."""
    if any(cell.get("r") is None for cell in row):
        # Cells without a reference are placed by counting, blanks included: openpyxl's way.
        number, cells = parser.parse_row(row)
        return int(number), cells
    reference = row.get("r")
    number = int(reference) if reference else previous + 1
    parser.row_counter = number
    # A <c> without children has neither a value nor a formula; sheets written with
    # styled empty ranges hold mostly these, and openpyxl would build a dict for each.
    return number, [parser.parse_cell(cell) for cell in row if len(cell)]


def _row_texts(cells: list[dict[str, Any]]) -> list[str]:
    texts: list[str] = []
    for cell in cells:
        value = cell["value"]
        if value is None:
            continue
        column = cell["column"] - 1
        text = value if type(value) is str else _text(value)
        if column == len(texts):
            texts.append(text)
        elif column > len(texts):
            texts.extend([""] * (column - len(texts)))
            texts.append(text)
        else:
            texts[column] = text
    while texts and texts[-1] == "":
        texts.pop()
    return texts


def _text(value: Any) -> str:
    """The CSV text of a non-string cell value (see the module docstring for the rule)."""
    if value is True:
        return "TRUE"
    if value is False:
        return "FALSE"
    if type(value) is int:
        return str(value) if -_EXACT_INT < value < _EXACT_INT else _float(float(value))
    if type(value) is float:
        return _float(value)
    if isinstance(value, dt.datetime):
        if value.hour == value.minute == value.second == value.microsecond == 0:
            return value.date().isoformat()
        return value.strftime("%Y-%m-%d %H:%M:%S") + _millis(value.microsecond)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.strftime("%H:%M:%S") + _millis(value.microsecond)
    if isinstance(value, dt.timedelta):
        return _duration(value)
    return str(value)


def _float(value: float) -> str:
    text = f"{value:.15g}"
    if "e" not in text:
        return text
    if _POSITIONAL_MIN <= abs(value) < _POSITIONAL_MAX:
        # Spreadsheets show 1e-06 as 0.000001; 15 digits are kept, so nothing is invented.
        return format(Decimal(text), "f")
    return text.replace("e", "E")


def _millis(microsecond: int) -> str:
    return f".{microsecond // 1000:03d}" if microsecond else ""


def _duration(value: dt.timedelta) -> str:
    """[h]:mm:ss as Excel's duration formats show it, hours unbounded."""
    total_ms = round(value.total_seconds() * 1000)
    sign = "-" if total_ms < 0 else ""
    seconds, ms = divmod(abs(total_ms), 1000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"{sign}{hours}:{minute:02d}:{second:02d}" + (f".{ms:03d}" if ms else "")


def _render(rows: Iterator[tuple[int, list[str]]], delimiter: str) -> str:
    """Quote and pad the rows into CSV text: every line as wide as the widest row."""
    lines: list[tuple[int, str, int]] = []
    width = 0
    needs_quotes = re.compile(f'[{re.escape(delimiter)}"\n\r]').search
    for number, texts in rows:
        for i, text in enumerate(texts):
            if needs_quotes(text):
                texts[i] = '"' + text.replace('"', '""') + '"'
        lines.append((number, delimiter.join(texts), len(texts)))
        width = max(width, len(texts))
    if not lines:
        return "\n"
    # Padding is where a tiny hostile sheet (one value at XFD1048576) would explode.
    size = lines[-1][0] * width + sum(len(line) for _, line, _ in lines)
    if size > MAX_OUTPUT_CHARS:
        raise NeedsLibreOffice(f"the CSV would be about {size} characters")
    parts: list[str] = []
    empty = delimiter * (width - 1) + "\n"
    previous = 0
    for number, line, count in lines:
        # Rows without values between two written rows are written as empty lines.
        parts.extend([empty] * (number - previous - 1))
        parts.append(line + delimiter * (width - count) + "\n")
        previous = number
    return "".join(parts)
