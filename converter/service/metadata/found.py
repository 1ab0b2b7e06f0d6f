"""What one format reader found: the fields it could determine, nothing more."""

from __future__ import annotations

import re
from typing import TypedDict

# Bytes read from a small metadata part (docProps/*.xml, meta.xml, an RTF header) at most.
PART_CAP = 2 << 20
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]+")
MAX_TEXT = 1000  # characters kept of a title or author


class Found(TypedDict, total=False):
    """Fields a reader determined; a key that is absent means "could not tell"."""

    pages: int | None
    sheets: list[str] | None
    title: str | None
    author: str | None


def clean(value: str | None) -> str | None:
    """A title or author as clients should see it: trimmed, no control characters, or None."""
    if value is None:
        return None
    text = _CONTROL.sub("", value).strip()
    return text[:MAX_TEXT] or None


def text_fields(texts: dict[str, str], complete: bool) -> Found:
    """Title and author from a pass's texts: None when a complete pass lacks one, else
    unknown (absent from the result)."""
    out = Found()
    if "title" in texts:
        out["title"] = clean(texts["title"])
    elif complete:
        out["title"] = None
    if "author" in texts:
        out["author"] = clean(texts["author"])
    elif complete:
        out["author"] = None
    return out
