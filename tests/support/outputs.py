"""Checks that a converted artifact is what its extension says and carries the source's text."""

from __future__ import annotations

import csv
import html
import io
import re
import zipfile

from PIL import Image
from pypdf import PdfReader

# Main part of each package format, and the media type ODF declares.
PACKAGE_PARTS = {
    "docx": ("word/document.xml", None),
    "xlsx": ("xl/workbook.xml", None),
    "pptx": ("ppt/presentation.xml", None),
    "odt": ("content.xml", "application/vnd.oasis.opendocument.text"),
    "ods": ("content.xml", "application/vnd.oasis.opendocument.spreadsheet"),
    "odp": ("content.xml", "application/vnd.oasis.opendocument.presentation"),
}


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def pdf_text(data: bytes) -> str:
    """All text of a PDF, whitespace-normalised."""
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) >= 1
    return _squash(" ".join(page.extract_text() or "" for page in reader.pages))


def package_text(data: bytes) -> str:
    """Concatenated text nodes of every XML member of a zip package."""
    chunks = []
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for name in zf.namelist():
            if name.endswith(".xml"):
                xml = zf.read(name).decode("utf-8", "replace")
                chunks.append(html.unescape(re.sub(r"<[^>]+>", " ", xml)))
    return _squash(" ".join(chunks))


def check_output(target: str, data: bytes, phrase: str) -> None:
    """Assert data is a valid `target` file that contains phrase (if it carries text)."""
    assert data, "empty artifact"
    if target == "pdf":
        assert data.startswith(b"%PDF-"), data[:20]
        assert phrase in pdf_text(data)
    elif target in ("html", "txt"):
        text = data.decode("utf-8")
        if target == "html":
            assert re.search(r"<html|<!DOCTYPE", text, re.IGNORECASE), text[:200]
            text = html.unescape(re.sub(r"<[^>]+>", " ", text))
        assert phrase in _squash(text)
    elif target == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"))))
        cells = {cell.strip() for row in rows for cell in row}
        assert phrase in cells, sorted(cells)[:20]
    elif target == "png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        image = Image.open(io.BytesIO(data))
        image.load()
        assert image.format == "PNG"
        assert image.width >= 100 and image.height >= 50, image.size
        # A blank render would be one colour; a real page or slide has several.
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 1
    elif target in PACKAGE_PARTS:
        part, mimetype = PACKAGE_PARTS[target]
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            assert zf.testzip() is None
            names = set(zf.namelist())
            assert part in names, sorted(names)[:20]
            if mimetype:
                assert zf.read("mimetype").decode("ascii") == mimetype
            else:
                assert "[Content_Types].xml" in names
        assert phrase in package_text(data)
    else:
        raise AssertionError(f"no check for target {target!r}")
