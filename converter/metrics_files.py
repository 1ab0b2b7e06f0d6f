"""Where `converter serve` keeps its processes' metric files (prometheus multiprocess mode).

prometheus-client memory-maps one file per process and metric kind, and grows it
page by page as new series appear. A page that the file system cannot back kills
the process with SIGBUS, so these files must not live on CONVERTER_DATA_DIR, which
the disk guard expects to fill up: a full data disk would kill the HTTP worker that
counts the 507 it answers. They go on /dev/shm (memory, where gunicorn keeps its
heartbeat files too), in a directory named after the supervisor's pid, so that the
leftovers of a killed service are recognised and removed by the next one.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SHARED_MEMORY = Path("/dev/shm")
PREFIX = "converter-metrics-"


def memory_dir() -> Path:
    """/dev/shm when this host has a writable one, else the temporary directory."""
    if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK | os.X_OK):
        return SHARED_MEMORY
    return Path(tempfile.gettempdir())


def _owner_gone(directory: Path) -> bool:
    pid = directory.name[len(PREFIX):].split("-", 1)[0]
    if not pid.isdigit():
        return False
    # Our own pid on an old directory: a service of a past boot (or container) had it.
    return int(pid) == os.getpid() or not Path(f"/proc/{pid}").exists()


def sweep_leftovers(base: Path) -> list[Path]:
    """Remove the metric directories of services that are no longer running."""
    removed = []
    for directory in base.glob(f"{PREFIX}*"):
        if directory.is_dir() and _owner_gone(directory):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def prepare() -> Path:
    """A fresh, private metrics directory in memory, exported as PROMETHEUS_MULTIPROC_DIR."""
    # prometheus-client picks its storage when its first metric is made; metrics made
    # in this process already would count in memory, not in the shared directory.
    if "converter.metrics" in sys.modules:
        raise RuntimeError("converter.metrics was imported before the serve command set "
                           f"{MULTIPROC_ENV}; import it lazily in the supervisor")
    base = memory_dir()
    sweep_leftovers(base)
    # mkdtemp makes it 0700: /dev/shm is shared by every user of the host.
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def remove(path: Path) -> None:
    """Delete a stopped service's metrics directory."""
    shutil.rmtree(path, ignore_errors=True)
