"""unoserver's own client, ``unoconvert``, against the bridges of a real served pool.

No import or export filter is given: the bridge picks the export filter from the
extension (or ``--convert-to``) and the loaded document's type, as unoserver does, and
lets LibreOffice's type detection choose the import filter. Local paths must lie in the
pool's scratch directory; ``--host-location remote`` and ``-`` send bytes instead.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pypdf import PdfReader

from tests.support.attacks import SECRET_COLOURS, Canary, build_attacks, checker_png
from tests.support.served import ServedApp
from tests.test_hostile import CONTROL_REPRODUCES, leaks

pytestmark = pytest.mark.engine

UNOCONVERT = str(Path(sys.executable).with_name("unoconvert"))


def _pdf_text(data: bytes) -> str:
    assert data.startswith(b"%PDF-"), data[:40]
    return " ".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(data)).pages)


def _docx_text(data: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read("word/document.xml").decode()


# What each output must contain: text that only a real conversion of the source carries.
def _pdf_has(*phrases: str) -> Callable[[bytes], None]:
    def check(data: bytes) -> None:
        text = _pdf_text(data)
        assert all(p in text for p in phrases), text[:500]
    return check


def _csv_is(first_rows: list[str]) -> Callable[[bytes], None]:
    def check(data: bytes) -> None:
        assert data.decode("utf-8").splitlines()[:len(first_rows)] == first_rows, data[:200]
    return check


def _docx_has(*phrases: str) -> Callable[[bytes], None]:
    def check(data: bytes) -> None:
        xml = _docx_text(data)
        assert all(p in xml for p in phrases), xml[:500]
    return check


DOCX_PDF = _pdf_has("I am a test document", "This is page two")
XLSX_PDF = _pdf_has("Test spreadsheet", "Start of 2nd sheet")
XLSX_CSV = _csv_is(["Test spreadsheet,", "2nd row,2nd row 2nd column"])
PPTX_PDF = _pdf_has("Title of the first slide", "It has bullet points on it")
ODT_DOCX = _docx_has("Hello World1", "Hello World5")

CASES = {
    "docx-pdf": ("docx/SampleDoc.docx", "out.pdf", [], DOCX_PDF),
    "xlsx-pdf": ("xlsx/SampleSS.xlsx", "out.pdf", [], XLSX_PDF),
    "xlsx-csv": ("xlsx/SampleSS.xlsx", "out.csv", [], XLSX_CSV),
    "pptx-pdf": ("pptx/SampleShow.pptx", "out.pdf", [], PPTX_PDF),
    "odt-docx": ("odt/HelloWorld.odt", "out.docx", [], ODT_DOCX),
    # --convert-to wins over the output's extension, as in unoserver.
    "xlsx-convert-to-pdf": ("xlsx/SampleSS.xlsx", "out.bin", ["--convert-to", "pdf"], XLSX_PDF),
    "pptx-convert-to-pdf": ("pptx/SampleShow.pptx", "out", ["--convert-to", "pdf"], PPTX_PDF),
}
STDIO_CASES = {
    "docx-pdf": ("docx/SampleDoc.docx", "pdf", DOCX_PDF),
    "xlsx-csv": ("xlsx/SampleSS.xlsx", "csv", XLSX_CSV),
    "xlsx-pdf": ("xlsx/SampleSS.xlsx", "pdf", XLSX_PDF),
    "pptx-pdf": ("pptx/SampleShow.pptx", "pdf", PPTX_PDF),
    "odt-docx": ("odt/HelloWorld.odt", "docx", ODT_DOCX),
}


def unoconvert(port: int, *args: str, stdin: bytes | None = None,
               ) -> subprocess.CompletedProcess[bytes]:
    """Run unoserver's CLI against the bridge on port."""
    return subprocess.run([UNOCONVERT, "--host", "127.0.0.1", "--port", str(port), *args],
                          input=stdin, capture_output=True, timeout=180, check=False)


@pytest.fixture
def port(service: ServedApp) -> int:
    """The XML-RPC port of one of the served pool's bridges."""
    bridges = service.bridges()
    assert len(bridges) == 2, bridges
    return sorted(bridges.values())[0]


@pytest.fixture
def workdir(service: ServedApp) -> Iterator[Path]:
    """A folder inside the pool's scratch directory, where local paths are allowed."""
    folder = service.scratch_root / f"unoconvert-{uuid.uuid4().hex}"
    folder.mkdir()
    yield folder
    shutil.rmtree(folder)


@pytest.mark.parametrize("case", list(CASES))
def test_unoconvert_with_paths_and_no_filters(corpus: Path, port: int, workdir: Path,
                                              case: str) -> None:
    """Local paths in the scratch directory: the export filter comes from the extension."""
    source, out_name, extra, check = CASES[case]
    inpath = workdir / Path(source).name
    shutil.copyfile(corpus / source, inpath)
    outpath = workdir / out_name
    done = unoconvert(port, *extra, str(inpath), str(outpath))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    check(outpath.read_bytes())


@pytest.mark.parametrize("case", list(STDIO_CASES))
def test_unoconvert_stdin_to_stdout(corpus: Path, port: int, case: str) -> None:
    """``- -`` with --convert-to: bytes in, bytes out, the import filter detected."""
    source, target, check = STDIO_CASES[case]
    done = unoconvert(port, "--quiet", "--convert-to", target, "-", "-",
                      stdin=(corpus / source).read_bytes())
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    check(done.stdout)


def test_unoconvert_remote_files_anywhere(corpus: Path, port: int, tmp_path: Path) -> None:
    """--host-location remote sends the bytes, so files outside the scratch dir work."""
    outpath = tmp_path / "SampleDoc.pdf"
    done = unoconvert(port, "--host-location", "remote", str(corpus / "docx/SampleDoc.docx"),
                      str(outpath))
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    DOCX_PDF(outpath.read_bytes())


def test_local_paths_outside_the_scratch_directory_are_refused(
        corpus: Path, port: int, tmp_path: Path) -> None:
    """Confinement holds for unoserver's clients too: no reading or writing elsewhere."""
    outpath = tmp_path / "SampleDoc.pdf"
    done = unoconvert(port, str(corpus / "docx/SampleDoc.docx"), str(outpath))
    assert done.returncode != 0
    assert b"is outside the scratch directory" in done.stderr, done.stderr[-1000:]
    assert not outpath.exists()


def test_unknown_extension_is_a_clear_fault(corpus: Path, port: int) -> None:
    """An extension LibreOffice has no type for is refused by name, not with a crash."""
    done = unoconvert(port, "--convert-to", "nosuchtype", "-", "-",
                      stdin=(corpus / "docx/SampleDoc.docx").read_bytes())
    assert done.returncode != 0
    assert b"unknown export file type 'nosuchtype'" in done.stderr, done.stderr[-1000:]


@pytest.mark.parametrize("name", list(CONTROL_REPRODUCES))
def test_detected_filters_keep_the_hardening(port: int, tmp_path: Path, name: str) -> None:
    """The attacks a bare unoserver falls for (tests/test_hostile.py CONTROL) fail here too
    when unoconvert names no filter: nothing fetched, no local image embedded."""
    canary = Canary()
    try:
        secret = tmp_path / "secret-local-image.png"
        secret.write_bytes(checker_png(SECRET_COLOURS))
        attacks = {a.name: a for a in build_attacks(canary.url, secret, tmp_path / "marker")}
        before = canary.seen()
        done = unoconvert(port, "--quiet", "--convert-to", "pdf", "-", "-",
                          stdin=attacks[name].data)
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        assert done.stdout.startswith(b"%PDF-")
        time.sleep(0.5)  # a background fetch would land just after the export
        assert canary.seen() == before
        assert leaks("pdf", done.stdout) == []
    finally:
        canary.close()
