"""CSV of any sheet over HTTP: by number, name or all; delimiters, encodings; both paths agree."""

from __future__ import annotations

import csv
import io
import warnings
import zipfile
from pathlib import Path

import openpyxl
import pytest
import requests

from tests.support.csv_values import same_value
from tests.support.served import ServedApp, error_of

pytestmark = pytest.mark.engine


def convert_csv(service: ServedApp, path: Path, **fields: str) -> requests.Response:
    """One-shot CSV conversion of a workbook."""
    with path.open("rb") as fh:
        return service.request("POST", "/v1/convert", files={"file": fh},
                               data={"format": "csv", **fields})


def rows(data: bytes, delimiter: str = ",", encoding: str = "utf-8") -> list[list[str]]:
    """Parsed CSV rows."""
    return list(csv.reader(io.StringIO(data.decode(encoding), newline=""), delimiter=delimiter))


def sheets_of(data: bytes) -> dict[str, bytes]:
    """The CSV members of a sheet=all ZIP, in order."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


@pytest.mark.parametrize("rel", ["xlsx/SampleSS.xlsx", "xls/SampleSS.xls", "ods/SampleSS.ods"])
def test_sheet_by_number_name_and_all(service: ServedApp, corpus: Path, rel: str) -> None:
    """Each workbook format: sheet 2 by number and by name, and every sheet as a ZIP."""
    path = corpus / rel
    uploaded = service.upload_ok(path)
    assert uploaded["sheets"] == ["First Sheet", "Sheet Number 2", "Sheet3"], uploaded
    by_number = convert_csv(service, path, sheet="2")
    by_name = convert_csv(service, path, sheet="Sheet Number 2")
    assert by_number.status_code == 200 and by_name.status_code == 200, by_name.text
    assert by_number.content == by_name.content
    assert "Start of 2nd sheet" in by_number.text
    expected_path = "openpyxl" if rel.endswith(".xlsx") else "libreoffice"
    assert by_number.headers["X-Converter-Produced-By"] == expected_path
    everything = convert_csv(service, path, sheet="all")
    assert everything.headers["Content-Type"] == "application/zip"
    assert everything.headers["Content-Disposition"].startswith(
        'attachment; filename="SampleSS.zip"')
    members = sheets_of(everything.content)
    assert list(members) == ["01-First Sheet.csv", "02-Sheet Number 2.csv", "03-Sheet3.csv"]
    assert members["02-Sheet Number 2.csv"] == by_number.content
    assert "Test spreadsheet" in members["01-First Sheet.csv"].decode()


def test_unknown_sheet_lists_the_sheets(service: ServedApp, corpus: Path) -> None:
    """An unknown name or number: 400 whose valid_values are the workbook's sheets."""
    for sheet in ("Nope", "4"):
        response = convert_csv(service, corpus / "xlsx/SampleSS.xlsx", sheet=sheet)
        assert response.status_code == 400, response.text
        error = error_of(response)
        assert error["field"] == "options.sheet"
        assert error["valid_values"] == ["First Sheet", "Sheet Number 2", "Sheet3", "all"]


@pytest.mark.parametrize("engine", ["auto", "libreoffice"])
def test_delimiters_and_encodings(service: ServedApp, corpus: Path, tmp_path: Path,
                                  engine: str) -> None:
    """delimiter and encoding on both paths: tab, semicolon, a BOM, windows-1252 bytes."""
    path = corpus / "xlsx/SampleSS.xlsx"
    tab = convert_csv(service, path, delimiter="tab", csv_engine=engine)
    assert tab.status_code == 200, tab.text
    assert rows(tab.content, "\t")[0][0] == "Test spreadsheet"
    semi = convert_csv(service, path, delimiter=";", sheet="2", csv_engine=engine)
    assert ";" in semi.text and "," not in semi.text.splitlines()[0]
    bom = convert_csv(service, path, encoding="utf-8-sig", csv_engine=engine)
    assert bom.content.startswith(b"\xef\xbb\xbf")
    assert bom.content[3:] == convert_csv(service, path, csv_engine=engine).content
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["A1"], sheet["B1"] = "café", "€5"
    latin = tmp_path / "latin.xlsx"
    workbook.save(latin)
    legacy = convert_csv(service, latin, encoding="windows-1252", csv_engine=engine)
    assert legacy.status_code == 200, legacy.text
    assert legacy.headers["Content-Type"] == "text/csv; charset=windows-1252"
    assert legacy.content.decode("windows-1252").strip() == "café,€5"
    assert b"caf\xe9" in legacy.content and b"\x80" in legacy.content


# Workbooks compared cell by cell across the two paths, every sheet.
COMPARED = ["xlsx/StructuredRefs-lots-with-lookups.xlsx", "xlsx/ConditionalFormattingSamples.xlsx",
            "xlsx/right-to-left.xlsx", "xlsx/SampleSS.xlsx"]


@pytest.mark.parametrize("rel", COMPARED)
def test_fast_path_matches_libreoffice_and_openpyxl(service: ServedApp, corpus: Path,
                                                    rel: str) -> None:
    """Every cell of every sheet: the fast path against LibreOffice's path (values) and
    against openpyxl's own reading of the cached values."""
    path = corpus / rel
    fast = convert_csv(service, path, sheet="all")
    slow = convert_csv(service, path, sheet="all", csv_engine="libreoffice")
    assert fast.status_code == 200 and slow.status_code == 200, slow.text
    assert fast.headers["X-Converter-Produced-By"] == "openpyxl"
    assert slow.headers["X-Converter-Produced-By"] == "libreoffice"
    ours, theirs = sheets_of(fast.content), sheets_of(slow.content)
    assert list(ours) == list(theirs)
    with warnings.catch_warnings():
        # openpyxl warns about header/footer codes it cannot parse; cell values are unaffected.
        warnings.simplefilter("ignore", UserWarning)
        workbook = openpyxl.load_workbook(path, data_only=True)
    checked = 0
    for (name, data), sheet in zip(ours.items(), workbook.worksheets, strict=True):
        fast_rows, lo_rows = rows(data), rows(theirs[name])
        assert len(fast_rows) == len(lo_rows), name
        for r, (a, b) in enumerate(zip(fast_rows, lo_rows, strict=True), start=1):
            assert len(a) == len(b), (name, r)
            for c, (x, y) in enumerate(zip(a, b, strict=True), start=1):
                assert same_value(x, y), (name, r, c, x, y)
                value = sheet.cell(r, c).value
                if value is None:
                    assert x == "", (name, r, c, x)
                else:
                    assert same_value(x, value), (name, r, c, x, value)
                checked += 1
    assert checked > 0


def test_formulas_without_cached_values_fall_back(service: ServedApp, tmp_path: Path) -> None:
    """A workbook whose formulas were never computed goes through LibreOffice."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet["A1"], sheet["A2"], sheet["A3"] = 2, 3, "=A1*A2+1"
    path = tmp_path / "uncomputed.xlsx"
    workbook.save(path)
    before = service.metrics().get('converter_artifacts_produced_total{path="libreoffice"}', 0)
    response = convert_csv(service, path)
    assert response.status_code == 200, response.text
    assert response.headers["X-Converter-Produced-By"] == "libreoffice"
    assert [r[0] for r in rows(response.content)][:2] == ["2", "3"]
    after = service.metrics()['converter_artifacts_produced_total{path="libreoffice"}']
    assert after == before + 1
