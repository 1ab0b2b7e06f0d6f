"""The xlsx→CSV fast path against openpyxl's own values and against LibreOffice's export.

The reference for every cell is openpyxl loaded normally (data_only=True, not read-only),
which builds its cells by a different route than the module's streaming parser. The
LibreOffice comparison runs soffice itself with the filter options the module recommends
and the service's hardened profile, one sheet at a time through the sheet token.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
import subprocess
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from converter.engine.profile import write_profile
from converter.errors import InvalidRequest, UnprocessableDocument
from converter.service import xlsx_csv
from converter.service.xlsx_csv import (
    NeedsLibreOffice,
    libreoffice_filter_options,
    sheet_names,
    write_csv,
)
from tests.support.csv_values import same_value

DATES = "xlsx/ConditionalFormattingSamples.xlsx"
FORMULAS = "xlsx/StructuredRefs-lots-with-lookups.xlsx"
RTL = "xlsx/right-to-left.xlsx"
JAPANESE = "xlsx/51519.xlsx"
KOREAN = "xlsx/1_NoIden.xlsx"
TRICKY_TEXT = ["a,b", "a;b", "a\tb", "a|b", 'he said "hi"', "line1\nline2", "  padded  ",
               "00123", "=not a formula", "é€"]


def _fast(path: Path, index: int, delimiter: str = ",", encoding: str = "utf-8") -> bytes:
    out = io.BytesIO()
    write_csv(path, index, out, delimiter, encoding)
    return out.getvalue()


def _rows(data: bytes, delimiter: str = ",", encoding: str = "utf-8") -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode(encoding), newline=""), delimiter=delimiter))


def _reference(path: Path) -> openpyxl.Workbook:
    with warnings.catch_warnings():
        # openpyxl's full loader drops header/footer codes it cannot parse, with a warning;
        # they are not cell values. The module under test never reaches those parts.
        warnings.filterwarnings("ignore", "Cannot parse header or footer", UserWarning)
        return openpyxl.load_workbook(path, data_only=True)


def _assert_cell(text: str, value: Any, where: str) -> None:
    """One CSV field against openpyxl's value, by the module's documented rule."""
    if value is None:
        assert text == "", where
    elif isinstance(value, bool):
        assert text == ("TRUE" if value else "FALSE"), where
    elif isinstance(value, int) and abs(value) < 10**15:
        assert text == str(value), where
    elif isinstance(value, int | float):
        # 15 significant digits are kept, as Excel and LibreOffice keep them.
        assert math.isclose(float(text), value, rel_tol=1e-14), (where, text, value)
    elif isinstance(value, dt.datetime):
        assert dt.datetime.fromisoformat(text) == value, (where, text, value)
        assert "T" not in text and (value.time() != dt.time() or len(text) == 10), where
    elif isinstance(value, dt.time):
        assert dt.time.fromisoformat(text) == value, (where, text, value)
    elif isinstance(value, dt.timedelta):
        hours, minutes, seconds = text.split(":")
        assert dt.timedelta(hours=int(hours), minutes=int(minutes),
                            seconds=float(seconds)) == value, (where, text, value)
    else:
        assert text == value, (where, text, value)


@pytest.mark.parametrize("name", [DATES, FORMULAS, RTL, JAPANESE, KOREAN])
def test_every_cell_matches_openpyxl(corpus: Path, name: str) -> None:
    path = corpus / name
    reference = _reference(path)
    assert sheet_names(path) == reference.sheetnames
    checked = expected = 0
    for index, title in enumerate(reference.sheetnames):
        sheet = reference[title]
        cells = {(c.row, c.column): c.value for row in sheet.iter_rows() for c in row
                 if c.value is not None and c.value != ""}
        data = _fast(path, index)
        if not cells:
            assert data == b"\n", title
            continue
        rows = _rows(data)
        height = max(r for r, _ in cells)
        width = max(c for _, c in cells)
        assert len(rows) == height, title
        assert all(len(row) == width for row in rows), title
        for r in range(1, height + 1):
            for c in range(1, width + 1):
                _assert_cell(rows[r - 1][c - 1], cells.get((r, c)), f"{title}!{r},{c}")
                checked += (r, c) in cells
        expected += len(cells)
    assert checked == expected > 0


def _generated(tmp_path: Path) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Text"
    for row, text in enumerate(TRICKY_TEXT, start=1):
        sheet.cell(row, 1, text).data_type = "s"  # "=not a formula" stays text
        sheet.cell(row, 3, row * 1.5)
    path = tmp_path / "text.xlsx"
    workbook.save(path)
    return path


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_quote_what_needs_it(tmp_path: Path, delimiter: str) -> None:
    path = _generated(tmp_path)
    data = _fast(path, 0, delimiter)
    rows = _rows(data, delimiter)
    assert rows == [[text, "", str(n * 1.5).removesuffix(".0")]
                    for n, text in enumerate(TRICKY_TEXT, start=1)]
    lines = data.decode().split("\n")  # line 6 holds the cell's own line break
    # Quoted only when needed: the padded text and the number-like text stay bare.
    assert lines[7].startswith("  padded  " + delimiter)
    assert lines[8].startswith("00123" + delimiter)
    assert data.count(b'"') == sum(2 + t.count('"') * 2 for t in TRICKY_TEXT
                                   if delimiter in t or '"' in t or "\n" in t)


def test_encodings(corpus: Path, tmp_path: Path) -> None:
    path = corpus / RTL
    utf8 = _fast(path, 1)
    assert re.search("[\u0590-\u06ff]", utf8.decode("utf-8"))  # Hebrew/Arabic letters
    with_bom = _fast(path, 1, encoding="utf-8-sig")
    assert with_bom == b"\xef\xbb\xbf" + utf8
    cp1252 = _fast(path, 1, encoding="windows-1252")
    # As LibreOffice does with a charset that lacks a character: one "?" per character.
    assert cp1252.decode("windows-1252") == re.sub(
        "[^\x00-\xff]", "?", utf8.decode("utf-8"))
    western = _fast(_generated(tmp_path), 0, encoding="windows-1252")
    assert "é€".encode("windows-1252") in western
    assert _rows(western, encoding="windows-1252")[9][0] == "é€"


def _sheet_xml(path: Path) -> str:
    with zipfile.ZipFile(path) as source:
        return source.read("xl/worksheets/sheet1.xml").decode()


def _replace_sheet_xml(path: Path, xml: str) -> None:
    """Rewrite the first sheet's XML, for cells openpyxl's writer cannot produce."""
    with zipfile.ZipFile(path) as source:
        parts = {info.filename: source.read(info) for info in source.infolist()}
    parts["xl/worksheets/sheet1.xml"] = xml.encode()
    with zipfile.ZipFile(path, "w") as target:
        for name, content in parts.items():
            target.writestr(name, content)


def test_formulas_without_cached_values_need_libreoffice(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    plain = workbook.active
    assert plain is not None
    plain["A1"] = 1
    computed = workbook.create_sheet("Computed")
    computed["A1"] = 2
    computed["A2"] = "=A1*2"  # openpyxl writes formulas without a cached value
    path = tmp_path / "uncalculated.xlsx"
    workbook.save(path)
    out = io.BytesIO()
    with pytest.raises(NeedsLibreOffice, match="A2"):
        write_csv(path, 1, out, ",", "utf-8")
    assert out.getvalue() == b""
    assert _fast(path, 0) == b"1\n"


def test_cached_empty_text_is_a_value(tmp_path: Path) -> None:
    path = tmp_path / "cached.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["A1"], sheet["B1"], sheet["A2"] = '=""', "=1+1", "end"
    workbook.save(path)
    # Give the formulas the cached values Excel would have written.
    xml = _sheet_xml(path)
    xml, count = re.subn(r'<c r="A1"[^>]*><f>(.*?)</f><v\s*/>',
                         r'<c r="A1" t="str"><f>\1</f><v></v>', xml)
    xml, count2 = re.subn(r"<f>1\+1</f><v\s*/>", "<f>1+1</f><v>2</v>", xml)
    assert count == count2 == 1, xml
    _replace_sheet_xml(path, xml)
    assert _fast(path, 0) == b",2\nend,\n"


def test_cells_without_references_are_placed_by_counting(tmp_path: Path) -> None:
    path = tmp_path / "norefs.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["A1"], sheet["C1"], sheet["B2"] = "a", "c", "b"
    workbook.save(path)
    xml = _sheet_xml(path)
    # Some writers omit r=; a styled blank <c/> then still takes a column.
    xml, count = re.subn(r'<c r="A1"([^>]*)>(.*?)</c><c r="C1"',
                         r'<c\1>\2</c><c s="0"/><c', xml)
    assert count == 1, xml
    _replace_sheet_xml(path, xml)
    assert _fast(path, 0) == b"a,,c\n,b,\n"


@pytest.mark.parametrize("cell", ['<c r="A1" t="s"><v>99</v></c>', '<c r="A1"><v>abc</v></c>'])
def test_cells_openpyxl_cannot_read_need_libreoffice(tmp_path: Path, cell: str) -> None:
    path = tmp_path / "odd.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["A1"] = "a"
    workbook.save(path)
    xml, count = re.subn(r'<c r="A1".*?</c>', cell, _sheet_xml(path))
    assert count == 1
    _replace_sheet_xml(path, xml)
    out = io.BytesIO()
    with pytest.raises(NeedsLibreOffice, match="row 1"):
        write_csv(path, 0, out, ",", "utf-8")
    assert out.getvalue() == b""


@pytest.mark.parametrize("name", ["bad/poc-xmlbomb.xlsx", "bad/xlsx-corrupted.xlsx",
                                  "bad/RtfParserTest_fail_5.rtf", "bad/truncated62886.docx"])
def test_hostile_and_corrupt_packages_are_refused_quickly(corpus: Path, name: str) -> None:
    out = io.BytesIO()
    started = time.monotonic()
    with pytest.raises(UnprocessableDocument):
        write_csv(corpus / name, 0, out, ",", "utf-8")
    with pytest.raises(UnprocessableDocument):
        sheet_names(corpus / name)
    assert time.monotonic() - started < 5
    assert out.getvalue() == b""


@pytest.mark.parametrize("prolog", [
    '<!-- <decoy> --><!DOCTYPE worksheet [<!ENTITY a "aaaaaaaa">]>',
    "<!--" + " " * 70000 + "-->",  # padding that pushes a DTD out of sight
])
def test_dtds_are_refused_wherever_the_prolog_hides_them(tmp_path: Path, prolog: str) -> None:
    path = tmp_path / "dtd.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["A1"] = "a"
    workbook.save(path)
    _replace_sheet_xml(path, '<?xml version="1.0"?>' + prolog + _sheet_xml(path))
    with pytest.raises(UnprocessableDocument, match="sheet1.xml"):
        write_csv(path, 0, io.BytesIO(), ",", "utf-8")


def test_a_far_corner_cell_goes_to_libreoffice_instead_of_exhausting_memory(
        tmp_path: Path) -> None:
    path = tmp_path / "corner.xlsx"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["A1"], sheet["XFD1048576"] = "a", "z"  # 17 GB of commas if padded
    workbook.save(path)
    out = io.BytesIO()
    started = time.monotonic()
    with pytest.raises(NeedsLibreOffice, match="characters"):
        write_csv(path, 0, out, ",", "utf-8")
    assert time.monotonic() - started < 5
    assert out.getvalue() == b""


def test_large_packages_go_to_libreoffice(corpus: Path, monkeypatch: pytest.MonkeyPatch,
                                          ) -> None:
    path = corpus / FORMULAS
    with zipfile.ZipFile(path) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    _fast(path, 0)
    # The real limit (256 MiB) set just below this workbook's unpacked size.
    monkeypatch.setattr(xlsx_csv, "MAX_UNCOMPRESSED_BYTES", unpacked - 1)
    with pytest.raises(NeedsLibreOffice, match="too large"):
        _fast(path, 0)


def test_unreadable_styles_need_libreoffice(corpus: Path) -> None:
    # picture.xlsx carries cellStyle attributes openpyxl's model rejects; LibreOffice reads it.
    with pytest.raises(NeedsLibreOffice):
        write_csv(corpus / "xlsx/picture.xlsx", 0, io.BytesIO(), ",", "utf-8")


@pytest.mark.parametrize(("delimiter", "encoding", "index"), [
    (":", "utf-8", 0), (",", "latin-1", 0), (",", "utf-8", 3), (",", "utf-8", -1)])
def test_bad_options_are_invalid_requests(corpus: Path, delimiter: str, encoding: str,
                                          index: int) -> None:
    out = io.BytesIO()
    with pytest.raises(InvalidRequest):
        write_csv(corpus / "xlsx/SampleSS.xlsx", index, out, delimiter, encoding)
    assert out.getvalue() == b""


# --- against LibreOffice ---------------------------------------------------------------

@pytest.fixture(scope="module")
def lo_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The service's hardened LibreOffice profile (no recalculation on load among others)."""
    return write_profile(tmp_path_factory.mktemp("lo-profile"))


def _libreoffice(path: Path, sheet_number: int, profile: Path, outdir: Path,
                 delimiter: str = ",") -> bytes:
    outdir.mkdir()
    options = libreoffice_filter_options(sheet_number, delimiter, "utf-8")
    subprocess.run(
        ["soffice", f"-env:UserInstallation={profile.as_uri()}", "--headless",
         "--convert-to", f"csv:Text - txt - csv (StarCalc):{options}",
         "--outdir", str(outdir), str(path)],
        check=True, capture_output=True, timeout=180)
    # With a sheet token LibreOffice names the file <stem>-<sheet name>.csv.
    (output,) = outdir.glob("*.csv")
    return output.read_bytes()


# LibreOffice may spell a value differently only when it is a number (rounding of the 15th
# digit, E+019), a percentage, a date or a time; text must be identical.
_DISPLAY_ONLY = re.compile(
    r"-?[\d.]+(E[+-]\d+)?%?|\d\d/\d\d/\d{4}( \d\d:\d\d:\d\d)?|\d\d:\d\d:\d\d [AP]M")


def _assert_same_as_libreoffice(path: Path, sheets: list[str], profile: Path,
                                tmp_path: Path, delimiter: str = ",") -> int:
    """Compare value by value; return how many cells differ only in how they are written."""
    names = sheet_names(path)
    display_only = 0
    for title in sheets:
        index = names.index(title)
        fast = _rows(_fast(path, index, delimiter), delimiter)
        lo = _rows(_libreoffice(path, index + 1, profile, tmp_path / f"lo-{index}", delimiter),
                   delimiter)
        assert len(fast) == len(lo), title
        for r, (ours, theirs) in enumerate(zip(fast, lo, strict=True), start=1):
            assert len(ours) == len(theirs), (title, r)
            pairs = enumerate(zip(ours, theirs, strict=True), start=1)
            differing = [(c, a, b) for c, (a, b) in pairs if not same_value(a, b)]
            assert not differing, (title, r, differing)
            for a, b in zip(ours, theirs, strict=True):
                if a != b:
                    assert _DISPLAY_ONLY.fullmatch(b), (title, r, a, b)
                    display_only += 1
    return display_only


@pytest.mark.parametrize(("name", "sheets"), [
    (FORMULAS, ["Profile", "Query", "query2"]),
    (DATES, ["Products1", "Book tour"]),
    (RTL, ["English", "عربى"]),
    (JAPANESE, ["Sheet1"]),
])
def test_same_values_as_libreoffice(corpus: Path, lo_profile: Path, tmp_path: Path,
                                    name: str, sheets: list[str]) -> None:
    _assert_same_as_libreoffice(corpus / name, sheets, lo_profile, tmp_path)


def test_libreoffice_recalculates_what_the_fast_path_keeps(
        corpus: Path, lo_profile: Path, tmp_path: Path) -> None:
    """By design: Excel's cached results are kept; LibreOffice recomputes some cells on load.

    Even with recalculation off, LibreOffice recomputes formulas whose cached value is an
    error, a boolean or empty text, with its own semantics (misc!A13 =0.5 where Excel
    cached #VALUE!). Every differing cell must be such a formula, and the fast path must
    hold Excel's cached value there.
    """
    path = corpus / "xlsx/FormulaEvalTestData_Copy.xlsx"
    index = sheet_names(path).index("misc")
    fast = _rows(_fast(path, index))
    lo = _rows(_libreoffice(path, index + 1, lo_profile, tmp_path / "lo"))
    cached = _reference(path)["misc"]
    assert len(fast) == len(lo)
    differing = [(r, c) for r, (ours, theirs) in enumerate(zip(fast, lo, strict=True), start=1)
                 for c, (a, b) in enumerate(zip(ours, theirs, strict=True), start=1)
                 if not same_value(a, b)]
    assert differing
    for r, c in differing:
        cell = cached.cell(r, c)
        assert cell.data_type in ("e", "b") or cell.value is None, (r, c, cell.value)
        _assert_cell(fast[r - 1][c - 1], cell.value, f"misc!{r},{c}")


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_generated_types_same_values_as_libreoffice(lo_profile: Path, tmp_path: Path,
                                                    delimiter: str) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Types"
    values: list[tuple[Any, str | None]] = [
        (7, None), (-0.000001, None), (1 / 3, None), (1e15, None), (1.2345678901234567e19, None),
        (0.25, "0%"), (1234.5, '"$"#,##0.00'), (1234567.891, "#,##0"), (3.14159, "0.00"),
        (dt.date(2024, 1, 15), None), (dt.date(2024, 1, 15), "d mmm yyyy"),
        (dt.datetime(2024, 1, 15, 13, 45, 30), None), (dt.time(13, 45, 30), "h:mm AM/PM"),
        (True, None), (False, None), ("#DIV/0!", None), *((t, None) for t in TRICKY_TEXT)]
    for row, (value, number_format) in enumerate(values, start=1):
        cell = sheet.cell(row, 1 + row % 3, value)
        if isinstance(value, str) and value.startswith("="):
            cell.data_type = "s"
        if number_format:
            cell.number_format = number_format
    sheet["E2"] = "merged"
    sheet.merge_cells("E2:F4")
    sheet.cell(len(values) + 3, 2, "after two empty rows")
    sheet.cell(len(values) + 5, 8).number_format = "0.00"  # formatting alone adds nothing
    path = tmp_path / "types.xlsx"
    workbook.save(path)
    # Written differently, same value: 25%, 01/15/2024 (d mmm yyyy), 01:45:30 PM and
    # 1.23456789012346E+019. Currency, grouping and fixed decimals come out raw on both.
    assert _assert_same_as_libreoffice(path, ["Types"], lo_profile, tmp_path, delimiter) == 4
    assert len(_rows(_fast(path, 0, delimiter), delimiter)) == len(values) + 3
