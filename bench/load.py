"""HTTP load for cache hits: wrk as the load generator, and the minimal app to compare with."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.minimal_app import FILE_ID
from tests.support.served import free_port

WRK_MISSING = ("wrk is not installed, so the cache-hit load was not measured. Install it with "
               "`apt-get install -y wrk` (Debian/Ubuntu) and run the benchmark again; a Python "
               "load generator would cap out below the servers it is meant to measure.")

# wrk prints its own summary with rounded units; this prints exact microseconds.
_LUA = """\
wrk.method = "POST"
wrk.body = "format=pdf"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["X-API-Key"] = "%(key)s"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %%d %%d %%.1f %%.1f %%.1f %%d %%d\\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.status, e.connect + e.read + e.write + e.timeout))
end
"""
_RESULT = re.compile(r"^BENCH (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+) (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class LoadResult:
    """One wrk run against one URL."""

    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    bad_status: int
    socket_errors: int

    @property
    def rps(self) -> float:
        """Requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        """Non-2xx answers plus socket errors."""
        return self.bad_status + self.socket_errors


def wrk_path() -> str | None:
    """The wrk binary, or None when it is not installed."""
    return shutil.which("wrk")


def run_wrk(url: str, key: str, connections: int, duration: float) -> LoadResult:
    """POST format=pdf to url with X-API-Key for duration seconds over N keep-alive connections."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError(WRK_MISSING)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_LUA % {"key": key})
    try:
        # One wrk thread: it drives tens of thousands of requests per second, and
        # every core it does not take is left to the server under test.
        done = subprocess.run(
            [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s",
             "-s", script.name, url],
            capture_output=True, text=True, timeout=duration + 60, check=False)
    finally:
        os.unlink(script.name)
    found = _RESULT.search(done.stdout)
    if found is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    reqs, micros, p50, p99, mean, status, sock = found.groups()
    return LoadResult(connections=connections, requests=int(reqs), seconds=int(micros) / 1e6,
                      p50_ms=float(p50) / 1000, p99_ms=float(p99) / 1000,
                      mean_ms=float(mean) / 1000, bad_status=int(status),
                      socket_errors=int(sock))


class MinimalAppProcess:
    """bench.minimal_app (gunicorn -w <cores> sync workers), as a subprocess."""

    def __init__(self, root: Path) -> None:
        self.root = root / "minimal"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.root / "minimal.log"

    @property
    def convert_url(self) -> str:
        """The route wrk hits (same shape as the service's convert call)."""
        return f"{self.url}/v1/files/{FILE_ID}/convert"

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait for /healthz."""
        self.root.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERTER_")}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.minimal_app", "--port", str(self.port),
                 "--data", str(self.root)],
                cwd=Path(__file__).resolve().parents[1], env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"minimal app exited early:\n{self.log_path.read_text()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"minimal app not ready:\n{self.log_path.read_text()}")
        check = requests.post(self.convert_url, data={"format": "pdf"},
                              headers={"X-API-Key": "sk_live_bench"}, timeout=10)
        if check.status_code != 200 or check.json().get("cached") is not True:
            raise RuntimeError(f"minimal app answered {check.status_code}: {check.text[:200]}")

    def stop(self) -> None:
        """SIGTERM its gunicorn and wait."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
