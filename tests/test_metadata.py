"""read_metadata on the real corpus, against independent truth, and on hostile input."""

from __future__ import annotations

import csv
import re
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import olefile
import openpyxl
import pytest

from converter.detect import EXTENSIONS, detect
from converter.service.metadata import DocumentMetadata, read_metadata
from tests.conftest import CORPUS
from tests.support import office_truth as truth

FAMILY = {**dict.fromkeys(("docx", "doc", "odt", "fodt", "rtf"), "writer"),
          **dict.fromkeys(("xlsx", "xls", "ods", "fods"), "calc"),
          **dict.fromkeys(("pptx", "ppt", "odp", "fodp"), "impress")}


def _files(folder: str) -> list[str]:
    return sorted(f"{folder}/{p.name}" for p in (CORPUS / folder).iterdir())


def _read(path: Path, fmt: str | None = None, encrypted: bool = False) -> DocumentMetadata:
    fmt = fmt or path.suffix[1:]
    return read_metadata(path, fmt, FAMILY[fmt], encrypted)


# ------------------------------------------------------------------ native formats


@pytest.mark.parametrize("name", _files("docx") + _files("xlsx") + _files("pptx"))
def test_ooxml_title_and_author_match_core_xml(corpus: Path, name: str) -> None:
    got = _read(corpus / name)
    assert (got.title, got.author) == truth.ooxml_core(corpus / name)
    assert "title" not in got.unknown and "author" not in got.unknown


@pytest.mark.parametrize("name", _files("docx"))
def test_docx_pages_are_the_saved_page_count(corpus: Path, name: str) -> None:
    got = _read(corpus / name)
    assert got.pages == truth.docx_saved_pages(corpus / name)
    assert got.sheets is None and got.unknown == ()


def _openpyxl_sheets(path: Path) -> list[str] | None:
    """openpyxl's sheet names, or None for the workbooks it cannot load at all."""
    try:
        workbook = openpyxl.load_workbook(path, read_only=True)
    except TypeError:
        return None  # e.g. picture.xlsx: a cell style with an attribute openpyxl rejects
    try:
        return list(workbook.sheetnames)
    finally:
        workbook.close()


@pytest.mark.parametrize("name", _files("xlsx"))
def test_xlsx_sheet_names_match_openpyxl(corpus: Path, name: str) -> None:
    got = _read(corpus / name)
    assert got.sheets == truth.xlsx_sheets(corpus / name)
    assert got.sheets == (_openpyxl_sheets(corpus / name) or got.sheets)
    assert got.pages is None and got.unknown == ()


def test_openpyxl_reads_almost_every_corpus_workbook(corpus: Path) -> None:
    # The comparison above is only worth something if openpyxl answers for most files.
    answered = [name for name in _files("xlsx") if _openpyxl_sheets(corpus / name)]
    assert len(answered) >= len(_files("xlsx")) - 1


@pytest.mark.parametrize("name", _files("odt") + _files("ods") + _files("odp"))
def test_odf_matches_a_full_parse(corpus: Path, name: str) -> None:
    meta_root, content = truth.odf_parts(corpus / name)
    meta = truth.odf_meta(meta_root) if meta_root is not None else {}
    sheets, slides = truth.odf_body(content)
    got = _read(corpus / name)
    assert (got.title, got.author) == (meta.get("title"), meta.get("author"))
    family = FAMILY[name.rsplit(".", 1)[1]]
    if family == "writer":
        pages = meta.get("pages")
        assert got.pages == (int(pages) if pages else None)
        assert got.unknown == (() if pages else ("pages",))
    elif family == "calc":
        assert got.sheets == sheets and got.pages is None and got.unknown == ()
    else:
        assert got.pages == slides and got.sheets is None and got.unknown == ()


def _recorded_pages() -> dict[str, int]:
    """The corpus's own record of LibreOffice's PDF page counts (FILES.tsv)."""
    with (CORPUS / "FILES.tsv").open(encoding="utf-8") as fh:
        return {row["local_name"]: int(row["lo7.4_pdf_pages"])
                for row in csv.DictReader(fh, delimiter="\t") if row["lo7.4_pdf_pages"]}


@pytest.mark.parametrize("name", _files("pptx") + _files("odp") + _files("ppt"))
def test_deck_pages_match_the_recorded_pdf_pages(corpus: Path, name: str) -> None:
    got = _read(corpus / name)
    if "pages" in got.unknown:
        # Only a deck that never saved its slide count may leave it to the PDF.
        with olefile.OleFileIO(str(corpus / name)) as ole:
            assert ole.get_metadata().slides is None
    else:
        assert got.pages == _recorded_pages()[name]


@pytest.mark.parametrize("name", _files("doc"))
def test_doc_pages_are_the_saved_page_count(corpus: Path, name: str) -> None:
    with olefile.OleFileIO(str(corpus / name)) as ole:
        saved = ole.get_metadata().num_pages
    got = _read(corpus / name)
    assert got.pages == (saved or None)
    assert got.unknown == (() if saved else ("pages",))


# ------------------------------------------------------------------ hostile input


def _bad_cases() -> list[tuple[str, str]]:
    cases = []
    for path in sorted((CORPUS / "bad").iterdir()):
        formats = {EXTENSIONS[path.suffix[1:]], detect(path).format}
        cases += [(path.name, fmt) for fmt in sorted(f for f in formats if f)]
    return cases


@pytest.mark.parametrize(("name", "fmt"), _bad_cases())
def test_bad_files_return_quickly_without_raising(corpus: Path, name: str, fmt: str) -> None:
    started = time.monotonic()
    # encrypted=False on purpose: every reader must survive whatever the bytes are.
    got = _read(corpus / "bad" / name, fmt)
    assert time.monotonic() - started < 1.0
    assert isinstance(got, DocumentMetadata) and got.encrypted is False


@pytest.mark.parametrize("name", [p.name for p in sorted((CORPUS / "bad").iterdir())
                                  if detect(p).encrypted])
def test_encrypted_documents_are_all_unknown(corpus: Path, name: str) -> None:
    found = detect(corpus / "bad" / name)
    assert found.format is not None
    got = _read(corpus / "bad" / name, found.format, encrypted=True)
    assert got.encrypted is True
    assert (got.pages, got.sheets, got.title, got.author) == (None, None, None, None)
    applicable = ("sheets" if FAMILY[found.format] == "calc" else "pages", "title", "author")
    assert set(got.unknown) == set(applicable)


def test_xml_bomb_workbook_still_names_its_sheets(corpus: Path) -> None:
    # The bomb sits in sharedStrings.xml, which sheet names never need.
    path = corpus / "bad" / "poc-xmlbomb.xlsx"
    got = _read(path)
    assert got.sheets == truth.xlsx_sheets(path) and got.sheets


def test_namespaces_count_not_prefixes(corpus: Path, tmp_path: Path) -> None:
    core = ('<x:coreProperties xmlns:x="http://schemas.openxmlformats.org/package/2006/'
            'metadata/core-properties" xmlns:y="http://purl.org/dc/elements/1.1/" '
            'xmlns:dc="urn:not-dublin-core"><dc:title>Decoy</dc:title>'
            "<y:title>Real &amp; proper</y:title><y:creator> Ann </y:creator></x:coreProperties>")
    path = _rewrite(corpus / "docx" / "SampleDoc.docx", tmp_path / "prefixes.docx",
                    "docProps/core.xml", core)
    got = _read(path)
    assert (got.title, got.author) == ("Real & proper", "Ann")


def test_text_named_rtf_is_unknown(corpus: Path) -> None:
    got = _read(corpus / "bad" / "RtfParserTest_fail_5.rtf")
    assert got.unknown == ("pages", "title", "author")


def _rewrite(source: Path, target: Path, part: str, change: str) -> Path:
    """Copy a package, replacing one part's text."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for info in zin.infolist():
            data = change.encode() if info.filename == part else zin.read(info)
            zout.writestr(info, data)
    return target


BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY a "aaaaaaaaaa">'
        + "".join(f'<!ENTITY {c} "{("&" + p + ";") * 10}">' for p, c in
                  zip("abcdefgh", "bcdefghi", strict=True)) + "]>")


@pytest.mark.parametrize("attack", ["bomb", "external", "oversized"])
def test_hostile_core_xml_leaves_title_and_author_unknown(corpus: Path, tmp_path: Path,
                                                          attack: str) -> None:
    core = ('<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/'
            'metadata/core-properties" xmlns:dc="http://purl.org/dc/elements/1.1/">'
            "{pad}<dc:title>{title}</dc:title></cp:coreProperties>")
    if attack == "bomb":
        xml = BOMB + core.format(pad="", title="&i;")
    elif attack == "external":
        xml = ('<?xml version="1.0"?><!DOCTYPE t [<!ENTITY x SYSTEM "file:///etc/hostname">]>'
               + core.format(pad="", title="&x;"))
    else:  # the title comes after more than the 2 MiB a metadata part may take
        xml = core.format(pad="<!--" + "p" * (3 << 20) + "-->", title="Late title")
    path = _rewrite(corpus / "docx" / "SampleDoc.docx", tmp_path / "hostile.docx",
                    "docProps/core.xml", xml)
    started = time.monotonic()
    got = _read(path)
    assert time.monotonic() - started < 1.0
    assert {"title", "author"} <= set(got.unknown)
    assert got.pages == 2  # app.xml is intact, and is still read


def test_hostile_flat_odf_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "bomb.fods"
    path.write_text(BOMB + '<office:document xmlns:office="urn:oasis:names:tc:opendocument:'
                    'xmlns:office:1.0"><office:meta>&i;</office:meta></office:document>')
    got = _read(path)
    assert set(got.unknown) == {"sheets", "title", "author"}


def test_truncated_package_is_unknown(corpus: Path, tmp_path: Path) -> None:
    data = (corpus / "ods" / "SampleSS.ods").read_bytes()
    cut = tmp_path / "cut.ods"
    cut.write_bytes(data[: len(data) // 2])
    assert _read(cut).unknown == ("sheets", "title", "author")


# ------------------------------------------------------------------ flat ODF


def test_flat_odf_matches_its_own_xml(libreoffice: dict[str, dict[str, Path]]) -> None:
    flats = libreoffice["flat"]
    assert len(flats) == 8
    for path in flats.values():
        root = ET.parse(path).getroot()
        meta = truth.odf_meta(root)
        sheets, slides = truth.odf_body(root)
        got = _read(path)
        assert (got.title, got.author) == (meta["title"], meta["author"]), path.name
        if path.suffix == ".fodt":
            assert got.pages == (int(meta["pages"]) if meta["pages"] else None)
        elif path.suffix == ".fods":
            assert got.sheets == sheets and got.sheets
        else:
            assert got.pages == slides and slides > 0


# ------------------------------------------------------------------ LibreOffice as truth


@pytest.mark.parametrize("name", _files("doc") + _files("ppt") + _files("rtf"))
def test_title_and_author_match_libreoffice(libreoffice: dict[str, dict[str, Path]],
                                            name: str) -> None:
    info = truth.pdfinfo(libreoffice["pdf"][name])
    got = _read(CORPUS / name)
    assert got.title == truth.norm(info.get("Title"))
    assert got.author == truth.norm(info.get("Author"))


@pytest.mark.parametrize("name", _files("xls"))
def test_xls_matches_libreoffices_xlsx_export(libreoffice: dict[str, dict[str, Path]],
                                              name: str) -> None:
    exported = libreoffice["xlsx"][name]
    got = _read(CORPUS / name)
    assert got.sheets == _openpyxl_sheets(exported)
    assert (got.title, got.author) == truth.ooxml_core(exported)
    assert got.unknown == ()


def test_deck_pages_match_libreoffices_pdf(libreoffice: dict[str, dict[str, Path]]) -> None:
    checked: dict[str, int] = {}
    for name, pdf in libreoffice["pdf"].items():
        fmt = name.rsplit(".", 1)[1]
        if FAMILY.get(fmt) != "impress":
            continue
        source = CORPUS / name if (CORPUS / name).exists() else libreoffice["made"][name]
        got = _read(source)
        if "pages" in got.unknown:
            continue  # checked against the file's own property set elsewhere
        assert got.pages == int(truth.pdfinfo(pdf)["Pages"]), name
        checked[fmt] = checked.get(fmt, 0) + 1
    assert min(checked.get(fmt, 0) for fmt in ("pptx", "odp", "ppt")) >= 2, checked


def test_hidden_slides_are_left_out_like_the_pdf(libreoffice: dict[str, dict[str, Path]],
                                                 ) -> None:
    for name in ("made/hidden.pptx", "made/hidden.odp"):
        got = _read(libreoffice["made"][name])
        pages = int(truth.pdfinfo(libreoffice["pdf"][name])["Pages"])
        assert got.pages == pages
        assert got.pages == _read(libreoffice["made"][name + ".orig"]).pages - 1


def _hidden_variants(corpus: Path, folder: Path) -> dict[str, Path]:
    """A pptx and an odp with their first slide hidden, plus the unchanged originals."""
    pptx = corpus / "pptx" / "SampleShow.pptx"
    with zipfile.ZipFile(pptx) as zf:
        slide = zf.read("ppt/slides/slide1.xml").decode()
    hidden_slide = re.sub(r"<p:sld\b", '<p:sld show="0"', slide, count=1)
    odp = corpus / "odp" / "presentation.odp"
    with zipfile.ZipFile(odp) as zf:
        content = zf.read("content.xml").decode()
    style = ('<style:style style:name="hiddenpage" style:family="drawing-page">'
             '<style:drawing-page-properties presentation:visibility="hidden"/></style:style>')
    content = content.replace("</office:automatic-styles>", style + "</office:automatic-styles>",
                              1)
    content = re.sub(r'<draw:page\b([^>]*?)draw:style-name="[^"]*"',
                     r'<draw:page\1draw:style-name="hiddenpage"', content, count=1)
    return {
        "made/hidden.pptx": _rewrite(pptx, folder / "hidden.pptx", "ppt/slides/slide1.xml",
                                     hidden_slide),
        "made/hidden.odp": _rewrite(odp, folder / "hidden.odp", "content.xml", content),
        "made/hidden.pptx.orig": pptx, "made/hidden.odp.orig": odp,
    }


@pytest.fixture(scope="module")
def libreoffice(corpus: Path, tmp_path_factory: pytest.TempPathFactory,
                ) -> dict[str, dict[str, Path]]:
    """LibreOffice's own outputs: PDFs, xls exported as xlsx, ODF saved flat."""
    base = tmp_path_factory.mktemp("libreoffice")
    profile = base / "profile"
    made = _hidden_variants(corpus, base)
    decks = ["pptx/SampleShow.pptx", "pptx/shp-shapes.pptx", "odp/presentation.odp",
             "odp/XPathTest-foreignPrefix2.odp", "odp/SlideTest2.odp"]
    to_pdf = {name: corpus / name for name in _files("doc") + _files("ppt") + _files("rtf")
              + decks}
    to_pdf.update({k: v for k, v in made.items() if not k.endswith(".orig")})
    # Names like SampleShow.ppt and SampleShow.pptx would meet in one output folder.
    links = base / "links"
    links.mkdir()
    linked = {}
    for number, (name, source) in enumerate(to_pdf.items()):
        link = links / f"{number:03d}{source.suffix}"
        link.symlink_to(source)
        linked[name] = link
    pdfs = truth.convert(list(linked.values()), "pdf", base / "pdf", profile)
    out: dict[str, dict[str, Path]] = {"made": made, "flat": {}}
    out["pdf"] = {name: pdfs[link.name] for name, link in linked.items() if link.name in pdfs}
    assert set(out["pdf"]) == set(to_pdf), "LibreOffice did not convert every file"
    xls = [corpus / name for name in _files("xls")]
    xlsx = truth.convert(xls, "xlsx", base / "xlsx", profile)
    out["xlsx"] = {f"xls/{name}": path for name, path in xlsx.items()}
    flat_sources = {"fodt": ["odt/HelloWorld.odt", "odt/Lebenslauf_DOC_LO4.0.5.1.odt",
                             "odt/Formular_Anzeige_01_Stand_August_2013_DOC_LO4-0-5-2.odt"],
                    "fods": ["ods/SampleSS.ods", "ods/spreadsheet5.ods",
                             "ods/chart_charttype_pie_import_xml_MSO15.ods"],
                    "fodp": ["odp/presentation.odp", "odp/XPathTest-foreignPrefix2.odp"]}
    for target, names in flat_sources.items():
        written = truth.convert([corpus / n for n in names], target, base / target, profile)
        out["flat"].update(written)
    return out
