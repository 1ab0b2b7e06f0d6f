"""Metadata of OpenDocument files, packaged (odt, ods, odp) or flat (fodt, fods, fodp).

Title and author come from office:meta (meta.xml, or the flat file's own office:meta), the
text page count from meta:document-statistic, sheet names and slides from the body
(content.xml), which is streamed: a big spreadsheet's content is never held as a tree.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

from converter.service.metadata.found import PART_CAP, Found, clean
from converter.service.metadata.xmlscan import CHUNK, Key, Scan, member_chunks, scan

_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_META = "urn:oasis:names:tc:opendocument:xmlns:meta:1.0"
_DC = "http://purl.org/dc/elements/1.1/"
_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_DRAW = "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
_STYLE = "urn:oasis:names:tc:opendocument:xmlns:style:1.0"
_PRESENTATION = "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0"
# Content (and flat files, which may embed pictures) is read up to this many bytes: expat
# streams 10-30 MB a second here, so the cap also bounds the time a hostile file can take.
BODY_CAP = 128 << 20

_IN_META = f"{_OFFICE} meta"
_META_TEXTS: dict[Key, str] = {(_IN_META, f"{_DC} title"): "title",
                               (_IN_META, f"{_META} initial-creator"): "initial-creator",
                               (_IN_META, f"{_DC} creator"): "creator"}
_META_ELEMENTS: dict[Key, str] = {(_IN_META, f"{_META} document-statistic"): "statistic"}
_BODY_ELEMENTS: dict[str, dict[Key, str]] = {
    # Only direct children of the body are sheets or slides (tables may nest in shapes).
    "calc": {(f"{_OFFICE} spreadsheet", f"{_TABLE} table"): "sheet"},
    "impress": {(f"{_OFFICE} presentation", f"{_DRAW} page"): "page",
                (f"{_OFFICE} automatic-styles", f"{_STYLE} style"): "style",
                (f"{_STYLE} style", f"{_STYLE} drawing-page-properties"): "page-properties"},
}


def read_odf(path: Path, family: str) -> Found:
    """Fields of a packaged OpenDocument file (zip with meta.xml and content.xml)."""
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        if "meta.xml" in names:
            meta = scan(member_chunks(zf, "meta.xml", PART_CAP), _META_TEXTS, _META_ELEMENTS,
                        PART_CAP)
            found = _meta_fields(meta, family)
        else:
            found = Found(title=None, author=None)  # no meta.xml: the document has none
        if family in _BODY_ELEMENTS and "content.xml" in names:
            body = scan(member_chunks(zf, "content.xml", BODY_CAP), None,
                        _BODY_ELEMENTS[family], BODY_CAP)
            found.update(_body_fields(body, family))
        return found


def read_flat_odf(path: Path, family: str) -> Found:
    """Fields of a flat OpenDocument file, in one pass over its XML."""
    both = scan(_file_chunks(path, BODY_CAP), _META_TEXTS,
                {**_META_ELEMENTS, **_BODY_ELEMENTS.get(family, {})}, BODY_CAP)
    found = _meta_fields(both, family)
    found.update(_body_fields(both, family))
    return found


def _file_chunks(path: Path, cap: int) -> Iterator[bytes]:
    read = 0
    with path.open("rb") as fh:
        while read <= cap and (chunk := fh.read(CHUNK)):
            read += len(chunk)
            yield chunk


def _meta_fields(meta: Scan, family: str) -> Found:
    found = Found()
    if "title" in meta.texts:
        found["title"] = clean(meta.texts["title"])
    elif meta.complete:
        found["title"] = None
    # meta:initial-creator is the author (what LibreOffice exports as the PDF's Author);
    # dc:creator is whoever saved last, the only name some generators write.
    author = clean(meta.texts.get("initial-creator")) or clean(meta.texts.get("creator"))
    if author is not None or meta.complete:
        found["author"] = author
    if family == "writer":
        stats = [attrs for label, attrs in meta.events if label == "statistic"]
        count = stats[0].get(f"{_META} page-count", "") if stats else ""
        if count.isdigit():
            found["pages"] = int(count)
    return found


def _body_fields(body: Scan, family: str) -> Found:
    if not body.complete:
        return Found()
    if family == "calc":
        return Found(sheets=[attrs.get(f"{_TABLE} name", "") for label, attrs in body.events
                             if label == "sheet"])
    if family != "impress":
        return Found()
    # A PDF leaves hidden slides out; they are hidden by their automatic page style.
    hidden: set[str] = set()
    style = ""
    pages = 0
    for label, attrs in body.events:
        if label == "style":
            style = attrs.get(f"{_STYLE} name", "")
        elif label == "page-properties":
            if style and attrs.get(f"{_PRESENTATION} visibility") == "hidden":
                hidden.add(style)
        elif label == "page" and attrs.get(f"{_DRAW} style-name", "") not in hidden:
            pages += 1
    return Found(pages=pages)
