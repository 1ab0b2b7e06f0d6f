"""Subpaths and object names: what a caller may ask a connector to write to, made safe.

A subpath is always relative to the connector's root and "/"-separated. It is
refused, not repaired, when it tries to leave the root (``..``, an absolute or
drive part, a backslash) or carries control characters: silently rewriting a
path someone typed would deliver files where nobody looks for them.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath

from converter.errors import InvalidRequest

MAX_SUBPATH = 1024
MAX_NAME = 200
_DRIVE = re.compile(r"^[A-Za-z]:")
# Characters some file systems (Windows, SMB shares, cloud drives) refuse in a name.
_UNSAFE_IN_NAME = re.compile(r'[<>:"/\\|?*]')
_SPACES = re.compile(r"\s+")


def _control(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def normalize_subpath(raw: object, field: str = "destination_subpath") -> str:
    """The normalised form of a relative subpath ("" for the root); InvalidRequest naming field."""
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise InvalidRequest(f"{field} must be a string: a relative folder such as "
                             "\"exports/2024\"", field=field)
    if len(raw) > MAX_SUBPATH:
        raise InvalidRequest(f"{field} is longer than {MAX_SUBPATH} characters", field=field)
    if _control(raw):
        raise InvalidRequest(f"{field} must not contain control characters", field=field)
    if "\\" in raw:
        raise InvalidRequest(f"{field} must use \"/\" between folders, never a backslash",
                             field=field)
    if raw.startswith(("/", "~")) or _DRIVE.match(raw):
        raise InvalidRequest(f"{field} must be relative to the connector's root: no leading "
                             "\"/\", \"~\" or drive letter", field=field)
    parts = [part for part in raw.split("/") if part not in ("", ".")]
    if any(part == ".." for part in parts):
        raise InvalidRequest(f"{field} must not contain \"..\": it stays inside the "
                             "connector's root", field=field)
    if any(part != part.strip() or part.endswith(".") for part in parts):
        raise InvalidRequest(f"{field} folder names must not start or end with spaces or end "
                             "with a dot", field=field)
    return "/".join(parts)


def join(subpath: str, name: str) -> str:
    """subpath/name, or name alone at the root."""
    return f"{subpath}/{name}" if subpath else name


def safe_name(original: str, extension: str) -> str:
    """The original file's name with the new extension, safe on any file system or bucket."""
    base = PurePosixPath(original.replace("\\", "/")).name
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = "".join(ch for ch in unicodedata.normalize("NFC", stem) if not _control(ch))
    stem = _SPACES.sub(" ", _UNSAFE_IN_NAME.sub("_", stem)).strip(" .")
    if not stem or stem in (".", ".."):
        stem = "document"
    ext = re.sub(r"[^A-Za-z0-9]", "", extension)[:16].lower()
    limit = MAX_NAME - len(ext) - 1
    # Cut by UTF-8 bytes, since file systems limit names to 255 bytes, not characters.
    encoded = stem.encode("utf-8")[:limit]
    stem = encoded.decode("utf-8", errors="ignore").rstrip(" .") or "document"
    return f"{stem}.{ext}" if ext else stem


def numbered(name: str, number: int) -> str:
    """The n-th alternative to name on a collision: "report (1).pdf", "report (2).pdf"..."""
    if number == 0:
        return name
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return f"{name} ({number})"
    return f"{stem} ({number}).{ext}"
