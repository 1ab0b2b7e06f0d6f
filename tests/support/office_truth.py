"""Independent answers about corpus documents: full XML parses, LibreOffice and pdfinfo.

The metadata reader streams and caps; these helpers do the slow, obvious thing instead
(whole trees with ElementTree, real conversions with soffice), so agreement means something.
"""

from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

NS = {
    "cp": "http://schemas.openxmlformats.org/package/2006/metadata/core-properties",
    "dc": "http://purl.org/dc/elements/1.1/",
    "ep": "http://schemas.openxmlformats.org/officeDocument/2006/extended-properties",
    "office": "urn:oasis:names:tc:opendocument:xmlns:office:1.0",
    "meta": "urn:oasis:names:tc:opendocument:xmlns:meta:1.0",
    "table": "urn:oasis:names:tc:opendocument:xmlns:table:1.0",
    "draw": "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0",
    "sml": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
}


def norm(value: str | None) -> str | None:
    """Trimmed text, None when empty (how the reader reports a missing title or author)."""
    value = (value or "").strip()
    return value or None


def ooxml_core(path: Path) -> tuple[str | None, str | None]:
    """(dc:title, dc:creator) of an OOXML package's docProps/core.xml."""
    with zipfile.ZipFile(path) as zf:
        if "docProps/core.xml" not in zf.namelist():
            return None, None
        root = ET.fromstring(zf.read("docProps/core.xml"))
    return (norm(root.findtext("dc:title", namespaces=NS)),
            norm(root.findtext("dc:creator", namespaces=NS)))


def docx_saved_pages(path: Path) -> int | None:
    """<Pages> of docProps/app.xml, as Word saved it."""
    with zipfile.ZipFile(path) as zf:
        root = ET.fromstring(zf.read("docProps/app.xml"))
    text = root.findtext("ep:Pages", namespaces=NS)
    return int(text) if text else None


def xlsx_sheets(path: Path) -> list[str]:
    """Sheet names in xl/workbook.xml's <sheets>, in order."""
    with zipfile.ZipFile(path) as zf:
        root = ET.fromstring(zf.read("xl/workbook.xml"))
    return [sheet.get("name", "") for sheet in root.findall("sml:sheets/sml:sheet", NS)]


def odf_meta(root: ET.Element) -> dict[str, str | None]:
    """Title, author (initial creator, else last creator) and page count from office:meta."""
    meta = root.find("office:meta", NS)
    if meta is None:
        return {"title": None, "author": None, "pages": None}
    stats = meta.find("meta:document-statistic", NS)
    return {"title": norm(meta.findtext("dc:title", namespaces=NS)),
            "author": norm(meta.findtext("meta:initial-creator", namespaces=NS))
            or norm(meta.findtext("dc:creator", namespaces=NS)),
            "pages": None if stats is None else stats.get(f"{{{NS['meta']}}}page-count")}


def odf_body(root: ET.Element) -> tuple[list[str], int]:
    """(sheet names, slide count) of an ODF content root (or a flat document's root)."""
    body = root.find("office:body", NS)
    assert body is not None
    sheets = [table.get(f"{{{NS['table']}}}name", "")
              for table in body.findall("office:spreadsheet/table:table", NS)]
    slides = len(body.findall("office:presentation/draw:page", NS))
    return sheets, slides


def odf_parts(path: Path) -> tuple[ET.Element | None, ET.Element]:
    """(meta.xml root or None, content.xml root), parsed whole."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        meta = ET.fromstring(zf.read("meta.xml")) if "meta.xml" in names else None
        return meta, ET.fromstring(zf.read("content.xml"))


def convert(sources: list[Path], target: str, out: Path, profile: Path) -> dict[str, Path]:
    """Convert sources with one soffice run; {source name: output} for those it wrote."""
    out.mkdir(parents=True, exist_ok=True)
    # A private profile: another soffice on the machine must not take over the job.
    subprocess.run(["soffice", f"-env:UserInstallation={profile.as_uri()}", "--headless",
                    "--norestore", "--convert-to", target, "--outdir", str(out),
                    *map(str, sources)],
                   check=True, capture_output=True, timeout=900,
                   env={**os.environ, "HOME": str(profile)})
    extension = target.split(":", 1)[0]
    written = {}
    for source in sources:
        result = out / f"{source.stem}.{extension}"
        if result.exists():
            written[source.name] = result
    return written


def pdfinfo(pdf: Path) -> dict[str, str]:
    """pdfinfo's fields (Title, Author, Pages, ...), decoded as UTF-8."""
    text = subprocess.run(["pdfinfo", "-enc", "UTF-8", str(pdf)], check=True,
                          capture_output=True, timeout=60).stdout.decode("utf-8")
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    return fields
