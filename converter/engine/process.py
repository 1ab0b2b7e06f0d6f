"""The engine process as `converter serve` runs it: started, watched and restarted.

The pool lives in its own process so that every HTTP worker shares one set of
LibreOffice instances, one fair queue and one supervisor. If that process dies,
HTTP keeps answering (/readyz says 503 with the reason) while this watcher
starts a new one on the same socket.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from converter.engine.instance import die_with_parent

logger = logging.getLogger("converter.engine")

# Restart delays grow after quick successive deaths, and reset once one ran this long.
MAX_BACKOFF = 10.0
STABLE_SECONDS = 60.0


def socket_path_for(data_path: Path) -> Path:
    """Where the engine's socket goes: in the data directory, or a short path if too long."""
    path = (data_path / "engine" / "engine.sock").resolve()
    # sun_path holds 107 bytes; deep data directories (tests, some volumes) exceed it.
    if len(str(path)) <= 100:
        return path
    import hashlib

    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path("/tmp") / f"converter-{digest}" / "engine.sock"


class EngineProcess:
    """Runs `converter engine --socket PATH` and brings it back whenever it exits."""

    def __init__(self, socket_path: Path, env: dict[str, str] | None = None) -> None:
        self.socket_path = socket_path
        self.env = dict(os.environ if env is None else env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """CONVERTER_ENGINE_URL for the HTTP workers."""
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        """The current engine process's pid, if one runs."""
        with self._lock:
            return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Start the engine and the thread that watches it."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._thread = threading.Thread(target=self._watch, name="engine-watcher",
                                        daemon=True)
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "converter", "engine", "--socket", str(self.socket_path)]
        # Spawned from the watcher thread, which lives as long as this process: the
        # death signal fires if `converter serve` is killed -9, so no engine outlives it.
        return subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)

    def _watch(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            started = time.monotonic()
            proc = self._spawn()
            with self._lock:
                self.proc = proc
                self.starts += 1
            code = proc.wait()
            _forget_gauges(proc.pid)
            if self._stopping.is_set():
                return
            backoff = 0.5 if time.monotonic() - started > STABLE_SECONDS else min(
                MAX_BACKOFF, backoff * 2)
            logger.error("engine process %d exited with %s; restarting it in %.1fs",
                         proc.pid, code, backoff, extra={"reason": "engine_exit"})
            self._stopping.wait(backoff)

    def stop(self, grace: float = 30.0) -> None:
        """Ask the engine to finish (SIGTERM), then kill it after grace seconds."""
        self._stopping.set()
        with self._lock:
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            logger.warning("engine process did not stop in %.0fs; killing it", grace)
            proc.kill()
            proc.wait(10)


def _forget_gauges(pid: int) -> None:
    # The dead engine's live gauges (busy, waiting, instances) must not add to the new one's.
    from converter import metrics

    metrics.mark_process_dead(pid)
