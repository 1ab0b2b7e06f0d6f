"""An HTTP worker's handle on the engine process: the ConversionEngine the services call.

Standard library only, like the bridge client: the web process never imports
``uno``. Each call opens its own connection (a Unix socket connect costs
microseconds), so a worker never shares a half-read response between threads.
An engine that is restarting answers nothing for a few seconds; a conversion
caught by that is sent once more when the engine is back, within its deadline.
"""

from __future__ import annotations

import http.client
import logging
import socket
import threading
import time
import xmlrpc.client
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from converter.engine.pool import EngineJob
from converter.engine.scratch import scratch_dir
from converter.engine.wire import fault_to_error, job_to_wire
from converter.errors import ConversionTimeout, ConverterError, UpstreamError

logger = logging.getLogger("converter.engine")

# Extra seconds a submit may take beyond the job's own deadline: the engine enforces
# the deadline itself and answers with a timeout error, which is the better message.
DEADLINE_GRACE = 10.0
# How long a cached status answer serves /readyz and the ready wait.
STATUS_TTL = 0.25


class EngineUnreachable(Exception):
    """The engine process refused, reset or dropped the connection."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("engine", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        """Connect to the Unix socket instead of a TCP address."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _Transport(xmlrpc.client.Transport):
    def __init__(self, socket_path: str | None, timeout: float) -> None:
        super().__init__(use_builtin_types=True)
        self.socket_path = socket_path
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        """A fresh connection per call, to the socket or the TCP address."""
        if self.socket_path is not None:
            return _UnixConnection(self.socket_path, self.timeout)
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


class RemoteEngine:
    """Sends conversions to a `converter engine` process at CONVERTER_ENGINE_URL."""

    def __init__(self, url: str, scratch_root: Path) -> None:
        self.url = url
        if url.startswith("unix://"):
            self.socket_path: str | None = url.removeprefix("unix://")
            self.rpc_url = "http://engine/RPC2"
        else:
            self.socket_path = None
            self.rpc_url = f"{url}/RPC2"
        self.scratch_root = scratch_root
        self._status: dict[str, Any] | None = None
        self._status_at = 0.0
        self._status_lock = threading.Lock()

    # ------------------------------------------------------------ calls
    def _call(self, timeout: float, method: str, *args: Any) -> Any:
        proxy = xmlrpc.client.ServerProxy(self.rpc_url, transport=_Transport(
            self.socket_path, timeout), allow_none=True, use_builtin_types=True)
        try:
            return getattr(proxy, method)(*args)
        except xmlrpc.client.Fault as fault:
            raise fault_to_error(fault) from None
        except TimeoutError:
            raise
        except (ConnectionError, FileNotFoundError, http.client.HTTPException, OSError) as exc:
            raise EngineUnreachable(f"{method}: {exc}") from exc
        finally:
            proxy("close")()

    # ------------------------------------------------------------ ConversionEngine
    def scratch(self) -> AbstractContextManager[Path]:
        """A private directory of this worker's for one conversion, removed afterwards."""
        return scratch_dir(self.scratch_root)

    def convert(self, source: Path, target: Path, job: EngineJob, deadline: float) -> None:
        """Have the engine process convert source into target (and its siblings)."""
        wire = job_to_wire(job)
        # Same host and data directory: hand over paths, never the document's bytes.
        by_path = self._shares(source)
        data = b"" if by_path else source.read_bytes()
        for attempt in (1, 2):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConversionTimeout("Conversion deadline passed while the engine restarted")
            try:
                if by_path:
                    self._call(remaining + DEADLINE_GRACE, "submit_path", wire, str(source),
                               str(target), remaining)
                    return
                outputs = self._call(remaining + DEADLINE_GRACE, "submit", wire, data,
                                     source.name, target.name, remaining)
                break
            except TimeoutError:
                raise ConversionTimeout("The engine process did not answer within "
                                        "CONVERTER_CONVERSION_TIMEOUT") from None
            except EngineUnreachable as exc:
                if attempt == 2 or not self._back_before(deadline):
                    raise UpstreamError(
                        f"The engine process is unreachable ({exc}); retry shortly. "
                        f"Operators: check the engine at CONVERTER_ENGINE_URL ({self.url})",
                        retryable=True) from None
                logger.warning("engine process lost during a conversion; sending it again")
        for name, content in outputs:
            # Names come from the engine; only their last component is trusted here.
            (target.parent / Path(str(name)).name).write_bytes(content)

    def _shares(self, source: Path) -> bool:
        """Whether the engine reads this host's files: a Unix socket engine whose shared
        folder holds source (it says which in its status)."""
        if self.socket_path is None:
            return False
        shared = self.stats().get("shared_root")
        return bool(shared) and source.resolve().is_relative_to(Path(str(shared)))

    def _back_before(self, deadline: float) -> bool:
        """Wait until the engine answers and is ready again, or the deadline passes."""
        while time.monotonic() < deadline:
            if self.stats(fresh=True).get("ready"):
                return True
            time.sleep(0.2)
        return False

    # ------------------------------------------------------------ observation
    def stats(self, fresh: bool = False) -> dict[str, Any]:
        """The engine's counters, or a not-ready answer saying why it cannot be reached."""
        with self._status_lock:
            now = time.monotonic()
            if not fresh and self._status is not None and now - self._status_at < STATUS_TTL:
                return self._status
            try:
                status: dict[str, Any] = self._call(2.0, "status")
            except (EngineUnreachable, TimeoutError, ConverterError) as exc:
                status = {"ready": False, "size": 0, "instances": [],
                          "error": f"engine process unreachable at {self.url} ({exc}); "
                                   "check CONVERTER_ENGINE_URL"}
            self._status, self._status_at = status, now
            return status

    @property
    def instances(self) -> list[Any]:
        """The engine's instances as last reported (only their count is used)."""
        return list(self.stats().get("instances", []))

    def ready(self) -> bool:
        """True when the engine answers and every instance is up."""
        return bool(self.stats().get("ready"))

    def wait_ready(self, timeout: float) -> None:
        """Block until the engine is ready, or raise UpstreamError after timeout seconds."""
        deadline = time.monotonic() + timeout
        while not self.stats(fresh=True).get("ready"):
            if time.monotonic() > deadline:
                raise UpstreamError(f"engine at {self.url} not ready in {timeout:g}s")
            time.sleep(0.1)

    def stop(self) -> None:
        """Nothing to stop: the engine process belongs to whoever started it."""
