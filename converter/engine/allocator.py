"""The memory allocator LibreOffice runs with: jemalloc when it is installed.

Loading, laying out and exporting a document is allocation-heavy C++; under
jemalloc (preloaded into soffice.bin only) LibreOffice spent 13 to 15% less CPU on
the throughput benchmark's mixed batch than under glibc's malloc, and served ×1.12
the documents per second, with no higher peak or idle memory (BENCHMARKS.md). The
Python processes keep the system allocator: their time is not in malloc.
"""

from __future__ import annotations

import ctypes.util
import os
import sysconfig
from pathlib import Path

from converter.errors import EngineStartError

LIBRARY = "libjemalloc.so.2"


def jemalloc_path() -> str | None:
    """Where libjemalloc.so.2 is (Debian's libjemalloc2), or None when it is not installed."""
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    candidates = [Path("/usr/lib") / multiarch / LIBRARY, Path("/usr/lib") / LIBRARY,
                  Path("/usr/local/lib") / LIBRARY]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    found = ctypes.util.find_library("jemalloc")  # another layout: the loader's own search
    return found if found and found.endswith(LIBRARY) else None


def find_allocator(choice: str) -> str | None:
    """The library to preload into soffice.bin for CONVERTER_SOFFICE_ALLOCATOR, or None."""
    if choice == "system":
        return None
    path = jemalloc_path()
    if path is None and choice == "jemalloc":
        raise EngineStartError(
            f"CONVERTER_SOFFICE_ALLOCATOR=jemalloc but {LIBRARY} was not found; install "
            "libjemalloc2 (apt-get install libjemalloc2) or set CONVERTER_SOFFICE_ALLOCATOR "
            "to auto or system")
    return path


def allocator_name(preload: str | None) -> str:
    """What an instance runs with, for logs and the engine's stats."""
    return "jemalloc" if preload else "system"


def with_preload(env: dict[str, str], preload: str | None) -> dict[str, str]:
    """env with preload loaded first, ahead of any LD_PRELOAD the operator already set."""
    if preload:
        env["LD_PRELOAD"] = os.pathsep.join(filter(None, [preload, env.get("LD_PRELOAD")]))
    return env
