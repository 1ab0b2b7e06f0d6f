"""PNG of every page: one page as image/png, several as a ZIP, drawn from the cached PDF."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
import requests
from PIL import Image

from tests.support import documents
from tests.support.served import ServedApp, error_of

pytestmark = pytest.mark.engine


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    # A real page, not a blank canvas: more than one colour.
    assert len(image.getcolors(1 << 20) or [0, 1]) > 1
    return image


def test_dpi_scales_the_image(service: ServedApp, corpus: Path) -> None:
    """The default is page 1 at 150 dpi; doubling dpi doubles both dimensions."""
    file_id = service.upload_ok(corpus / "pptx/SampleShow.pptx")["id"]
    sizes = {}
    for dpi in (None, 50, 100):
        extra = {} if dpi is None else {"dpi": str(dpi)}
        response = service.convert(file_id, "png", **extra)
        assert response.status_code == 200, response.text
        assert response.json()["media_type"] == "image/png"
        download = requests.get(response.json()["download_url"], timeout=60)
        assert download.headers["Content-Type"] == "image/png"
        assert download.headers["Content-Disposition"].endswith('SampleShow.png"')
        sizes[dpi] = _png(download.content).size
    assert sizes[100] == (sizes[50][0] * 2, sizes[50][1] * 2)
    assert sizes[None] == (sizes[50][0] * 3, sizes[50][1] * 3)


def test_all_pages_come_as_a_zip(service: ServedApp, tmp_path: Path) -> None:
    """pages=all on a 22-slide deck: a ZIP of page-001.png ... page-022.png."""
    deck = tmp_path / "deck.fodp"
    deck.write_bytes(documents.deck(22))
    file_id = service.upload_ok(deck)["id"]
    response = service.convert(file_id, "png", pages="all", dpi="40")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["media_type"] == "application/zip" and body["produced_by"] == "pdf2image"
    download = requests.get(body["download_url"], timeout=60)
    assert download.headers["Content-Disposition"].endswith('deck.zip"')
    with zipfile.ZipFile(io.BytesIO(download.content)) as zf:
        names = zf.namelist()
        assert names == [f"page-{n:03d}.png" for n in range(1, 23)]
        images = [_png(zf.read(name)) for name in names]
    assert len({image.size for image in images}) == 1


def test_a_selection_of_pages(service: ServedApp, tmp_path: Path) -> None:
    """pages=1-3,5 draws exactly those; a writer document renders too."""
    deck = tmp_path / "deck7.fodp"
    deck.write_bytes(documents.deck(7))
    file_id = service.upload_ok(deck)["id"]
    response = service.convert(file_id, "png", pages="1-3,5", dpi="36")
    assert response.status_code == 200, response.text
    data = requests.get(response.json()["download_url"], timeout=60).content
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.namelist() == ["page-001.png", "page-002.png", "page-003.png",
                                 "page-005.png"]
    past = service.convert(file_id, "png", pages="9-12")
    assert past.status_code == 400
    assert error_of(past)["field"] == "options.pages"


def test_png_after_pdf_costs_no_second_engine_call(service: ServedApp, corpus: Path) -> None:
    """The PDF is cached as the artifact it is: PNG after PDF, and other pages, reuse it."""
    file_id = service.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    assert service.convert(file_id, "pdf").status_code == 200
    before = service.metrics()["converter_engine_calls_total"]
    for pages in ("1", "2", "all"):
        response = service.convert(file_id, "png", pages=pages, dpi="40")
        assert response.status_code == 200, response.text
    assert service.metrics()["converter_engine_calls_total"] == before
    assert service.metrics()['converter_artifacts_produced_total{path="pdf2image"}'] >= 3


def test_page_limit(serve: type[ServedApp], tmp_path: Path) -> None:
    """More pages than CONVERTER_MAX_PNG_PAGES in one request: 400 naming the limit."""
    app = serve(env={"CONVERTER_MAX_PNG_PAGES": "5"}, workers=1).start()
    deck = tmp_path / "deck8.fodp"
    deck.write_bytes(documents.deck(8))
    file_id = app.upload_ok(deck)["id"]
    response = app.convert(file_id, "png", pages="all")
    assert response.status_code == 400
    error = error_of(response)
    assert "CONVERTER_MAX_PNG_PAGES" in error["message"] and error["limit"] == 5
    assert app.convert(file_id, "png", pages="1-5", dpi="36").status_code == 200
