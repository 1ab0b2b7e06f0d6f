"""Web-side client of one engine bridge, over unoserver's XML-RPC API.

Standard library only: the web process never imports ``uno``. Unlike
unoserver's own client it never calls ``info()`` before converting and never
retries a connection for tens of seconds: each call has a hard socket timeout,
and the pool decides what a failure means.
"""

from __future__ import annotations

import http.client
import xmlrpc.client
from typing import Any

# Mirrors converter.engine.bridge (which cannot be imported here: it imports uno).
FAULT_LOAD_FAILED = 1
FAULT_EXPORT_FAILED = 2
FAULT_BAD_REQUEST = 3
FAULT_ENGINE_GONE = 10


class EngineCallTimeout(Exception):
    """The bridge did not answer within the call's timeout."""


class EngineGone(Exception):
    """The bridge or its LibreOffice is not there any more (refused, reset, crashed)."""


class _TimeoutTransport(xmlrpc.client.Transport):
    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


class BridgeClient:
    """Calls one bridge at 127.0.0.1:<port>."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/RPC2"

    def _call(self, timeout: float, method: str, *args: Any) -> Any:
        proxy = xmlrpc.client.ServerProxy(self.url, transport=_TimeoutTransport(timeout),
                                          allow_none=True)
        try:
            return getattr(proxy, method)(*args)
        except TimeoutError as exc:
            raise EngineCallTimeout(f"{method} took longer than {timeout:.1f}s") from exc
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise EngineGone(f"{method}: {exc}") from exc
        except xmlrpc.client.Fault as fault:
            if fault.faultCode == FAULT_ENGINE_GONE:
                raise EngineGone(fault.faultString) from fault
            raise
        finally:
            proxy("close")()

    def ping(self, timeout: float = 2.0) -> dict[str, Any]:
        """Liveness of the bridge; raises EngineGone or EngineCallTimeout."""
        result: dict[str, Any] = self._call(timeout, "ping")
        return result

    def warmup(self, timeout: float) -> dict[str, str]:
        """Make the bridge convert its warm-up samples; returns format -> import filter."""
        warmed: dict[str, str] = self._call(timeout, "warmup")
        return warmed

    def convert(self, inpath: str, outpath: str, *, export_filter: str,
                filter_options: list[str], import_filter: str | None,
                timeout: float, password: str | None = None,
                extras: dict[str, Any] | None = None) -> None:
        """Convert a scratch file to another scratch file; raises Fault on document errors."""
        extension = outpath.rsplit(".", 1)[-1]
        self._call(timeout, "convert", inpath, None, outpath, extension, export_filter,
                   filter_options, True, import_filter, password, extras or {})
