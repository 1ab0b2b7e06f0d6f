"""The two baselines: soffice per document, and one bare unoserver instance."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xmlrpc.client
from pathlib import Path

from unoserver.client import UnoClient

from bench.documents import Doc
from converter.engine.allocator import with_preload

SOFFICE = shutil.which("soffice") or "/usr/bin/soffice"
UNOSERVER = str(Path(sys.executable).with_name("unoserver"))


class ConversionFailed(Exception):
    """A baseline produced no output for a document."""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class SofficePerDocument:
    """``soffice --headless --convert-to pdf`` as a new process for every document.

    The profile is initialised once beforehand, so each run measures the
    per-request-process model rather than first-run profile creation.
    """

    def __init__(self, root: Path, preload: str | None = None) -> None:
        self.root = root
        self.profile = root / "profile"
        self.marker = str(self.profile)
        self.peak_rss_kib = 0
        # The malloc the service's LibreOffice gets: a reference deployed as well as it can be.
        self.env = with_preload(dict(os.environ), preload)

    def _cmd(self, *args: str) -> list[str]:
        return [SOFFICE, "--headless", "--norestore", "--nologo", "--nolockcheck",
                f"-env:UserInstallation={self.profile.as_uri()}", *args]

    def prepare(self) -> None:
        """Create and initialise the profile once."""
        self.profile.mkdir(parents=True, exist_ok=True)
        subprocess.run(self._cmd("--terminate_after_init"), env=self.env,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=120, check=False)

    def convert(self, doc: Doc, timeout: float = 300.0) -> float:
        """Convert one document; return the wall time in seconds."""
        out_dir = Path(tempfile.mkdtemp(dir=self.root, prefix="out-"))
        try:
            started = time.perf_counter()
            proc = subprocess.Popen(
                self._cmd("--convert-to", "pdf", "--outdir", str(out_dir), str(doc.path)),
                env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            watchdog = threading.Timer(timeout, proc.kill)
            watchdog.start()
            try:
                # wait4's rusage covers the descendants oosplash waited for, soffice.bin
                # included, so the peak RSS of a process that lives one second is exact.
                _pid, status, usage = os.wait4(proc.pid, 0)
            finally:
                watchdog.cancel()
            elapsed = time.perf_counter() - started
            proc.returncode = os.waitstatus_to_exitcode(status)
            self.peak_rss_kib = max(self.peak_rss_kib, usage.ru_maxrss)
            # soffice exits 0 even when it could not load the file: check the output.
            produced = out_dir / (doc.path.stem + ".pdf")
            if not produced.exists() or produced.stat().st_size == 0:
                raise ConversionFailed(f"soffice produced no PDF for {doc.name}")
            return elapsed
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)


class BareUnoserver:
    """One unoserver instance with its own fresh profile, driven as a remote client would.

    ``UnoClient(host_location="remote")`` sends the document as base64 bytes over
    XML-RPC, lets LibreOffice detect the input type and returns the PDF bytes; it
    calls ``info()`` before every conversion, which is part of its real cost.
    """

    def __init__(self, root: Path, preload: str | None = None) -> None:
        self.root = root
        # preload: a malloc for its LibreOffice (jemalloc, as the service's), or None for
        # unoserver exactly as installed.
        self.env = with_preload(dict(os.environ), preload)
        self.profile = root / "unoserver-profile"
        self.marker = str(self.profile)
        self.port = _free_port()
        self.uno_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "unoserver.log"

    def start(self, timeout: float = 120.0) -> None:
        """Start unoserver and wait until it answers info()."""
        self.profile.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [UNOSERVER, "--interface", "127.0.0.1", "--port", str(self.port),
                 "--uno-port", str(self.uno_port), "--user-installation", str(self.profile)],
                env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"unoserver exited early:\n{self.log_path.read_text()}")
            try:
                proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{self.port}")
                info = proxy.info()
                if isinstance(info, dict) and info.get("api"):
                    return
            except (OSError, xmlrpc.client.Error):
                time.sleep(0.2)
        raise RuntimeError(f"unoserver not ready in {timeout}s:\n{self.log_path.read_text()}")

    def client(self) -> UnoClient:
        """A client as another container would use it."""
        return UnoClient(server="127.0.0.1", port=str(self.port), host_location="remote")

    def convert(self, doc: Doc) -> float:
        """Convert one document (bytes in, PDF bytes out); return the wall time in seconds."""
        data = doc.path.read_bytes()
        started = time.perf_counter()
        result = self.client().convert(indata=data, convert_to="pdf")
        elapsed = time.perf_counter() - started
        if not result:
            raise ConversionFailed(f"unoserver returned no PDF for {doc.name}")
        return elapsed

    def info_seconds(self, times: int = 20) -> list[float]:
        """Wall times of the info() round trip UnoClient makes before every conversion."""
        took = []
        for _ in range(times):
            proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{self.port}", allow_none=True)
            started = time.perf_counter()
            proxy.info()
            took.append(time.perf_counter() - started)
        return took

    def stop(self) -> None:
        """Terminate unoserver and its LibreOffice."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        # Its own session: whatever LibreOffice left behind goes with the group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
