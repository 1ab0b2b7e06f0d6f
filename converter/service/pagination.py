"""Opaque cursors for newest-first pagination."""

from __future__ import annotations

import base64
import binascii

from converter.errors import InvalidRequest


def encode_cursor(seq: int) -> str:
    """Cursor pointing after the row with this sequence number."""
    return base64.urlsafe_b64encode(f"s{seq}".encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> int:
    """Sequence number inside a cursor, or InvalidRequest."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        if not text.startswith("s"):
            raise ValueError(text)
        return int(text[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor is invalid; pass the next_cursor of a previous page",
                             field="cursor") from None


def parse_limit(raw: str | None, default: int = 20, maximum: int = 100) -> int:
    """Validate a limit query parameter."""
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise InvalidRequest(f"limit must be an integer from 1 to {maximum}", field="limit")
    return int(raw)
