"""POST /v1/files and GET /v1/files/{id}: pages, sheets, title, author, encrypted."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import requests
from pypdf import PdfReader

from tests.support.served import ServedApp

# What each document says about itself (read from the files with other tools).
EXPECTED: dict[str, dict[str, Any]] = {
    "docx/SampleDoc.docx": {"pages": 2, "title": "Test Document", "author": "Nick Burch"},
    "doc/SampleDoc.doc": {"pages": 2, "title": "Test Document", "author": "Nick Burch"},
    "xlsx/SampleSS.xlsx": {"sheets": ["First Sheet", "Sheet Number 2", "Sheet3"],
                           "title": "Sample Spreadsheet"},
    "xls/SampleSS.xls": {"sheets": ["First Sheet", "Sheet Number 2", "Sheet3"]},
    "ods/SampleSS.ods": {"sheets": ["First Sheet", "Sheet Number 2", "Sheet3"]},
    "pptx/SampleShow.pptx": {"pages": 2, "title": "SlideShow Sample"},
    "ppt/SampleShow.ppt": {"pages": 2, "author": "Nick Burch"},
    "odp/presentation.odp": {"pages": 3},
}


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_metadata_at_upload(service: ServedApp, corpus: Path, rel: str) -> None:
    """Read without LibreOffice at upload, and the same on GET."""
    uploaded = service.upload_ok(corpus / rel)
    for field, value in EXPECTED[rel].items():
        assert uploaded[field] == value, (rel, field, uploaded)
    assert uploaded["encrypted"] is False and uploaded["unknown_fields"] == []
    fetched = service.request("GET", f"/v1/files/{uploaded['id']}").json()
    assert {k: fetched[k] for k in ("pages", "sheets", "title", "author", "encrypted")} == {
        k: uploaded[k] for k in ("pages", "sheets", "title", "author", "encrypted")}


@pytest.mark.engine
def test_unknown_fields_are_filled_by_the_first_pdf(service: ServedApp, corpus: Path) -> None:
    """An RTF's page count is not in the file: unknown at upload, the PDF's after it."""
    uploaded = service.upload_ok(corpus / "rtf/Example_text.rtf")
    assert uploaded["pages"] is None and "pages" in uploaded["unknown_fields"]
    response = service.convert(uploaded["id"], "pdf")
    assert response.status_code == 200, response.text
    pdf = requests.get(response.json()["download_url"], timeout=60).content
    fetched = service.request("GET", f"/v1/files/{uploaded['id']}").json()
    assert fetched["pages"] == len(PdfReader(io.BytesIO(pdf)).pages)
    assert fetched["unknown_fields"] == []


def test_encrypted_files_say_so(service: ServedApp, corpus: Path) -> None:
    """An encrypted upload is kept (it converts with its password) and marked encrypted."""
    uploaded = service.upload_ok(corpus / "bad/password.xls")
    assert uploaded["encrypted"] is True
    assert set(uploaded["unknown_fields"]) == {"sheets", "title", "author"}


@pytest.mark.engine
def test_pages_follow_the_pdf_when_the_file_was_stale(service: ServedApp, corpus: Path) -> None:
    """A word processor's stored page count is replaced by the PDF's once one is made."""
    uploaded = service.upload_ok(corpus / "docx/bug65649.docx")
    response = service.convert(uploaded["id"], "pdf")
    assert response.status_code == 200, response.text
    pdf = requests.get(response.json()["download_url"], timeout=120).content
    pages = len(PdfReader(io.BytesIO(pdf)).pages)
    assert uploaded["pages"] != pages, "the corpus file's stored count should be stale"
    assert service.request("GET", f"/v1/files/{uploaded['id']}").json()["pages"] == pages
