"""Delivering one local file to a connector: collision policy, retries with backoff.

Exports and watched-folder automations both end here. The provider writes
atomically (temp name and rename, or one PUT / a completed multipart upload),
so a failed attempt leaves nothing behind and retrying is safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from converter.connectors.base import Delivered, Provider
from converter.connectors.paths import join, normalize_subpath, numbered
from converter.errors import ConnectorUnavailable, DestinationExists, InvalidRequest

logger = logging.getLogger("converter.connectors")

ON_CONFLICT = ("rename", "overwrite", "fail")
MAX_RENAMES = 1000


def validate_on_conflict(raw: object, field: str = "on_conflict") -> str:
    """on_conflict, defaulting to rename; InvalidRequest listing the valid values."""
    if raw is None or raw == "":
        return "rename"
    if raw not in ON_CONFLICT:
        raise InvalidRequest(f"{field} must be one of {', '.join(ON_CONFLICT)}", field=field,
                             valid_values=list(ON_CONFLICT))
    return str(raw)


def _place(provider: Provider, local_file: Path, subpath: str, filename: str,
           on_conflict: str) -> Delivered:
    """One attempt: write under filename, or the next free "name (n).ext" for rename."""
    if on_conflict != "rename":
        return provider.upload(local_file, join(subpath, filename),
                               overwrite=on_conflict == "overwrite")
    for number in range(MAX_RENAMES):
        try:
            return provider.upload(local_file, join(subpath, numbered(filename, number)),
                                   overwrite=False)
        except DestinationExists:
            continue
    raise DestinationExists(f"{join(subpath, filename)!r} and its first {MAX_RENAMES - 1} "
                            "numbered alternatives all exist at the destination",
                            path=join(subpath, filename))


def deliver(provider: Provider, local_file: Path, subpath: str, filename: str,
            on_conflict: str = "rename", attempts: int = 4, backoff: float = 1.0,
            sleep: Callable[[float], None] = time.sleep) -> Delivered:
    """Write local_file at subpath/filename, retrying transient failures with backoff.

    on_conflict: ``rename`` (default, "name (1).pdf"), ``overwrite`` or ``fail``
    (DestinationExists, a 409). ConnectorFailed (the provider refused) is not retried;
    ConnectorUnavailable is, ``attempts`` times in all, waiting backoff, 2x, 4x... between.
    """
    on_conflict = validate_on_conflict(on_conflict)
    subpath = normalize_subpath(subpath)
    for attempt in range(1, attempts + 1):
        try:
            return _place(provider, local_file, subpath, filename, on_conflict)
        except ConnectorUnavailable as exc:
            if attempt == attempts:
                raise ConnectorUnavailable(
                    f"{exc.message} (gave up after {attempts} attempts)") from exc
            delay = backoff * 2 ** (attempt - 1)
            logger.warning("delivery of %s to %r failed (%s); attempt %d of %d in %.1fs",
                           filename, provider, exc.message, attempt + 1, attempts, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises
