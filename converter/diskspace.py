"""Free space on the data and scratch file systems: the guard that refuses work before they fill.

A full disk is the operator's problem and passes once space is freed, so it is
reported as ``InsufficientStorage`` (507, retryable) wherever it shows up: below
CONVERTER_MIN_FREE_MB before any write, or as ENOSPC in the middle of one.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from converter.errors import InsufficientStorage

logger = logging.getLogger("converter.disk")

# ENOSPC: the file system is full; EDQUOT: this user's quota on it is.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
# SQLite reports a full disk as SQLITE_FULL with this text, not as an OSError.
_SQLITE_FULL = "database or disk is full"
# Even with CONVERTER_MIN_FREE_MB=0, less than this after a failed conversion is taken
# to be what made it fail (LibreOffice reports a full disk as a generic export error).
_FLOOR = 1024 * 1024


def no_space(exc: BaseException | None) -> bool:
    """Whether exc, or an exception it was raised from, is a full disk."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            return True
        if _SQLITE_FULL in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding path."""
    # The directory may not exist yet (the engine makes scratch at start): ask its parent.
    while not path.exists() and path != path.parent:
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskGuard:
    """Refuses new work while a guarded file system has less than the configured free space."""

    def __init__(self, paths: Iterable[Path], min_free_mb: int) -> None:
        self.paths = tuple(dict.fromkeys(Path(p) for p in paths))
        self.min_free_bytes = min_free_mb * 1024 * 1024

    def shortage(self, minimum: int | None = None) -> str:
        """What is short of space, as an operator message; empty when every path has enough."""
        need = self.min_free_bytes if minimum is None else minimum
        for path in self.paths:
            try:
                free = free_bytes(path)
            except OSError:
                continue  # an unreadable path is the storage check's to report, not ours
            if free < need:
                return (f"{path} has {free / 2**20:.1f} MiB free, less than the "
                        f"{need / 2**20:g} MiB needed (CONVERTER_MIN_FREE_MB="
                        f"{self.min_free_bytes // 2**20}): free space there, or give "
                        "CONVERTER_DATA_DIR a larger volume")
        return ""

    def check(self) -> None:
        """Raise InsufficientStorage before work that writes, if space is short."""
        short = self.shortage()
        if short:
            raise _refusal(short)

    def explain(self, failure: BaseException) -> None:
        """Raise InsufficientStorage from failure if a full disk is the likelier cause."""
        if no_space(failure):
            raise _refusal(f"a write failed: {failure}") from failure
        short = self.shortage(max(self.min_free_bytes, _FLOOR))
        if short:
            raise _refusal(short) from failure


def _refusal(detail: str) -> InsufficientStorage:
    # The path and sizes are for the operator's log; the client learns only that it
    # should come back later.
    logger.warning("refusing work, disk space is short: %s", detail)
    return full_disk()


def full_disk() -> InsufficientStorage:
    """The client-facing error for a full disk, wherever it was noticed."""
    return InsufficientStorage(
        "The service has run out of disk space for documents; retry later")
