"""Every PDF option changes the PDF the way it says, checked in the output itself."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from pypdf import PdfReader

from tests.support import documents
from tests.support.outputs import pdf_text
from tests.support.served import ServedApp, error_of

pytestmark = pytest.mark.engine


def oneshot(service: ServedApp, name: str, data: bytes, target: str = "pdf",
            **fields: Any) -> requests.Response:
    """POST /v1/convert with options as top-level form fields."""
    return service.request("POST", "/v1/convert", files={"file": (name, data)},
                           data={"format": target, **fields})


def pdf_of(service: ServedApp, name: str, data: bytes, **fields: Any) -> PdfReader:
    """The PDF a one-shot conversion answers with."""
    response = oneshot(service, name, data, **fields)
    assert response.status_code == 200, response.text
    assert response.content.startswith(b"%PDF")
    return PdfReader(io.BytesIO(response.content))


def xmp(reader: PdfReader) -> str:
    """The XMP metadata packet of a PDF, as text ("" when it has none)."""
    meta = reader.trailer["/Root"].get("/Metadata")
    return "" if meta is None else str(meta.get_object().get_data().decode("utf-8", "replace"))


def test_landscape_turns_every_page(service: ServedApp, corpus: Path) -> None:
    """A portrait document comes out with pages wider than tall, through the two-step API."""
    file_id = service.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    shapes = {}
    for landscape in (False, True):
        body = service.convert(file_id, "pdf", options=json.dumps({"landscape": landscape}))
        assert body.status_code == 200, body.text
        pdf = requests.get(body.json()["download_url"], timeout=60).content
        boxes = [page.mediabox for page in PdfReader(io.BytesIO(pdf)).pages]
        shapes[landscape] = {float(b.width) > float(b.height) for b in boxes}
        assert len(boxes) == 2
    assert shapes == {False: {False}, True: {True}}


def test_page_range_counts_pages(service: ServedApp) -> None:
    """page_range keeps exactly the pages it names (22-slide deck, pypdf counts)."""
    deck = documents.deck(22)
    assert len(pdf_of(service, "deck.fodp", deck).pages) == 22
    part = pdf_of(service, "deck.fodp", deck, page_range="2-4,10")
    assert len(part.pages) == 4
    assert "Slide number 10" in part.pages[3].extract_text()


def test_pdfa_declares_its_part(service: ServedApp, corpus: Path) -> None:
    """pdfa=2 writes pdfaid:part 2 into the XMP packet; the default declares none."""
    data = (corpus / "docx/SampleDoc.docx").read_bytes()
    assert "pdfaid:part" not in xmp(pdf_of(service, "a.docx", data))
    packet = xmp(pdf_of(service, "a.docx", data, pdfa="2"))
    assert re.search(r"pdfaid:part(>|=\")2", packet), packet[:500]


def test_pdfua_output_is_tagged(service: ServedApp, corpus: Path) -> None:
    """pdfua=true gives a tagged PDF (MarkInfo, structure tree) that declares PDF/UA-1."""
    data = (corpus / "docx/SampleDoc.docx").read_bytes()
    plain = pdf_of(service, "u.docx", data).trailer["/Root"]
    assert "/StructTreeRoot" not in plain
    reader = pdf_of(service, "u.docx", data, pdfua="true")
    root = reader.trailer["/Root"]
    assert "/StructTreeRoot" in root
    assert root["/MarkInfo"]["/Marked"].value is True
    assert re.search(r"pdfuaid:part(>|=\")1", xmp(reader))


def _image_filters(reader: PdfReader) -> set[str]:
    found = set()
    for page in reader.pages:
        objects = page["/Resources"].get("/XObject") or {}
        for ref in objects.values():
            image = ref.get_object()
            if image.get("/Subtype") == "/Image":
                found.add(str(image.get("/Filter")))
    return found


def test_image_options_change_the_images(service: ServedApp) -> None:
    """quality and max_image_resolution shrink an image-heavy PDF; lossless keeps pixels."""
    image_doc = documents.image_document()

    def size(**fields: Any) -> int:
        response = oneshot(service, "img.fodt", image_doc, **fields)
        assert response.status_code == 200, response.text
        return len(response.content)

    default = size()
    assert size(quality=10) < default / 3
    assert size(max_image_resolution=75) < default / 3
    assert "/DCTDecode" in _image_filters(pdf_of(service, "img.fodt", image_doc))
    lossless = pdf_of(service, "img.fodt", image_doc, lossless_images="true")
    assert "/DCTDecode" not in _image_filters(lossless)
    assert _image_filters(lossless)


def test_skip_empty_pages_drops_the_inserted_blank_page(service: ServedApp) -> None:
    """A page-number jump makes LibreOffice insert an empty page; the option drops it."""
    document = documents.blank_page_document()
    full = pdf_of(service, "blank.fodt", document)
    assert len(full.pages) == 3
    assert (full.pages[1].extract_text() or "").strip() == ""
    skipped = pdf_of(service, "blank.fodt", document, skip_empty_pages="true")
    assert len(skipped.pages) == 2
    assert "Text on page three" in skipped.pages[1].extract_text()


def test_bookmarks_and_notes(service: ServedApp) -> None:
    """Headings become bookmarks unless export_bookmarks=false; notes become annotations."""
    document = documents.headed_document()
    default = pdf_of(service, "headed.fodt", document)
    assert [item.title for item in default.outline] == [
        f"Heading number {n}" for n in (1, 2, 3)]
    assert not any(page.get("/Annots") for page in default.pages)
    assert pdf_of(service, "headed.fodt", document, export_bookmarks="false").outline == []
    noted = pdf_of(service, "headed.fodt", document, export_notes="true")
    contents = [a.get_object().get("/Contents", "") for page in noted.pages
                for a in page.get("/Annots") or []]
    assert any("A reviewer note" in str(c) for c in contents)


def test_single_page_sheets(service: ServedApp, corpus: Path) -> None:
    """single_page_sheets gives one page per sheet of a workbook that spans hundreds."""
    import openpyxl

    path = corpus / "xlsx/StructuredRefs-lots-with-lookups.xlsx"
    sheets = len(openpyxl.load_workbook(path, read_only=True).sheetnames)
    reader = pdf_of(service, path.name, path.read_bytes(), single_page_sheets="true")
    assert len(reader.pages) == sheets


def test_indexes_keep_stored_bibliographies(service: ServedApp) -> None:
    """Tables of contents regenerate; a cached bibliography survives unless asked."""
    document = documents.indexed_document()
    text = pdf_text(oneshot(service, "indexed.fodt", document).content)
    # The table of contents was empty in the file: its entry exists only after the update.
    assert text.count("Chapter Alpha") == 2
    assert "Knuth, The Art of Computer Programming" in text
    updated = oneshot(service, "indexed.fodt", document, update_indexes="true")
    assert updated.status_code == 200, updated.text
    text = pdf_text(updated.content)
    assert text.count("Chapter Alpha") == 2
    assert "Knuth" not in text and "Works cited" in text


def test_equal_options_share_one_artifact(service: ServedApp, corpus: Path) -> None:
    """Options in another spelling or order, or given as form fields, hit the same artifact."""
    file_id = service.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    first = service.convert(file_id, "pdf", options=json.dumps(
        {"quality": 80, "landscape": True, "export_notes": False}))
    assert first.status_code == 200 and first.json()["cached"] is False
    for variant in ({"options": json.dumps({"landscape": "true", "quality": "80"})},
                    {"landscape": "1", "quality": "80"},
                    {"quality": " 80", "landscape": "yes", "export_notes": "false"}):
        again = service.convert(file_id, "pdf", **variant)
        assert again.status_code == 200, again.text
        assert again.json()["cached"] is True, variant
        assert again.json()["size_bytes"] == first.json()["size_bytes"]


@pytest.mark.parametrize(("fields", "field", "listed"), [
    ({"quality": "0"}, "options.quality", "minimum"),
    ({"quality": "high"}, "options.quality", "minimum"),
    ({"max_image_resolution": "100"}, "options.max_image_resolution", "valid_values"),
    ({"pdfa": "4"}, "options.pdfa", "valid_values"),
    ({"landscape": "sideways"}, "options.landscape", "valid_values"),
    ({"page_range": "0-2"}, "options.page_range", None),
    ({"dpi": "150"}, "options.dpi", "valid_options"),
    ({"colour": "red"}, "options.colour", "valid_options"),
])
def test_bad_options_name_the_field(service: ServedApp, corpus: Path, fields: dict[str, str],
                                    field: str, listed: str | None) -> None:
    """An invalid value, an unknown option or one of another target: 400 naming it."""
    data = (corpus / "docx/SampleDoc.docx").read_bytes()
    response = oneshot(service, "bad.docx", data, **fields)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request" and error["field"] == field
    assert field.split(".")[1] in error["message"]
    if listed:
        assert error[listed]


def test_formats_describe_every_option(service: ServedApp) -> None:
    """GET /v1/formats serves each option's type, range and default."""
    sources = service.request("GET", "/v1/formats").json()["sources"]
    pdf = sources["docx"]["targets"]["pdf"]["options"]
    assert pdf["quality"] == {"type": "int", "help": pdf["quality"]["help"], "default": 90,
                              "minimum": 1, "maximum": 100}
    assert pdf["max_image_resolution"]["choices"] == [75, 150, 300, 600, 1200]
    assert pdf["landscape"]["default"] is False
    png = sources["pptx"]["targets"]["png"]["options"]
    assert png["dpi"]["minimum"] == 36 and png["dpi"]["maximum"] == 300
    assert png["pages"]["default"] == "1"
    assert set(sources["xlsx"]["targets"]["csv"]["options"]) >= {"sheet", "delimiter",
                                                                   "encoding"}
    assert "png" in sources["docx"]["targets"] and "png" in sources["xls"]["targets"]
