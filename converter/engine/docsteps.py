"""Steps on a loaded document and on its files, shared by requests and warm-up.

Free of ``uno`` (documents are used through their attributes only), so that the bridge
stays the one module that imports it.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any


def update_indexes(document: Any, everything: bool) -> None:
    """Regenerate tables of contents, and every other index only when asked.

    A table of contents carries page numbers that only exist after layout, so it is
    always rebuilt. Bibliographies, alphabetical and user indexes are rebuilt from
    what LibreOffice could import: a Word bibliography whose sources it cannot read
    would come out empty, so they keep the entries the document stored.
    """
    if not hasattr(document, "getDocumentIndexes"):
        return
    indexes = document.getDocumentIndexes()
    for i in range(indexes.getCount()):
        index = indexes.getByIndex(i)
        if everything or index.supportsService("com.sun.star.text.ContentIndex"):
            index.update()


def turn_landscape(document: Any) -> None:
    """Make every page landscape: page styles for text and sheets, the page size for decks."""
    if hasattr(document, "getDrawPages") and not hasattr(document, "getStyleFamilies"):
        _turn_draw_pages(document)
        return
    if hasattr(document, "getDrawPages") and document.supportsService(
            "com.sun.star.presentation.PresentationDocument"):
        _turn_draw_pages(document)
        return
    styles = document.getStyleFamilies().getByName("PageStyles")
    for name in styles.getElementNames():
        style = styles.getByName(name)
        width, height = style.Width, style.Height
        style.IsLandscape = True
        if height > width:
            style.Width, style.Height = height, width


def _turn_draw_pages(document: Any) -> None:
    # One page size serves a whole deck; setting it on the first page turns them all.
    pages = document.getDrawPages()
    if pages.getCount() == 0:
        return
    page = pages.getByIndex(0)
    width, height = page.Width, page.Height
    if height > width:
        page.Width, page.Height = height, width


# LibreOffice's RTF tokenizer resolves INCLUDEPICTURE by itself: it opens the named file
# with a plain file stream and embeds it, so neither the link settings of the profile nor
# its referer check nor the proxy apply, and any local image (or PDF) the engine can read
# would end up in the output. It acts only on the literal bytes INCLUDEPICTURE of a field
# instruction (hex escapes are control words to it), so changing one letter of the word in
# a copy leaves an unknown field that shows its cached result, as Word does offline.
_RTF_INCLUDEPICTURE = re.compile(rb"includepicture", re.IGNORECASE)


def defuse_rtf(source: Path) -> Path | None:
    """A copy of an RTF source whose INCLUDEPICTURE fields are inert, or None if not needed."""
    with source.open("rb") as fh:
        data = fh.read(1024)
        if b"{\\rtf" not in data:
            return None
        data += fh.read()
    if not _RTF_INCLUDEPICTURE.search(data):
        return None
    # Same name in a private folder, so nothing derived from the file name changes; same
    # length, so byte counts such as \bin stay right.
    folder = source.parent / f".defused-{os.getpid()}-{threading.get_ident()}"
    folder.mkdir(exist_ok=True)
    copy = folder / source.name
    copy.write_bytes(_RTF_INCLUDEPICTURE.sub(lambda m: m.group()[:-1] + b"_", data))
    return copy


def adopt_suffixed_output(target: Path) -> None:
    """Move a per-sheet export (``<stem>-<sheet name>.<ext>``) to the requested name.

    LibreOffice's CSV filter appends the sheet's name to the file name when the
    options select a sheet; the caller asked for exactly one file at ``target``.
    """
    if target.exists():
        return
    candidates = [p for p in target.parent.glob(f"{target.stem}-*{target.suffix}") if p.is_file()]
    if len(candidates) == 1:
        candidates[0].replace(target)
