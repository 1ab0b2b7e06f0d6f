"""Per-conversion scratch directories, shared by the in-process pool and the remote engine."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def scratch_dir(root: Path) -> Iterator[Path]:
    """A private directory under root for one conversion, always removed afterwards."""
    path = root / uuid.uuid4().hex
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
