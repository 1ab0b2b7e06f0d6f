"""The engine process's server: one EnginePool shared by every HTTP worker of a host.

It speaks XML-RPC over a Unix domain socket (file permissions decide who may
convert) or over TCP for an engine that runs on its own. Two vocabularies:

- ``submit`` and ``status``: what converter's own HTTP workers call. A submit
  carries the whole job (filters, options, tenant, cost), the document's bytes
  and a deadline, and returns the output files' bytes, so no file system needs
  to be shared with the caller.
- ``convert`` and ``info``: unoserver's API, so ``unoconvert`` or any other
  unoserver client can use a standalone engine, fair queue and supervision
  included. Missing filter names are detected, as unoserver itself does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socketserver
import threading
import time
import xmlrpc.client
from pathlib import Path
from typing import Any
from xmlrpc.server import SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

from converter import metrics
from converter.engine.pool import EngineJob, EnginePool
from converter.engine.wire import FAULT_INTERNAL, error_to_fault, job_from_wire
from converter.errors import ConverterError, InvalidRequest

logger = logging.getLogger("converter.engine")


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/", "/RPC2")
    # Large documents in one request: HTTP/1.1 keeps big bodies off the read-until-close path.
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:
        """Unix sockets have no peer address; the stdlib would index an empty string."""
        return "engine-client"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Requests are not logged: a job may carry a password."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        """/healthz (status as JSON, 200 when ready) and /metrics, for a standalone engine."""
        server: Any = self.server
        if self.path == "/metrics":
            body, content_type = metrics.exposition()
            status = 200
        elif self.path in ("/healthz", "/readyz"):
            stats = server.engine_server.status()
            body, content_type = json.dumps(stats).encode(), "application/json"
            status = 200 if stats["ready"] else 503
        else:
            body, content_type, status = b"not found\n", "text/plain", 404
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _UnixHandler(_Handler):
    # TCP_NODELAY is a TCP option; setting it on a Unix socket fails.
    disable_nagle_algorithm = False


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer,
                  SimpleXMLRPCDispatcher):
    daemon_threads = True
    logRequests = False
    _send_traceback_header = False

    def __init__(self, path: str) -> None:
        # Only the owner may connect: the socket is the engine's whole authentication.
        old = os.umask(0o177)
        try:
            socketserver.UnixStreamServer.__init__(self, path, _UnixHandler)
        finally:
            os.umask(old)
        SimpleXMLRPCDispatcher.__init__(self, allow_none=True, use_builtin_types=True)


class _TcpServer(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True


class EngineServer:
    """Serves one pool over a Unix socket or TCP address until stopped."""

    def __init__(self, pool: EnginePool, *, socket_path: Path | None = None,
                 listen: tuple[str, int] | None = None) -> None:
        self.pool = pool
        self.socket_path = socket_path
        self.server: _UnixServer | _TcpServer
        if socket_path is not None:
            socket_path.parent.mkdir(parents=True, exist_ok=True)
            # A socket file left by a killed engine would make bind fail.
            socket_path.unlink(missing_ok=True)
            self.server = _UnixServer(str(socket_path))
        elif listen is not None:
            self.server = _TcpServer(listen, requestHandler=_Handler, logRequests=False,
                                     allow_none=True, use_builtin_types=True)
        else:
            raise ValueError("EngineServer needs socket_path or listen")
        setattr(self.server, "engine_server", self)  # noqa: B010 - read by _Handler.do_GET
        # HTTP workers on this host write their sources under CONVERTER_DATA_DIR/tmp; over the
        # Unix socket they hand over paths there instead of the bytes (see submit_path).
        self.shared_root = (pool.config.data_path / "tmp").resolve()
        for name in ("submit", "submit_path", "status", "convert", "info", "ping"):
            self.server.register_function(self._guarded(getattr(self, name)), name)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """The URL HTTP workers (CONVERTER_ENGINE_URL) use to reach this server."""
        if self.socket_path is not None:
            return f"unix://{self.socket_path}"
        address: Any = self.server.server_address
        return f"http://{address[0]}:{address[1]}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(target=self.server.serve_forever, name="engine-rpc",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting requests and remove the socket file."""
        self.server.shutdown()
        self.server.server_close()
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)

    @staticmethod
    def _guarded(method: Any) -> Any:
        def call(*args: Any) -> Any:
            try:
                return method(*args)
            except ConverterError as exc:
                raise error_to_fault(exc) from None
            except xmlrpc.client.Fault:
                raise
            except Exception as exc:
                logger.exception("engine request failed")
                raise xmlrpc.client.Fault(FAULT_INTERNAL, f"{type(exc).__name__}: {exc}") from None
        call.__name__ = method.__name__
        return call

    # ------------------------------------------------------------ converter's workers
    def status(self) -> dict[str, Any]:
        """The pool's counters and readiness (what /readyz and /metrics report)."""
        stats = self.pool.stats()
        stats["pid"] = os.getpid()
        if self.socket_path is not None:
            stats["shared_root"] = str(self.shared_root)
        return stats

    def ping(self) -> dict[str, Any]:
        """Cheap liveness check."""
        return {"pid": os.getpid(), "ready": self.pool.ready()}

    def submit(self, wire_job: dict[str, Any], data: bytes, source_name: str,
               target_name: str, timeout: float) -> list[list[Any]]:
        """Convert data (named source_name) to target_name; returns [[name, bytes], ...]."""
        deadline = time.monotonic() + float(timeout)
        job = job_from_wire(wire_job)
        return self._convert_bytes(job, data, source_name, target_name, deadline)

    def submit_path(self, wire_job: dict[str, Any], source_path: str, target_path: str,
                    timeout: float) -> list[str]:
        """Convert the file at source_path into target_path's folder; returns output names.

        Only over the Unix socket, and only inside the shared folder: a worker on the same
        host passes a path instead of the document's bytes, so neither process holds a
        large document in memory. Outputs are moved (a rename on one file system).
        """
        if self.socket_path is None:
            raise InvalidRequest("submit_path is only offered over the engine's Unix socket")
        source = self._shared(source_path)
        target = self._shared(target_path)
        deadline = time.monotonic() + float(timeout)
        job = job_from_wire(wire_job)
        with self.pool.scratch() as scratch:
            local_source = scratch / _plain_name(source.name, "source")
            local_target = scratch / _plain_name(target.name, "output")
            try:
                os.link(source, local_source)
            except OSError:  # another file system: copy, still without reading into memory
                shutil.copyfile(source, local_source)
            self.pool.convert(local_source, local_target, job, deadline)
            outputs = [local_target] if local_target.exists() else sorted(
                scratch.glob(f"{local_target.stem}-*{local_target.suffix}"))
            names = []
            for path in outputs:
                shutil.move(str(path), str(target.parent / path.name))
                names.append(path.name)
            return names

    def _shared(self, raw: str) -> Path:
        """raw resolved, refused unless it lies in the shared folder."""
        path = Path(raw).resolve()
        if not path.is_relative_to(self.shared_root):
            raise InvalidRequest(f"{raw!r} is outside the engine's shared folder "
                                 f"{self.shared_root}")
        return path

    def _convert_bytes(self, job: EngineJob, data: bytes, source_name: str,
                       target_name: str, deadline: float) -> list[list[Any]]:
        with self.pool.scratch() as scratch:
            source = scratch / _plain_name(source_name, "source")
            target = scratch / _plain_name(target_name, "output")
            source.write_bytes(data)
            self.pool.convert(source, target, job, deadline)
            outputs = [target] if target.exists() else sorted(
                scratch.glob(f"{target.stem}-*{target.suffix}"))
            return [[path.name, path.read_bytes()] for path in outputs]

    # ------------------------------------------------------------ unoserver's API
    def info(self) -> dict[str, Any]:
        """unoserver's info(): the filters and versions of a live instance's LibreOffice."""
        for inst in self.pool.instances:
            if inst.client is not None and inst.alive():
                result: dict[str, Any] = inst.client._call(10.0, "info")
                return result
        raise xmlrpc.client.Fault(FAULT_INTERNAL, "no engine instance is up yet")

    def convert(self, inpath: str | None = None, indata: bytes | None = None,
                outpath: str | None = None, convert_to: str | None = None,
                filtername: str | None = None, filter_options: list[str] | None = None,
                update_index: bool = True, infiltername: str | None = None,
                *_more: Any) -> bytes | None:
        """unoserver's convert(): bytes or a path in, bytes back or written to outpath."""
        if indata is None:
            if not inpath:
                raise InvalidRequest("convert needs inpath or indata")
            indata = Path(inpath).read_bytes()
        if not convert_to and outpath:
            convert_to = Path(outpath).suffix.lstrip(".")
        if not convert_to:
            raise InvalidRequest("convert needs convert_to or an outpath with an extension")
        source_suffix = Path(inpath).suffix if inpath else ""
        # Empty filter names are what the bridge detects from the document and extension.
        job = EngineJob(import_filter=infiltername or "", export_filter=filtername or "",
                        filter_options=list(filter_options or []),
                        extras={"update_indexes": bool(update_index)},
                        source=source_suffix.lstrip("."), target=convert_to)
        deadline = time.monotonic() + self.pool.config.conversion_timeout
        outputs = self._convert_bytes(job, indata, f"source{source_suffix}",
                                      f"output.{convert_to}", deadline)
        result: bytes = outputs[0][1]
        if outpath:
            Path(outpath).write_bytes(result)
            return None
        return result


def _plain_name(name: str, fallback: str) -> str:
    """A caller's file name reduced to one path component inside scratch."""
    base = Path(name).name
    return base if base not in ("", ".", "..") else fallback
