"""The engine process as `converter serve` runs it: started, watched and restarted.

The pool lives in its own process so that every HTTP worker shares one set of
LibreOffice instances, one fair queue and one supervisor. If that process dies,
HTTP keeps answering (/readyz says 503 with the reason) while this watcher
starts a new one on the same socket.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from converter.children import WatchedProcess


def socket_path_for(data_path: Path) -> Path:
    """Where the engine's socket goes: in the data directory, or a short path if too long."""
    path = (data_path / "engine" / "engine.sock").resolve()
    # sun_path holds 107 bytes; deep data directories (tests, some volumes) exceed it.
    if len(str(path)) <= 100:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path("/tmp") / f"converter-{digest}" / "engine.sock"


class EngineProcess(WatchedProcess):
    """Runs `converter engine --socket PATH` and brings it back whenever it exits."""

    def __init__(self, socket_path: Path, env: dict[str, str] | None = None) -> None:
        self.socket_path = socket_path
        super().__init__("engine process", [sys.executable, "-m", "converter", "engine",
                                            "--socket", str(socket_path)], env,
                         on_exit=_forget_gauges)

    @property
    def url(self) -> str:
        """CONVERTER_ENGINE_URL for the HTTP workers."""
        return f"unix://{self.socket_path}"

    def start(self) -> None:
        """Start the engine and the thread that watches it."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        super().start()


def _forget_gauges(pid: int) -> None:
    # The dead engine's live gauges (busy, waiting, instances) must not add to the new one's.
    from converter import metrics

    metrics.mark_process_dead(pid)
