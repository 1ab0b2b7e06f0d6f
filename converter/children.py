"""A child process that is started, watched and restarted (with backoff) until stopped.

`converter serve` keeps two of these: the engine process and the HTTP server.
Each is spawned from its watcher thread, which lives as long as the child: with
PR_SET_PDEATHSIG the kernel kills the child if `converter serve` is killed -9,
so nothing outlives it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

from converter.engine.instance import die_with_parent

logger = logging.getLogger("converter")

# Restart delays grow after quick successive deaths, and reset once one ran this long.
MAX_BACKOFF = 10.0
STABLE_SECONDS = 60.0


class WatchedProcess:
    """Runs a command and brings it back whenever it exits, until stop().

    on_exit(pid) is called after each exit that stop() did not ask for.
    """

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None,
                 on_exit: Callable[[int], None] | None = None) -> None:
        self.name = name
        self.command = command
        self.env = dict(os.environ if env is None else env)
        self.on_exit = on_exit
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exits = 0
        self.last_code: int | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._started = threading.Event()

    @property
    def pid(self) -> int | None:
        """The current child's pid, if one runs."""
        with self._lock:
            return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self) -> None:
        """Start the child and the thread that watches it; returns once it was spawned."""
        self._thread = threading.Thread(target=self._watch, name=f"{self.name}-watcher",
                                        daemon=True)
        self._thread.start()
        self._started.wait(30)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command, env=self.env, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)

    def _watch(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                proc = self._spawn()
            except OSError as exc:
                logger.error("%s could not be started: %s", self.name, exc)
                with self._lock:
                    self.exits += 1
                    self.last_code = -1
                self._started.set()
                self._stopping.wait(MAX_BACKOFF)
                continue
            with self._lock:
                self.proc = proc
                self.starts += 1
            self._started.set()
            code = proc.wait()
            with self._lock:
                self.exits += 1
                self.last_code = code
            # A child stopped on purpose needs no cleanup: its service is going away,
            # metrics directory and all.
            if self._stopping.is_set():
                return
            if self.on_exit is not None:
                self.on_exit(proc.pid)
            backoff = 0.5 if time.monotonic() - started > STABLE_SECONDS else min(
                MAX_BACKOFF, backoff * 2)
            logger.error("%s (pid %d) exited with %s; restarting it in %.1fs", self.name,
                         proc.pid, code, backoff, extra={"reason": f"{self.name}_exit"})
            self._stopping.wait(backoff)

    def stop(self, grace: float = 30.0) -> int | None:
        """Ask the child to finish (SIGTERM), kill it after grace seconds; its exit code."""
        self._stopping.set()
        with self._lock:
            proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0fs; killing it", self.name, grace)
                proc.kill()
                proc.wait(10)
        if self._thread is not None:
            self._thread.join(5)
        return proc.returncode
