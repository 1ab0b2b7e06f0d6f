"""`converter serve`: a small supervisor of two children, the engine and the HTTP server.

- the engine process (`converter engine --socket DATA/engine/engine.sock`): one
  LibreOffice pool, fair queue and instance supervisor for the whole host, not
  started when CONVERTER_ENGINE_URL names an engine elsewhere;
- the HTTP server (`python -m converter.server`): gunicorn with
  CONVERTER_HTTP_WORKERS worker processes, each a client of that engine.

Both are restarted (with backoff) when they die after the service was ready; a
child that dies before then stops the service with a message and a non-zero
exit. gunicorn is not the parent of the engine on purpose: its arbiter reaps any
child, and threads in its master before it forks workers deadlock them.

SIGTERM (or SIGINT) stops HTTP first: gunicorn stops accepting connections, lets
requests in flight finish for CONVERTER_SHUTDOWN_GRACE seconds, and its workers
hand back the runs they did not finish. Then the engine stops, and any
LibreOffice of this data directory still running is killed.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from converter import metrics_files
from converter.children import WatchedProcess
from converter.config import Config

logger = logging.getLogger("converter")

# A child that dies this many times before the service was first ready is not coming up.
START_ATTEMPTS = 2
# Seconds the engine gets to stop its pool after HTTP stopped.
ENGINE_STOP_SECONDS = 20.0
# Beyond the grace: what gunicorn needs to hand runs back and exit (see server.py).
HTTP_STOP_MARGIN = 10.0


def forget_dead_processes(metrics_dir: Path) -> None:
    """Drop the live gauges of every process that wrote to metrics_dir and is gone."""
    from converter import metrics

    for path in metrics_dir.glob("gauge_live*_*.db"):
        pid = path.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            metrics.mark_process_dead(int(pid))


def leftover_libreoffice(data_path: Path) -> list[int]:
    """PIDs of LibreOffice processes or bridges started for this data directory."""
    marker = f"{data_path}/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if marker in cmdline and ("soffice" in cmdline or "converter.engine.bridge" in cmdline):
            found.append(int(entry.name))
    return found


class Supervisor:
    """Starts the engine and HTTP children, watches them, and stops them in order."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.metrics_dir = metrics_files.prepare()
        self._stop = threading.Event()
        self._signal = ""
        self.engine: WatchedProcess | None = None
        env = dict(os.environ)
        # Overrides from the command line (--host, --port) reach the HTTP child too.
        env.update({"CONVERTER_HOST": config.host, "CONVERTER_PORT": str(config.port),
                    "CONVERTER_DATA_DIR": str(config.data_path)})
        if not config.engine_url:
            from converter.engine.process import EngineProcess, socket_path_for

            self.engine = EngineProcess(socket_path_for(config.data_path), env)
            env["CONVERTER_ENGINE_URL"] = self.engine.url
        self.http = WatchedProcess("HTTP server", [sys.executable, "-m", "converter.server"],
                                   env, on_exit=self._http_exited)

    def _http_exited(self, _pid: int) -> None:
        # A dead master takes its workers along; their live gauges must go too.
        forget_dead_processes(self.metrics_dir)

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; 0 after a clean stop, 1 if a child cannot start."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        if self.engine is not None:
            self.engine.start()
        self.http.start()
        failed = self._wait_ready()
        if failed is None:
            self._stop.wait()
        code = self._shutdown()
        metrics_files.remove(self.metrics_dir)
        if failed is not None:
            print(f"converter: {failed}", file=sys.stderr, flush=True)
            return 1
        return 0 if code in (0, None) else 1

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Only an event here: logging from a signal handler can deadlock on its lock.
        self._signal = signal.Signals(signum).name
        self._stop.set()

    def _wait_ready(self) -> str | None:
        """Wait until /readyz answers 200 and log it; a reason if a child cannot start."""
        while not self._stop.is_set():
            for child, fix in ((self.engine, "see the engine's log lines above"),
                               (self.http, f"is CONVERTER_PORT={self.config.port} free, "
                                           f"and CONVERTER_HOST={self.config.host} an "
                                           "address of this host?")):
                if child is not None and child.exits >= START_ATTEMPTS:
                    return (f"the {child.name} could not start (exit status "
                            f"{child.last_code}, {child.exits} attempts): {fix}")
            if self._ready():
                instances = "remote" if self.engine is None else str(self.config.workers)
                logger.info("ready: http://%s:%d (engine: %s instances, %d HTTP workers)",
                            self.config.host, self.config.port, instances,
                            self.config.http_workers)
                return None
            self._stop.wait(0.5)
        return None

    def _ready(self) -> bool:
        host = self.config.host
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        conn = http.client.HTTPConnection(host, self.config.port, timeout=5)
        try:
            conn.request("GET", "/readyz")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _shutdown(self) -> int | None:
        """HTTP first (it drains), then the engine, then any straggling LibreOffice."""
        started = time.monotonic()
        if self._signal:
            logger.info("%s received: stopping (up to %gs for work in flight, "
                        "CONVERTER_SHUTDOWN_GRACE)", self._signal, self.config.shutdown_grace)
        code = self.http.stop(self.config.shutdown_grace + HTTP_STOP_MARGIN)
        if self.engine is not None:
            self.engine.stop(ENGINE_STOP_SECONDS)
        stragglers = leftover_libreoffice(self.config.data_path)
        for pid in stragglers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if stragglers:
            logger.warning("killed %d LibreOffice processes left behind: %s", len(stragglers),
                           stragglers)
        logger.info("stopped in %.1fs", time.monotonic() - started)
        return code
