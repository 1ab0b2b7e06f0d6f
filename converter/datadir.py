"""The data directory: created if missing, and proven writable before anything uses it.

Without this check a root-owned bind mount surfaces much later as SQLite's bare
"unable to open database file", which names neither the directory nor the fix.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from converter.errors import ConfigError


def prepare(path: Path) -> None:
    """Create path if needed and check this process can write in it; else raise ConfigError."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A real write, not os.access: it also catches read-only mounts, ACLs and LSMs.
        fd, probe = tempfile.mkstemp(prefix=".write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(_message(path, exc)) from None


def _message(path: Path, exc: OSError) -> str:
    uid, gid = os.getuid(), os.getgid()
    reason = exc.strerror or str(exc)
    if isinstance(exc, FileExistsError | NotADirectoryError) or (
            path.exists() and not path.is_dir()):
        return (f"CONVERTER_DATA_DIR={path} is not a directory ({reason}): point "
                "CONVERTER_DATA_DIR at a directory, or remove what is in its place")
    if exc.errno == errno.EROFS:
        return (f"CONVERTER_DATA_DIR={path} is on a read-only file system: mount it "
                "read-write (no :ro on the volume), or set CONVERTER_DATA_DIR to a writable "
                "directory")
    return (f"CONVERTER_DATA_DIR={path} is not writable by this process (uid {uid}, "
            f"gid {gid}): {reason}. Give that user the directory (on the host of a bind "
            f"mount: chown -R {uid}:{gid} <host dir>; with podman, mount it with :U, "
            f"e.g. -v <host dir>:{path}:U), or set CONVERTER_DATA_DIR to a writable directory")
