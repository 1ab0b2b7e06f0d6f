"""The socket files LibreOffice binds for its single-instance IPC, found so they can be removed.

Every soffice binds ``OSL_PIPE_<uid>_SingleOfficeIPC_<hash>`` and unlinks it only on a
clean exit; the pool ends instances with SIGKILL, so without this each start would
leave one behind. LibreOffice 7.4 puts the file in /tmp whenever /tmp is writable,
whatever TMPDIR says (OSL_SOCKET_PATH is consulted only when neither /tmp nor /var/tmp
is writable), so the files are found from the process itself: the Unix sockets its
descriptors hold, named in /proc/net/unix. Linux only, like the rest of the engine.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

PIPE_PREFIX = "OSL_PIPE_"


def bound_pipes(pid: int) -> set[Path]:
    """The OSL_PIPE_* socket files the process pid holds open (empty if it is gone)."""
    inodes = _socket_inodes(pid)
    if not inodes:
        return set()
    found: set[Path] = set()
    try:
        with open(f"/proc/{pid}/net/unix", encoding="utf-8", errors="replace") as table:
            next(table, None)  # the header line
            for line in table:
                # Num RefCount Protocol Flags Type St Inode Path
                parts = line.split(None, 7)
                if len(parts) == 8 and parts[6] in inodes:
                    path = Path(parts[7].strip())
                    if path.name.startswith(PIPE_PREFIX):
                        found.add(path)
    except OSError:
        return set()
    return found


def remove_pipes(paths: set[Path]) -> None:
    """Unlink the given socket files; anything that is no longer a socket is left alone."""
    for path in paths:
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()


def _socket_inodes(pid: int) -> set[str]:
    fd_dir = f"/proc/{pid}/fd"
    inodes: set[str] = set()
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fd_dir}/{name}")
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    return inodes
