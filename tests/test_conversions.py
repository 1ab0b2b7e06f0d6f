"""Every pair of the conversion matrix, converted from a real document over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from converter.matrix import load
from tests.support.flat_odf import flat_odf
from tests.support.outputs import check_output
from tests.support.served import ServedApp

# One real corpus document per source format, with a phrase known to be in it.
SOURCES: dict[str, tuple[str, str]] = {
    "docx": ("docx/SampleDoc.docx", "I am a test document"),
    "doc": ("doc/SampleDoc.doc", "I am a test document"),
    "odt": ("odt/HelloWorld.odt", "Hello World1"),
    "rtf": ("rtf/Example_text.rtf", "Text here with hyperlink"),
    "xlsx": ("xlsx/SampleSS.xlsx", "Test spreadsheet"),
    "xls": ("xls/SampleSS.xls", "Test spreadsheet"),
    "ods": ("ods/SampleSS.ods", "Test spreadsheet"),
    "pptx": ("pptx/SampleShow.pptx", "Title of the first slide"),
    "ppt": ("ppt/SampleShow.ppt", "Title of the first slide"),
    "odp": ("odp/presentation.odp", "Text!"),
}
# Flat ODF has no corpus folder: the tests write these small documents themselves.
GENERATED = {"fodt": "Flat text phrase", "fods": "Flat sheet phrase",
             "fodp": "Flat slide phrase"}

MATRIX = load()
PAIRS = [(source, target) for source, spec in MATRIX.sources.items() for target in spec.targets]


def test_every_matrix_source_has_a_test_document() -> None:
    """A new source in the YAML must come with a document here, or this fails."""
    assert set(MATRIX.sources) == set(SOURCES) | set(GENERATED)


@pytest.fixture(scope="module")
def uploaded(service: ServedApp, corpus: Path, tmp_path_factory: pytest.TempPathFactory,
             ) -> dict[str, str]:
    """file id of each source document on the shared server."""
    ids = {}
    for fmt, (rel, _phrase) in SOURCES.items():
        ids[fmt] = service.upload_ok(corpus / rel)["id"]
    folder = tmp_path_factory.mktemp("flat")
    for fmt, phrase in GENERATED.items():
        path = folder / f"generated.{fmt}"
        path.write_bytes(flat_odf(fmt, phrase))
        ids[fmt] = service.upload_ok(path)["id"]
    return ids


@pytest.mark.engine
@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{s}-{t}" for s, t in PAIRS])
def test_matrix_pair_converts(service: ServedApp, uploaded: dict[str, str], source: str,
                              target: str) -> None:
    """Convert, download through the signed URL, and check the output is what it claims."""
    response = service.convert(uploaded[source], target)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["format"] == target and body["file_id"] == uploaded[source]
    download = requests.get(body["download_url"], timeout=60)
    assert download.status_code == 200
    assert download.headers["Content-Type"].split(";")[0] == MATRIX.media_type(
        source, target).split(";")[0]
    assert len(download.content) == body["size_bytes"]
    phrase = GENERATED.get(source) or SOURCES[source][1]
    check_output(target, download.content, phrase)


@pytest.mark.engine
def test_csv_sheet_option_selects_the_sheet(service: ServedApp, uploaded: dict[str, str]) -> None:
    """options.sheet exports another sheet than the first."""
    response = service.convert(uploaded["xlsx"], "csv", options='{"sheet": 2}')
    assert response.status_code == 200, response.text
    data = requests.get(response.json()["download_url"], timeout=60).content
    check_output("csv", data, "Start of 2nd sheet")


@pytest.mark.engine
def test_pdf_page_range_option(service: ServedApp, uploaded: dict[str, str]) -> None:
    """options.page_range limits the PDF to those pages."""
    from tests.support.outputs import pdf_text

    whole = requests.get(service.convert(uploaded["docx"], "pdf").json()["download_url"],
                         timeout=60).content
    response = service.convert(uploaded["docx"], "pdf", options='{"page_range": "2"}')
    assert response.status_code == 200, response.text
    part = requests.get(response.json()["download_url"], timeout=60).content
    assert "This is page two" in pdf_text(part)
    assert "This is page 1" not in pdf_text(part)
    assert "This is page 1" in pdf_text(whole)
