"""What a killed process leaves in the engine's directory, found for ``converter gc``.

The pool empties its scratch directory when it starts and stops, and removes each
conversion's directory when that conversion ends; a process killed in between
leaves them behind. So do profile directories of instances that no longer exist
(``engine/instance-N`` for N at or above CONVERTER_WORKERS after it was lowered).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

_INSTANCE = re.compile(r"^instance-(\d+)$")


def stale_scratch(scratch_root: Path, older_than: float) -> Iterator[Path]:
    """Entries of the scratch directory untouched for older_than seconds.

    A conversion writes into its directory when it starts and when LibreOffice
    finishes, so one not modified for longer than any conversion may take
    belongs to no conversion in progress.
    """
    yield from _untouched(scratch_root, older_than)


def stale_instances(engine_root: Path, workers: int, older_than: float) -> Iterator[Path]:
    """instance-N directories beyond the pool's size that no running process uses."""
    if not engine_root.is_dir():
        return
    in_use = _paths_in_command_lines()
    for path in _untouched(engine_root, older_than):
        match = _INSTANCE.match(path.name)
        if not match or int(match.group(1)) < workers:
            continue
        # Another service on this data directory may run more instances than this
        # configuration says: a directory some process names is never stale.
        if not any(str(path) + "/" in arg or arg.endswith(str(path)) for arg in in_use):
            yield path


def _untouched(root: Path, older_than: float) -> Iterator[Path]:
    if not root.is_dir():
        return
    cutoff = time.time() - older_than
    for entry in root.iterdir():
        try:
            if entry.lstat().st_mtime < cutoff:
                yield entry
        except FileNotFoundError:
            continue  # removed while listing


def _paths_in_command_lines() -> list[str]:
    found: list[str] = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        found.extend(arg for arg in raw.decode(errors="replace").split("\0") if arg)
    # soffice names its profile as a file:// URL; compare on plain paths.
    return [os.path.normpath(unquote(arg.split("file://", 1)[-1])) if "file://" in arg
            else arg for arg in found]
