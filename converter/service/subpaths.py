"""Paths inside a connector as automations take them: relative, "/"-separated, no "..".

Kept to the rules of ``converter.connectors.paths`` (the connector layer's own check);
this module only adds the request field to name in a refusal.
"""

from __future__ import annotations

import re
from typing import Any

from converter.errors import InvalidRequest

MAX_LENGTH = 1024
_BAD = re.compile(r"[\x00-\x1f\x7f\\]")


def check_subpath(raw: Any, field: str) -> str:
    """The normalised relative path ("" for the root), or 400 naming field."""
    if raw is None:
        return ""
    if not isinstance(raw, str) or len(raw) > MAX_LENGTH or _BAD.search(raw):
        raise InvalidRequest(f"{field} must be a relative path of at most {MAX_LENGTH} "
                             "characters, \"/\"-separated, without control characters or "
                             "backslashes", field=field)
    parts = [p for p in raw.strip().strip("/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidRequest(f"{field} may not contain \"..\": paths stay inside the "
                             "connector's root", field=field)
    return "/".join(parts)
