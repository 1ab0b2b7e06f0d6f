"""Content-based format detection over the shared corpus and over inputs built here."""

from __future__ import annotations

import random
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from converter.detect import Detection, check_extension, detect

# The corpus is shared test data that must never be copied into this repository.
CORPUS = (Path(__file__).resolve().parents[1] / "../shared/corpus").resolve()
# Counts from the corpus README; a short folder means files went missing.
FOLDER_COUNTS = {
    "docx": 15, "doc": 14, "xlsx": 15, "xls": 14, "pptx": 14, "ppt": 14,
    "odt": 14, "ods": 14, "odp": 10, "rtf": 14,
}
FUZZED_DOC = "clusterfuzz-testcase-minimized-POIHWPFFuzzer-5418937293340672.doc"
# bad/ file -> (container, format, encrypted, check_extension message for its own name).
BAD = {
    "bug53475-password-is-pass.docx": ("ole2", "docx", True, None),
    "password_password_cryptoapi.doc": ("ole2", "doc", True, None),
    "password.xls": ("ole2", "xls", True, None),
    "Password_Protected-hello.ppt": ("ole2", "ppt", True, None),
    "encrypted-with-pwd_hello.odt": ("zip", "odt", True, None),
    "truncated62886.docx": (
        "zip", None, False,
        "file named .docx is not a docx document"
        " (truncated or corrupt zip archive: no central directory)",
    ),
    # Only its _rels/.rels is garbage; the parts detection looks at are all there.
    "xlsx-corrupted.xlsx": ("zip", "xlsx", False, None),
    "poc-xmlbomb.xlsx": ("zip", "xlsx", False, None),
    "ExternalEntityInText.docx": ("zip", "docx", False, None),
    "PPT95.ppt": ("ole2", "ppt", False, None),
    FUZZED_DOC: ("ole2", "doc", False, None),
    "RtfParserTest_fail_5.rtf": (
        "text", None, False,
        "file named .rtf is not an rtf document (plain text, not an office document)",
    ),
}


def _corpus_params() -> list[object]:
    params: list[object] = []
    for folder in FOLDER_COUNTS:
        directory = CORPUS / folder
        files = sorted(p for p in directory.iterdir() if p.is_file()) if directory.is_dir() else []
        # A missing folder still yields a case, so the run fails instead of silently shrinking.
        params += [pytest.param(folder, p, id=f"{folder}/{p.name}") for p in files] or [
            pytest.param(folder, None, id=f"{folder}/<missing>")
        ]
    return params


def _corpus_file(folder: str, name: str) -> Path:
    path = CORPUS / folder / name
    assert path.is_file(), f"required corpus file is missing: {path}"
    return path


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            # ODF wants its mimetype stored; doing it for every member is harmless here.
            zf.writestr(name, data, zipfile.ZIP_STORED if name == "mimetype" else None)
    return path


OOXML_TYPE = "application/vnd.openxmlformats-officedocument"
DOCX_TYPES = (
    b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
    b'content-types"><Override PartName="/word/document.xml" ContentType="application/'
    b'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
)
DOCX_RELS = (
    b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/'
    b'2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
    b'officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
    b"</Relationships>"
)
DOCX = {
    "[Content_Types].xml": DOCX_TYPES,
    "_rels/.rels": DOCX_RELS,
    "word/document.xml": b"<w:document/>",
}


def _odf(mimetype: bytes, manifest: bytes = b"") -> dict[str, bytes]:
    members = {"mimetype": mimetype, "content.xml": b"<office:document-content/>"}
    if manifest:
        members["META-INF/manifest.xml"] = manifest
    return members


@pytest.mark.parametrize(("folder", "expected"), FOLDER_COUNTS.items())
def test_corpus_folder_is_complete(folder: str, expected: int) -> None:
    directory = CORPUS / folder
    assert directory.is_dir(), f"corpus folder is missing: {directory}"
    assert len([p for p in directory.iterdir() if p.is_file()]) == expected, directory


@pytest.mark.parametrize(("folder", "path"), _corpus_params())
def test_corpus_file_detected_as_its_folder(folder: str, path: Path | None) -> None:
    assert path is not None, f"corpus folder is missing or empty: {CORPUS / folder}"
    found = detect(path)
    assert found.format == folder, found
    assert not found.encrypted, found
    assert check_extension(found, path.name) is None
    if found.container != "zip":
        assert found.uncompressed_size == path.stat().st_size


@pytest.mark.parametrize("name", BAD)
def test_bad_corpus_file(name: str) -> None:
    container, fmt, encrypted, message = BAD[name]
    found = detect(_corpus_file("bad", name))
    assert (found.container, found.format, found.encrypted) == (container, fmt, encrypted), found
    assert check_extension(found, name) == message


def test_bad_folder_holds_only_known_files() -> None:
    directory = CORPUS / "bad"
    assert directory.is_dir(), f"corpus folder is missing: {directory}"
    assert {p.name for p in directory.iterdir()} == set(BAD)


def test_corpus_detection_is_fast() -> None:
    slow = {}
    for path in sorted(CORPUS.glob("*/*.*")):
        # Best of three, so one cold disk read does not count as slowness of the code.
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            detect(path)
            timings.append(time.perf_counter() - started)
        if min(timings) >= 0.05:
            slow[path.name] = min(timings)
    assert slow == {}


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("bug53475-password-is-pass.docx", "docx"),
        ("upload.XLSM", "xlsx"),
        ("deck.pptx", "pptx"),
        ("upload.bin", None),
        ("upload", None),
        ("report.doc", None),
    ],
)
def test_encrypted_ooxml_takes_its_format_from_the_name(
    tmp_path: Path, filename: str, expected: str | None
) -> None:
    source = _corpus_file("bad", "bug53475-password-is-pass.docx")
    by_argument = detect(source, filename=filename)
    copy = tmp_path / filename
    shutil.copyfile(source, copy)
    for found in (by_argument, detect(copy)):
        assert (found.container, found.format, found.encrypted) == ("ole2", expected, True)
        assert "encrypted OOXML" in found.reason


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.docx"
    path.write_bytes(b"")
    assert detect(path) == Detection(None, "empty", False, 0, "empty file")
    assert check_extension(detect(path), path.name) == (
        "file named .docx is not a docx document (empty file)"
    )


def test_random_bytes_named_docx(tmp_path: Path) -> None:
    path = tmp_path / "random.docx"
    path.write_bytes(b"\xff" + random.Random(7).randbytes(64 * 1024))
    found = detect(path)
    assert (found.container, found.format, found.encrypted) == ("unknown", None, False)
    assert found.uncompressed_size == 64 * 1024 + 1
    message = check_extension(found, path.name)
    assert message is not None and message.startswith("file named .docx is not a docx document")


def test_pdf_named_docx(tmp_path: Path) -> None:
    path = tmp_path / "invoice.docx"
    path.write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n")
    found = detect(path)
    assert (found.container, found.format) == ("pdf", None)
    assert check_extension(found, path.name) == (
        "file named .docx is not a docx document (PDF is not a supported source format)"
    )


def test_zip_bomb_docx_reports_declared_size(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "bomb.docx", DOCX)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("word/media/zeros.bin", "w") as member:
            chunk = bytes(1 << 20)
            for _ in range(200):
                member.write(chunk)
    assert path.stat().st_size < 1 << 20
    started = time.perf_counter()
    found = detect(path)
    assert time.perf_counter() - started < 0.05
    assert (found.container, found.format, found.encrypted) == ("zip", "docx", False)
    assert found.uncompressed_size >= 200 << 20


def test_zip_without_office_parts(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "notes.docx", {"readme.txt": b"hello", "data/x.xml": b"<x/>"})
    found = detect(path)
    assert (found.container, found.format, found.encrypted) == ("zip", None, False)
    assert "without word/document.xml" in found.reason
    assert found.uncompressed_size == 9
    message = check_extension(found, path.name)
    assert message is not None and "is not a docx document (zip archive without" in message


@pytest.mark.parametrize(
    ("target", "content_type", "expected"),
    [
        ("word/document2.xml", f"{OOXML_TYPE}.wordprocessingml.document.main+xml", "docx"),
        ("xl/book.xml", f"{OOXML_TYPE}.spreadsheetml.template.main+xml", "xlsx"),
        ("ppt/deck.xml", f"{OOXML_TYPE}.presentationml.presentation.main+xml", "pptx"),
        ("Deck/Main.XML", "application/vnd.ms-powerpoint.presentation.macroEnabled.main+xml",
         "pptx"),
        ("xl/workbook.bin", "application/vnd.ms-excel.sheet.binary.macroEnabled.main", None),
        ("other/main.xml", "application/something.else+xml", None),
    ],
)
def test_ooxml_main_part_found_through_rels(
    tmp_path: Path, target: str, content_type: str, expected: str | None
) -> None:
    docx_kind = f"{OOXML_TYPE}.wordprocessingml.document.main+xml".encode()
    members = {
        "[Content_Types].xml": DOCX_TYPES.replace(b"/word/document.xml", f"/{target}".encode())
        .replace(docx_kind, content_type.encode()),
        "_rels/.rels": DOCX_RELS.replace(b"word/document.xml", target.encode()),
        target: b"<main/>",
    }
    found = detect(_write_zip(tmp_path / "renamed.zip", members))
    assert (found.container, found.format) == ("zip", expected), found


def test_ooxml_rels_pointing_nowhere(tmp_path: Path) -> None:
    members = {"[Content_Types].xml": DOCX_TYPES, "_rels/.rels": DOCX_RELS}
    found = detect(_write_zip(tmp_path / "hollow.docx", members))
    assert (found.container, found.format) == ("zip", None)
    assert "names no main part" in found.reason


@pytest.mark.parametrize(
    ("mimetype", "expected"),
    [
        (b"application/vnd.oasis.opendocument.text", "odt"),
        (b"application/vnd.oasis.opendocument.text-template", "odt"),
        (b"application/vnd.oasis.opendocument.spreadsheet", "ods"),
        (b"application/vnd.oasis.opendocument.spreadsheet-template", "ods"),
        (b"application/vnd.oasis.opendocument.presentation", "odp"),
        (b"application/vnd.oasis.opendocument.presentation-template", "odp"),
        (b"application/vnd.oasis.opendocument.graphics", None),
        (b"application/epub+zip", None),
    ],
)
def test_odf_by_mimetype(tmp_path: Path, mimetype: bytes, expected: str | None) -> None:
    found = detect(_write_zip(tmp_path / "doc.zip", _odf(mimetype)))
    assert (found.container, found.format, found.encrypted) == ("zip", expected, False)
    assert (found.reason == "") == (expected is not None), found


def test_odf_without_mimetype_uses_manifest_root(tmp_path: Path) -> None:
    # media-type before full-path: attribute order must not matter.
    manifest = (
        b'<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        b'<manifest:file-entry manifest:media-type="text/xml" manifest:full-path="content.xml"/>'
        b'<manifest:file-entry manifest:media-type="application/vnd.oasis.opendocument'
        b'.spreadsheet" manifest:full-path="/"/></manifest:manifest>'
    )
    members = {"content.xml": b"<x/>", "META-INF/manifest.xml": manifest}
    found = detect(_write_zip(tmp_path / "sheet.ods", members))
    assert (found.format, found.encrypted) == ("ods", False)


def test_odf_encryption_from_manifest(tmp_path: Path) -> None:
    manifest = (
        b'<m:manifest xmlns:m="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        b'<m:file-entry m:full-path="content.xml" m:media-type="text/xml">'
        b'<m:encryption-data m:checksum-type="SHA1/1K"/></m:file-entry></m:manifest>'
    )
    found = detect(_write_zip(
        tmp_path / "secret.odt", _odf(b"application/vnd.oasis.opendocument.text", manifest)
    ))
    assert (found.format, found.encrypted) == ("odt", True)


def test_zip_level_encryption_is_reported(tmp_path: Path) -> None:
    path = _write_zip(tmp_path / "locked.docx", DOCX)
    data = bytearray(path.read_bytes())
    # Set general-purpose bit 0 ("encrypted") in every local and central header.
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = data.find(signature)
        while start != -1:
            data[start + flag_offset] |= 1
            start = data.find(signature, start + 4)
    path.write_bytes(bytes(data))
    found = detect(path)
    assert (found.format, found.encrypted) == ("docx", True)


def test_zip_with_prefix_is_still_a_zip(tmp_path: Path) -> None:
    inner = _write_zip(tmp_path / "inner.docx", DOCX).read_bytes()
    path = tmp_path / "selfextract.docx"
    path.write_bytes(b"MZ\x90\x00" + bytes(4096) + inner)
    assert detect(path).format == "docx"


def test_truncated_package_is_not_mistaken_for_its_embedded_workbook(tmp_path: Path) -> None:
    source = _corpus_file("docx", "61745.docx")
    with zipfile.ZipFile(source) as zf:
        embedded = zf.getinfo("word/embeddings/Microsoft_Excel_Worksheet2.xlsx")
    assert embedded.compress_type == zipfile.ZIP_STORED
    cut = embedded.header_offset + 30 + len(embedded.filename) + len(embedded.extra)
    path = tmp_path / "cut.docx"
    path.write_bytes(source.read_bytes()[: cut + embedded.compress_size])
    found = detect(path)
    assert (found.container, found.format) == ("zip", None), found
    assert "embedded archive" in found.reason


@pytest.mark.parametrize(
    ("data", "container", "fmt"),
    [
        (b"\xef\xbb\xbf \r\n\t{\\rtf1\\ansi hello}", "rtf", "rtf"),
        (b"{\\rtf1}", "rtf", "rtf"),
        (b"plain words\n", "text", None),
        ("é".encode() * 5000, "text", None),  # 8 KiB cut lands mid-character
        (b"caf\xe9 latin-1", "unknown", None),
        (b"text with a \x00 NUL", "unknown", None),
        (b"PK\x03\x04" + bytes(100), "zip", None),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "ole2", None),
    ],
)
def test_small_inputs(tmp_path: Path, data: bytes, container: str, fmt: str | None) -> None:
    path = tmp_path / "input"
    path.write_bytes(data)
    found = detect(path)
    assert (found.container, found.format, found.encrypted) == (container, fmt, False), found
    assert found.uncompressed_size == len(data)


def test_ole2_with_no_office_stream(tmp_path: Path) -> None:
    # A real CFB whose root streams are renamed: valid structure, unknown application.
    data = bytearray(_corpus_file("doc", "SampleDoc.doc").read_bytes())
    name = "WordDocument".encode("utf-16-le")
    start = data.find(name)
    data[start : start + len(name)] = "WordDokument".encode("utf-16-le")
    path = tmp_path / "other.doc"
    path.write_bytes(bytes(data))
    found = detect(path)
    assert (found.container, found.format, found.encrypted) == ("ole2", None, False), found
    assert "without WordDocument" in found.reason


@pytest.mark.parametrize(
    "source",
    [("doc", "Bug50955.doc"), ("xls", "SampleSS.xls"), ("ppt", "SampleShow.ppt"),
     ("bad", "password.xls"), ("bad", "Password_Protected-hello.ppt"),
     ("docx", "SampleDoc.docx"), ("odt", "HelloWorld.odt"), ("rtf", "unicode.rtf")],
    ids="/".join,
)
def test_mangled_inputs_never_raise(tmp_path: Path, source: tuple[str, str]) -> None:
    original = _corpus_file(*source).read_bytes()
    rng = random.Random(source[1])
    path = tmp_path / source[1]
    for round_ in range(60):
        data = bytearray(original[: rng.randrange(len(original) + 1)] if round_ % 3 == 0
                         else original)
        for _ in range(rng.randrange(1, 40) if round_ % 3 else 0):
            # Mostly hit the first 8 KiB, where headers, FATs and directories live.
            pos = rng.randrange(min(len(data), 8192))
            data[pos : pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\xfe\xff\xff\xff",
                                              bytes(4), rng.randbytes(4)])
        path.write_bytes(bytes(data))
        started = time.perf_counter()
        assert isinstance(detect(path), Detection)
        assert time.perf_counter() - started < 0.05


def test_unreadable_path_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        detect(tmp_path / "missing.docx")
    with pytest.raises(IsADirectoryError):
        detect(tmp_path)


@pytest.mark.parametrize(
    ("fmt", "filename", "expected"),
    [
        ("docx", "a.docx", None),
        ("docx", "A.DOCX", None),
        ("docx", "macro.docm", None),
        ("docx", "letter.dotx", None),
        ("xlsx", "book.xlsm", None),
        ("pptx", "show.ppsx", None),
        ("odt", "form.ott", None),
        ("ods", "sheet.ots", None),
        ("odp", "deck.otp", None),
        ("doc", "a.doc", None),
        ("rtf", "a.rtf", None),
        ("doc", "letter.dot", None),  # not a known extension: content decides
        ("docx", "no_extension", None),
        ("docx", "notes.txt", None),
        ("docx", "C:\\dir.v2\\upload", None),
        ("xlsx", "report.docx", "content is xlsx but the file is named .docx"),
        ("doc", "a.docx", "content is doc but the file is named .docx"),
        ("docx", "a.doc", "content is docx but the file is named .doc"),
        ("xls", "a.xlsx", "content is xls but the file is named .xlsx"),
        ("ods", "a.xlsx", "content is ods but the file is named .xlsx"),
        ("odt", "a.ods", "content is odt but the file is named .ods"),
        ("rtf", "/tmp/a.Doc", "content is rtf but the file is named .doc"),
    ],
)
def test_check_extension(fmt: str, filename: str, expected: str | None) -> None:
    assert check_extension(Detection(fmt, "zip", False, 1), filename) == expected


def test_check_extension_when_content_is_unknown() -> None:
    broken = Detection(None, "zip", False, 10, "truncated or corrupt zip archive")
    assert check_extension(broken, "a.docx") == (
        "file named .docx is not a docx document (truncated or corrupt zip archive)"
    )
    assert check_extension(broken, "a.xlsx") == (
        "file named .xlsx is not an xlsx document (truncated or corrupt zip archive)"
    )
    assert check_extension(broken, "a.zip") is None
    assert check_extension(broken, "a") is None


def test_table_nesting_depth_is_measured(tmp_path: Path) -> None:
    """Nested tables are counted in the main part, also across read chunks."""
    body = "<w:tbl><w:tr><w:tc>" * 70 + "<w:p/>" + "</w:tc></w:tr></w:tbl>" * 70
    filler = "<w:p><w:r><w:t>" + "x" * (1 << 20) + "</w:t></w:r></w:p>"
    path = tmp_path / "nested.docx"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", f"<w:document><w:body>{filler}{body}"
                    f"<w:tbl><w:tr><w:tc/></w:tr></w:tbl></w:body></w:document>")
    assert detect(path).table_depth == 70
    odt = tmp_path / "nested.odt"
    with zipfile.ZipFile(odt, "w") as zf:
        zf.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        zf.writestr("content.xml", "<table:table table:name='a'><table:table-row>" * 3
                    + "</table:table-row></table:table>" * 3)
    assert detect(odt).table_depth == 3
