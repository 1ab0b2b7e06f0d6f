"""PNG pages drawn from a PDF with pdf2image (poppler's pdftoppm), one page at a time.

pdftoppm renders each page and writes it to disk before it starts the next, and
this process never decodes an image, so memory stays flat whatever the page
count. Several pages travel as a ZIP of ``page-001.png``, ``page-002.png``...
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

from pdf2image import convert_from_path, pdfinfo_from_path
from pdf2image.exceptions import PDFInfoNotInstalledError, PDFPageCountError, PDFSyntaxError

from converter.errors import InvalidRequest, UnprocessableDocument

PNG = "image/png"
ZIP = "application/zip"


@dataclass(frozen=True)
class Rendered:
    """The file that holds the selected pages, and what it is."""

    path: Path
    media_type: str
    pages: int


def page_count(pdf: Path, timeout: float = 60) -> int:
    """Number of pages of a PDF, from pdfinfo."""
    return int(str(pdf_info(pdf, timeout).get("Pages", 0)))


def pdf_info(pdf: Path, timeout: float = 60) -> dict[str, object]:
    """pdfinfo's fields (Pages, Title, Author...) of a PDF made by the engine."""
    try:
        info: dict[str, object] = pdfinfo_from_path(str(pdf), timeout=int(max(timeout, 1)))
    except (PDFPageCountError, PDFSyntaxError) as exc:
        raise UnprocessableDocument(f"The PDF made from this document is unreadable: {exc}",
                                    ) from None
    except PDFInfoNotInstalledError:
        raise RuntimeError("pdfinfo is missing: install poppler-utils") from None
    return info


def select_pages(spec: str, total: int, limit: int) -> list[int]:
    """The page numbers a ``pages`` option selects; 400 past the document or the limit."""
    if spec == "all":
        chosen = list(range(1, total + 1))
    else:
        chosen = []
        for part in spec.split(","):
            first, dash, last = part.partition("-")
            start = int(first)
            end = (int(last) if last else total) if dash else start
            chosen.extend(range(start, min(end, total) + 1))
        chosen = sorted(set(chosen))
        if not chosen:
            raise InvalidRequest(f"options.pages: {spec} selects no page; the document has "
                                 f"{total} page{'s' if total != 1 else ''}",
                                 field="options.pages", pages=total)
    if len(chosen) > limit:
        raise InvalidRequest(
            f"options.pages selects {len(chosen)} pages; at most {limit} may be drawn in one "
            "request (CONVERTER_MAX_PNG_PAGES): ask for a range such as 1-50",
            field="options.pages", limit=limit, pages=total)
    return chosen


def _runs(pages: list[int]) -> list[tuple[int, int]]:
    """Contiguous runs of sorted page numbers: one pdftoppm call each."""
    runs: list[tuple[int, int]] = []
    for page in pages:
        if runs and page == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], page)
        else:
            runs.append((page, page))
    return runs


def render(pdf: Path, spec: str, dpi: int, out_dir: Path, limit: int,
           timeout: float) -> Rendered:
    """Draw the selected pages of pdf into out_dir; one PNG, or a ZIP of several."""
    total = page_count(pdf, timeout)
    pages = select_pages(spec, total, limit)
    drawn = out_dir / "pages"
    drawn.mkdir()
    for first, last in _runs(pages):
        convert_from_path(str(pdf), dpi=dpi, output_folder=str(drawn), first_page=first,
                          last_page=last, fmt="png", output_file="p", paths_only=True,
                          timeout=int(max(timeout, 1)))
    files = _by_page(drawn)
    missing = [p for p in pages if p not in files]
    if missing:
        raise UnprocessableDocument(f"pdftoppm drew no image for page {missing[0]}")
    if len(pages) == 1:
        return Rendered(files[pages[0]], PNG, 1)
    archive = out_dir / "pages.zip"
    # PNG is compressed already: storing the pages keeps the ZIP fast to write and read.
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for page in pages:
            zf.write(files[page], f"page-{page:03d}.png")
            files[page].unlink()
    return Rendered(archive, ZIP, len(pages))


def _by_page(folder: Path) -> dict[int, Path]:
    # pdftoppm names pages p-1.png or p-001.png (zero-padded to the page count's width).
    found: dict[int, Path] = {}
    for path in folder.glob("p*.png"):
        number = path.stem.rsplit("-", 1)[-1]
        if number.isdecimal():
            found[int(number)] = path
    return found
