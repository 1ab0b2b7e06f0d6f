"""Where `converter serve` keeps its processes' metric files (prometheus multiprocess mode).

prometheus-client memory-maps one file per process and metric kind, and grows it
page by page as new series appear. A page that the file system cannot back kills
the process with SIGBUS, so these files must not live on CONVERTER_DATA_DIR, which
the disk guard expects to fill up: a full data disk would kill the HTTP worker that
counts the 507 it answers. They go on /dev/shm (memory, where gunicorn keeps its
heartbeat files too), in a directory of their own per service.

A service holds an flock on ``OWNER_LOCK`` in its directory for as long as it runs,
so the next service to start removes the directories whose lock it can take: their
owner was killed. A lock rather than a pid, because services in separate pid
namespaces (containers of one pod) may share one /dev/shm.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import tempfile
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SHARED_MEMORY = Path("/dev/shm")
PREFIX = "converter-metrics-"
OWNER_LOCK = ".owner.lock"
# Directories still being set up: never swept, since their lock is not taken yet.
_MAKING = ".making-"

# The open lock file of this process's own directory (one service per process).
_owner_fd: int | None = None


def memory_dir() -> Path:
    """/dev/shm when this host has a writable one, else the temporary directory."""
    if SHARED_MEMORY.is_dir() and os.access(SHARED_MEMORY, os.W_OK | os.X_OK):
        return SHARED_MEMORY
    return Path(tempfile.gettempdir())


def _owner_gone(directory: Path) -> bool:
    try:
        fd = os.open(directory / OWNER_LOCK, os.O_RDWR)
    except OSError:
        # No lock to take (not one of ours, or not readable): nothing proves it dead.
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # its service is running
    finally:
        os.close(fd)
    return True


def sweep_leftovers(base: Path) -> list[Path]:
    """Remove the metric directories of services that are no longer running."""
    removed = []
    for directory in base.glob(f"{PREFIX}*"):
        if directory.is_dir() and _owner_gone(directory):
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed


def prepare(base: Path | None = None) -> Path:
    """A fresh, private metrics directory in memory (or base), as PROMETHEUS_MULTIPROC_DIR."""
    # prometheus-client picks its storage when its first metric is made; metrics made
    # in this process already would count in memory, not in the shared directory.
    if "converter.metrics" in sys.modules:
        raise RuntimeError("converter.metrics was imported before the serve command set "
                           f"{MULTIPROC_ENV}; import it lazily in the supervisor")
    base = base or memory_dir()
    sweep_leftovers(base)
    # mkdtemp makes it 0700: /dev/shm is shared by every user of the host. It gets its
    # final name only once locked, so a sweep by another service never sees it unlocked.
    making = Path(tempfile.mkdtemp(prefix=_MAKING + PREFIX, dir=base))
    global _owner_fd
    _owner_fd = os.open(making / OWNER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(_owner_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    path = base / making.name[len(_MAKING):]
    making.rename(path)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def remove(path: Path) -> None:
    """Delete a stopped service's metrics directory, and let go of its lock."""
    global _owner_fd
    shutil.rmtree(path, ignore_errors=True)
    if _owner_fd is not None:
        os.close(_owner_fd)
        _owner_fd = None
