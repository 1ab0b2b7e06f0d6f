"""Metadata of OOXML packages (docx, xlsx, pptx) from their XML parts, never their content.

Parts are found the way Office finds them, through the package relationships (_rels/.rels),
with the usual names as the fallback. Each field comes from one small part read with a cap,
so one broken part only makes its own fields unknown.
"""

from __future__ import annotations

import posixpath
import zipfile
from pathlib import Path

from converter.service.metadata.found import PART_CAP, Found, text_fields
from converter.service.metadata.xmlscan import Key, Scan, member_chunks, scan

_CP = "http://schemas.openxmlformats.org/package/2006/metadata/core-properties"
_DC = "http://purl.org/dc/elements/1.1/"
_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
# Transitional and Strict OOXML name the same things in two namespaces each.
_EP = ("http://schemas.openxmlformats.org/officeDocument/2006/extended-properties",
       "http://purl.oclc.org/ooxml/officeDocument/extendedProperties")
_PML = ("http://schemas.openxmlformats.org/presentationml/2006/main",
        "http://purl.oclc.org/ooxml/presentationml/main")
_SML = ("http://schemas.openxmlformats.org/spreadsheetml/2006/main",
        "http://purl.oclc.org/ooxml/spreadsheetml/main")
_R = ("http://schemas.openxmlformats.org/officeDocument/2006/relationships",
      "http://purl.oclc.org/ooxml/officeDocument/relationships")
_RELATIONSHIP: dict[Key, str] = {(f"{_PKG_REL} Relationships", f"{_PKG_REL} Relationship"): "rel"}
_MAIN_PARTS = {"docx": "word/document.xml", "xlsx": "xl/workbook.xml",
               "pptx": "ppt/presentation.xml"}
MAX_SLIDES = 5000  # slide parts opened to look for hidden slides, at most


def read_ooxml(path: Path, fmt: str) -> Found:
    """Title and author for any OOXML package, plus pages (docx, pptx) or sheets (xlsx)."""
    with zipfile.ZipFile(path) as zf:
        package = _Package(zf)
        rels = package.relationships("")
        core = _first(rels, "/metadata/core-properties") or "docProps/core.xml"
        found = _core(package, core)
        main = _first(rels, "/officeDocument") or _MAIN_PARTS.get(fmt, "")
        if fmt == "docx":
            found.update(_word_pages(package, _first(rels, "/extended-properties")
                                     or "docProps/app.xml"))
        elif fmt == "pptx":
            found.update(_visible_slides(package, main))
        elif fmt == "xlsx":
            found.update(_sheet_names(package, main))
        return found


class _Package:
    """Case-insensitive access to a package's parts, each read with a cap."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.names = {name.lower(): name for name in zf.namelist()}

    def has(self, part: str) -> bool:
        """Whether the package holds part."""
        return part.lower() in self.names

    def scan(self, part: str, texts: dict[Key, str] | None = None,
             elements: dict[Key, str] | None = None, cap: int = PART_CAP,
             stop_after_root: bool = False) -> Scan:
        """One capped pass over part (an incomplete Scan if it is missing or broken)."""
        name = self.names.get(part.lower())
        if name is None:
            return Scan(error=f"{part} is missing")
        return scan(member_chunks(self.zf, name, cap), texts, elements, cap, stop_after_root)

    def relationships(self, source: str) -> list[tuple[str, str, str]]:
        """(id, type, target part) of each internal relationship of source ("" = package)."""
        folder, base = posixpath.split(source)
        found = self.scan(posixpath.join(folder, "_rels", f"{base}.rels"),
                          elements=_RELATIONSHIP)
        out = []
        for _, attrs in found.events:
            if attrs.get("TargetMode") == "External":
                continue
            target = attrs.get("Target", "")
            # Targets are relative to the source's folder unless they start at the root.
            part = target.lstrip("/") if target.startswith("/") else posixpath.join(folder,
                                                                                     target)
            out.append((attrs.get("Id", ""), attrs.get("Type", ""), posixpath.normpath(part)))
        return out


def _first(rels: list[tuple[str, str, str]], suffix: str) -> str | None:
    return next((part for _, kind, part in rels if kind.endswith(suffix)), None)


def _core(package: _Package, part: str) -> Found:
    if not package.has(part):
        return Found(title=None, author=None)  # a package without core properties has none
    root = f"{_CP} coreProperties"
    found = package.scan(part, texts={(root, f"{_DC} title"): "title",
                                      (root, f"{_DC} creator"): "author"})
    return text_fields(found.texts, found.complete)


def _word_pages(package: _Package, part: str) -> Found:
    # The page count Word (or another writer) saved at its last layout; absent means unknown.
    wanted = {(f"{ns} Properties", f"{ns} Pages"): "pages" for ns in _EP}
    text = package.scan(part, texts=wanted).texts.get("pages", "").strip()
    return Found(pages=int(text)) if text.isdigit() else Found()


def _visible_slides(package: _Package, main: str) -> Found:
    """Slides in sldIdLst, less those marked hidden (show="0"), which a PDF leaves out."""
    wanted = {(f"{ns} sldIdLst", f"{ns} sldId"): "slide" for ns in _PML}
    listed = package.scan(main, elements=wanted, cap=16 * PART_CAP)
    if not listed.complete or len(listed.events) > MAX_SLIDES:
        return Found()
    targets = {rid: part for rid, _, part in package.relationships(main)}
    visible = 0
    for _, attrs in listed.events:
        rid = next((attrs[f"{ns} id"] for ns in _R if f"{ns} id" in attrs), None)
        part = targets.get(rid or "")
        if part is None:
            return Found()  # a slide we cannot find: let the PDF tell
        root = package.scan(part, elements={("", f"{ns} sld"): "root" for ns in _PML},
                            stop_after_root=True)
        if not root.events:
            return Found()
        visible += root.events[0][1].get("show", "1") not in ("0", "false")
    return Found(pages=visible)


def _sheet_names(package: _Package, main: str) -> Found:
    """Sheet names in workbook order, from the workbook part's <sheets>."""
    # Not openpyxl: even read-only, it parses sharedStrings, styles and chartsheets (and
    # decodes their images) in full, which a hostile workbook can make unbounded.
    wanted = {(f"{ns} sheets", f"{ns} sheet"): "sheet" for ns in _SML}
    found = package.scan(main, elements=wanted, cap=16 * PART_CAP)
    if not found.complete:
        return Found()
    return Found(sheets=[attrs.get("name", "") for _, attrs in found.events])
