"""The engine bridge: an XML-RPC server in front of one LibreOffice process.

This is the only module of the project that imports ``uno``; it runs under a
Python that has LibreOffice's bindings (Debian's python3-uno), started by the
supervisor as ``python -m converter.engine.bridge``. It speaks unoserver's RPC
API (``info`` and ``convert`` with unoserver's parameters) so unoserver's own
client can drive it, and it builds on unoserver's public ``UnoConverter`` for the
connection to LibreOffice. Like unoserver, it picks the export filter from the
target extension and the document's type when a client names none, and lets
LibreOffice detect the import filter. What it adds is the load it performs: hidden,
read-only, no link updates, no macros, the import filter named (when given) instead
of detected, paths confined to the service's scratch directory; and a warm-up that
converts a tiny real document of each format before the instance is ready.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
import xmlrpc.client
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import uno
from com.sun.star.beans import PropertyValue
from unoserver.converter import UnoConverter, get_doc_type

from converter.engine.docsteps import (
    adopt_suffixed_output,
    defuse_rtf,
    turn_landscape,
    update_indexes,
)
from converter.engine.warmup import SAMPLES, Sample, fill

logger = logging.getLogger("converter.engine.bridge")

API_VERSION = "3"  # unoserver's RPC API version this bridge is compatible with

# Fault codes the web side maps to errors (see converter.engine.client).
FAULT_LOAD_FAILED = 1
FAULT_EXPORT_FAILED = 2
FAULT_BAD_REQUEST = 3
FAULT_ENGINE_GONE = 10

# com.sun.star.document.MacroExecMode.NEVER_EXECUTE and UpdateDocMode.NO_UPDATE
NEVER_EXECUTE = 0
NO_UPDATE = 0


def _prop(name: str, value: Any) -> Any:
    return PropertyValue(Name=name, Value=value)


def _typed(value: str) -> Any:
    if value == "true":
        return True
    if value == "false":
        return False
    if value.isdecimal():
        return int(value)
    return value


def _export_props(filtername: str, filter_options: list[str]) -> tuple[Any, ...]:
    """Split unoserver-style options into FilterData ("Name=Value") and FilterOptions."""
    data = []
    plain = []
    for option in filter_options:
        name, sep, value = option.partition("=")
        if sep and name.isidentifier():
            data.append(_prop(name, _typed(value)))
        else:
            plain.append(option)
    props = [_prop("FilterName", filtername), _prop("Overwrite", True)]
    if data:
        props.append(_prop("FilterData", uno.Any("[]com.sun.star.beans.PropertyValue",
                                                 tuple(data))))
    if plain:
        props.append(_prop("FilterOptions", ",".join(plain) if len(plain) > 1 else plain[0]))
    return tuple(props)


def _prop_dict(props: Any) -> dict[str, Any]:
    return {p.Name: p.Value for p in props}


def _is_disposed(exc: BaseException) -> bool:
    name = type(exc).__name__
    text = str(exc)
    return name in ("DisposedException",) or "disposed" in text.lower() or (
        "connection" in text.lower() and "closed" in text.lower())


class Bridge:
    """Converts documents on one LibreOffice, one at a time."""

    def __init__(self, uno_port: int, scratch_root: Path, warm_dir: Path,
                 connect_timeout: float) -> None:
        self.scratch_root = scratch_root.resolve()
        self.warm_dir = warm_dir
        self.warmed: dict[str, str] = {}
        self.warmup_seconds = 0.0
        self.lock = threading.Lock()
        self.converter = self._connect(uno_port, connect_timeout)
        self.conversions = 0
        self._import_names: dict[str, str] | None = None

    @staticmethod
    def _connect(uno_port: int, timeout: float) -> UnoConverter:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return UnoConverter(interface="127.0.0.1", port=str(uno_port))
            except Exception as exc:  # uno raises its own NoConnectException
                if time.monotonic() > deadline:
                    raise RuntimeError(f"LibreOffice did not accept on {uno_port}: {exc}") from exc
                time.sleep(0.05)

    def _confined(self, path: str) -> str:
        resolved = Path(path).resolve()
        if self.scratch_root not in resolved.parents:
            raise xmlrpc.client.Fault(FAULT_BAD_REQUEST,
                                      f"path {path} is outside the scratch directory")
        return str(resolved)

    def _load(self, url: str, infiltername: str | None, password: str | None) -> Any:
        defused = defuse_rtf(Path(uno.fileUrlToSystemPath(url)))
        try:
            return self._load_hardened(
                uno.systemPathToFileUrl(str(defused)) if defused else url, infiltername, password)
        finally:
            if defused is not None:
                defused.unlink(missing_ok=True)
                defused.parent.rmdir()

    def _load_hardened(self, url: str, infiltername: str | None, password: str | None) -> Any:
        props = [
            _prop("Hidden", True),
            _prop("ReadOnly", True),
            _prop("UpdateDocMode", NO_UPDATE),
            _prop("MacroExecutionMode", NEVER_EXECUTE),
            _prop("Silent", True),
        ]
        if password:
            props.append(_prop("Password", password))
        attempts = [self._import_filter(infiltername), None] if infiltername else [None]
        last: Exception | None = None
        for flt in attempts:
            try:
                document = self.converter.desktop.loadComponentFromURL(
                    url, "_blank", 0, tuple(props + ([_prop("FilterName", flt)] if flt else [])))
            except Exception as exc:
                if _is_disposed(exc):
                    raise
                last = exc
                continue
            if document is not None:
                return document
        # Older variants of a format (Word 95, PowerPoint 95) need LibreOffice's own
        # detection, hence the second attempt without a filter before giving up.
        logger.warning("loading %s failed: %r", url, last)
        raise xmlrpc.client.Fault(
            FAULT_LOAD_FAILED, f"document could not be loaded: {last or 'no component'}")

    def convert(self, inpath: str | None = None, indata: Any = None, outpath: str | None = None,
                convert_to: str | None = None, filtername: str | None = None,
                filter_options: list[str] | None = None, update_index: bool = True,
                infiltername: str | None = None, password: str | None = None,
                extras: dict[str, Any] | None = None) -> Any:
        """unoserver-compatible convert: paths in the scratch directory, or bytes.

        ``extras`` is this service's addition after unoserver's parameters (its clients
        never send it): ``landscape`` turns the pages, ``update_indexes`` regenerates
        every index instead of the tables of contents alone.
        """
        if not convert_to and outpath:
            convert_to = Path(outpath).suffix.lstrip(".")  # as unoserver derives it
        if not filtername and not convert_to:
            raise xmlrpc.client.Fault(
                FAULT_BAD_REQUEST, "filtername, convert_to or an outpath with an extension "
                "is required")
        with self.lock:
            tmp_in = tmp_out = None
            try:
                if inpath is None:
                    if indata is None:
                        raise xmlrpc.client.Fault(FAULT_BAD_REQUEST, "inpath or indata required")
                    tmp_in = self.scratch_root / f"bridge-{os.getpid()}-in"
                    tmp_in.write_bytes(indata.data if hasattr(indata, "data") else indata)
                    inpath = str(tmp_in)
                if outpath is None:
                    tmp_out = self.scratch_root / f"bridge-{os.getpid()}-out.{convert_to or 'bin'}"
                    outpath = str(tmp_out)
                source = self._confined(inpath)
                target = self._confined(outpath)
                self._convert(source, target, filtername or None, convert_to,
                              filter_options or [], update_index, infiltername, password,
                              extras or {})
                self.conversions += 1
                if tmp_out is not None:
                    return xmlrpc.client.Binary(tmp_out.read_bytes())
                return None
            except xmlrpc.client.Fault as fault:
                if fault.faultCode in (FAULT_LOAD_FAILED, FAULT_EXPORT_FAILED) and (
                        not self._connected()):
                    threading.Thread(target=_exit_soon, daemon=True).start()
                    raise xmlrpc.client.Fault(FAULT_ENGINE_GONE,
                                              f"engine lost: {fault.faultString}") from None
                raise
            except Exception as exc:
                # A dying LibreOffice surfaces as many exception types ("illegal object
                # given", IOException...); ask the connection itself before blaming the file.
                if _is_disposed(exc) or not self._connected():
                    logger.error("LibreOffice connection lost: %s", exc)
                    # The supervisor restarts us together with LibreOffice.
                    threading.Thread(target=_exit_soon, daemon=True).start()
                    raise xmlrpc.client.Fault(FAULT_ENGINE_GONE, f"engine lost: {exc}") from None
                logger.warning("conversion of %s failed: %r", inpath, exc)
                raise xmlrpc.client.Fault(FAULT_EXPORT_FAILED,
                                          f"conversion failed: {exc}") from None
            finally:
                for tmp in (tmp_in, tmp_out):
                    if tmp is not None:
                        tmp.unlink(missing_ok=True)

    def _convert(self, source: str, target: str, filtername: str | None,
                 convert_to: str | None, filter_options: list[str], update_index: bool,
                 infiltername: str | None, password: str | None,
                 extras: dict[str, Any]) -> str:
        """Load, lay out and store one document; return the import filter LibreOffice used."""
        document = self._load(uno.systemPathToFileUrl(source), infiltername, password)
        try:
            used = str(_prop_dict(document.getArgs()).get("FilterName", ""))
            if not filtername:
                filtername = self._export_filter(document, convert_to or "")
            if extras.get("landscape"):
                turn_landscape(document)
            if update_index:
                update_indexes(document, everything=bool(extras.get("update_indexes")))
            document.storeToURL(uno.systemPathToFileUrl(target),
                                _export_props(filtername, filter_options))
            adopt_suffixed_output(Path(target))
            return used
        finally:
            try:
                document.close(True)
            except Exception:  # a document that fails to close must not mask the result
                logger.warning("closing the document failed", exc_info=True)

    def _export_filter(self, document: Any, convert_to: str) -> str:
        """The export filter unoserver would pick: the document's type and the extension's."""
        export_type = self.converter.type_service.queryTypeByURL(
            f"file:///converter-export.{convert_to}")
        if not export_type:
            raise xmlrpc.client.Fault(FAULT_BAD_REQUEST,
                                      f"unknown export file type {convert_to!r}")
        doc_type = get_doc_type(document)
        name: str | None = self.converter.find_filter(doc_type, export_type)
        if name is None:
            raise xmlrpc.client.Fault(
                FAULT_BAD_REQUEST, f"no export filter from {doc_type} to {convert_to!r}")
        return name

    def _import_filter(self, name: str) -> str:
        """unoserver accepts a filter's aliases (its UserData names) besides its name."""
        if self._import_names is None:
            conv = self.converter
            self._import_names = conv.get_filter_names(conv.get_available_import_filters())
        return self._import_names.get(name, name)

    def _connected(self) -> bool:
        try:
            self.converter.desktop.getFrames()
            return True
        except Exception:  # any failure of a trivial call means the bridge is gone
            return False

    def warmup(self) -> dict[str, str]:
        """Convert a tiny real document of each format as requests do (see warmup.py).

        Returns (and ping reports) each sample's format and the import filter LibreOffice
        says it loaded it with.
        """
        started = time.monotonic()
        warmed: dict[str, str] = {}
        with self.lock:
            self.warm_dir.mkdir(parents=True, exist_ok=True)
            current = {sample.filename for sample in SAMPLES}
            for stale in self.warm_dir.glob("sample-v*"):  # from another version of the recipe
                if stale.name not in current:
                    stale.unlink(missing_ok=True)
            for sample in SAMPLES:
                warmed[sample.extension] = self._warm(sample)
        self.warmed = warmed
        self.warmup_seconds = round(time.monotonic() - started, 3)
        logger.info("warmed up in %.2fs: %s", self.warmup_seconds,
                    ", ".join(f"{ext} ({flt})" for ext, flt in warmed.items()))
        return warmed

    def _warm(self, sample: Sample) -> str:
        path = self.warm_dir / sample.filename
        if path.exists():
            try:
                used = self._warm_exports(sample, path)
                if used == sample.filter:
                    return used
            except xmlrpc.client.Fault:
                pass
            # Left by an earlier run and no longer what it should be: write it again.
            logger.warning("warm-up sample %s unusable; writing it again", path.name)
        self._write_sample(sample, path)
        return self._warm_exports(sample, path)

    def _warm_exports(self, sample: Sample, path: Path) -> str:
        used = ""
        for export in sample.exports:
            out = self.warm_dir / f"out-{os.getpid()}.{export.extension}"
            try:
                used = self._convert(str(path), str(out), export.filter, export.extension,
                                     list(export.options), True, sample.filter, None, {})
            finally:
                out.unlink(missing_ok=True)
        return used

    def _write_sample(self, sample: Sample, path: Path) -> None:
        document = self.converter.desktop.loadComponentFromURL(
            sample.factory, "_blank", 0, (_prop("Hidden", True),))
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        try:
            fill(sample.family, document, uno.createUnoStruct)
            document.storeToURL(uno.systemPathToFileUrl(str(partial)),
                                (_prop("FilterName", sample.filter), _prop("Overwrite", True)))
        finally:
            document.close(True)
        partial.replace(path)  # whole or absent, even if the instance is killed meanwhile

    def info(self) -> dict[str, Any]:
        """unoserver-compatible info: versions and filter names."""
        conv = self.converter
        return {
            "unoserver": "converter-bridge",
            "api": API_VERSION,
            "import_filters": conv.get_filter_names(conv.get_available_import_filters()),
            "export_filters": conv.get_filter_names(conv.get_available_export_filters()),
            "libreoffice_version": conv.uno_info(),
        }

    def ping(self) -> dict[str, Any]:
        """Cheap liveness answer that does not wait for a running conversion."""
        return {"pid": os.getpid(), "conversions": self.conversions,
                "busy": self.lock.locked(), "warmed": self.warmed,
                "warmup_seconds": self.warmup_seconds}


def _exit_soon() -> None:
    time.sleep(0.2)
    os._exit(3)


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/", "/RPC2")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        """Silence per-request access logs; the service logs conversions itself."""


class _Server(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv: list[str] | None = None) -> int:
    """Run the bridge until killed."""
    parser = argparse.ArgumentParser("converter-engine-bridge")
    parser.add_argument("--uno-port", type=int, required=True)
    parser.add_argument("--rpc-port", type=int, required=True)
    parser.add_argument("--scratch-root", type=Path, required=True)
    parser.add_argument("--warmup-dir", type=Path, required=True,
                        help="where the warm-up samples are written once and kept")
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    args = parser.parse_args(argv)
    # "LEVEL message": the service re-logs each line at that level in its own format.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(message)s")
    bridge = Bridge(args.uno_port, args.scratch_root, args.warmup_dir, args.connect_timeout)
    server = _Server(("127.0.0.1", args.rpc_port), requestHandler=_Handler,
                     allow_none=True, logRequests=False)
    for name in ("convert", "info", "ping", "warmup"):
        server.register_function(getattr(bridge, name), name)
    logger.info("serving on 127.0.0.1:%d for LibreOffice on %d", args.rpc_port, args.uno_port)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
