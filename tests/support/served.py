"""A real `converter serve` process on a free port, driven over HTTP by the tests."""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from converter.engine.ports import PortReservation

REPO = Path(__file__).resolve().parents[2]
CONVERTER = str(Path(sys.executable).with_name("converter"))


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServedApp:
    """Starts `converter serve` with its own data directory and API key.

    As deployed by default: an engine process with ``workers`` LibreOffice instances
    and ``http_workers`` gunicorn worker processes in front of it.
    """

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None,
                 workers: int = 2, http_workers: int = 2) -> None:
        self.data_dir = data_dir
        # Held for this object's life, restarts included: a port merely found free may be
        # given to some outgoing connection before gunicorn binds it (engine/ports.py).
        self._port = PortReservation()
        self.port = self._port.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.key = "sk_live_" + secrets.token_urlsafe(24)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERTER_")}
        self.env.update({
            "CONVERTER_DATA_DIR": str(data_dir),
            "CONVERTER_PORT": str(self.port),
            "CONVERTER_BOOTSTRAP_KEY": self.key,
            "CONVERTER_WORKERS": str(workers),
            "CONVERTER_HTTP_WORKERS": str(http_workers),
            "CONVERTER_LOG_LEVEL": "WARNING",
        })
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "serve.log"
        self.http = requests.Session()
        self.http.headers["X-API-Key"] = self.key

    def start(self, timeout: float = 120.0) -> ServedApp:
        """Start the server and wait until /readyz says ready."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen([CONVERTER, "serve"], env=self.env, stdout=log,
                                     stderr=log, cwd=REPO, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"converter serve exited early:\n{self.log()}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"converter serve not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """The server's combined output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int | None:
        """Stop the server (SIGTERM by default) and wait for it."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout=10)

    def cli(self, *args: str) -> str:
        """Run a `converter` CLI command against this server's database."""
        done = subprocess.run([CONVERTER, *args], env=self.env, capture_output=True,
                              text=True, timeout=60, check=True)
        return done.stdout.strip()

    def create_key(self, workspace: str, user: str) -> str:
        """A new API key for user in workspace."""
        return self.cli("keys", "create", "--workspace", workspace, "--user", user)

    def request(self, method: str, path: str, key: str | None = None, **kwargs: Any,
                ) -> requests.Response:
        """An HTTP request with this server's bootstrap key (or another)."""
        headers = dict(kwargs.pop("headers", {}) or {})
        if key is not None:
            headers["X-API-Key"] = key
        kwargs.setdefault("timeout", 300)
        return self.http.request(method, self.url + path, headers=headers, **kwargs)

    def upload(self, path: Path, key: str | None = None, scope: str | None = None,
               filename: str | None = None) -> requests.Response:
        """POST /v1/files with the file at path."""
        data = {"scope": scope} if scope else {}
        with path.open("rb") as fh:
            return self.request("POST", "/v1/files", key=key, data=data,
                                files={"file": (filename or path.name, fh)})

    def upload_ok(self, path: Path, **kwargs: Any) -> dict[str, Any]:
        """Upload and assert 201; return the file JSON."""
        response = self.upload(path, **kwargs)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def convert(self, file_id: str, target: str, key: str | None = None,
                **extra: Any) -> requests.Response:
        """POST /v1/files/{id}/convert."""
        return self.request("POST", f"/v1/files/{file_id}/convert", key=key,
                            data={"format": target, **extra})

    def metrics(self) -> dict[str, float]:
        """Parse /metrics into {name{labels}: value}."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def scrape(self) -> list[Sample]:
        """Every sample of /metrics, read with prometheus-client's own parser."""
        return scrape(self.url)

    def bridges(self) -> dict[int, int]:
        """The engine bridges this server started: pid -> XML-RPC port (unoserver's API)."""
        marker = str(self.data_dir)
        found = {}
        for pid, args in _cmdlines():
            if "converter.engine.bridge" in args and any(marker in a for a in args):
                found[pid] = int(args[args.index("--rpc-port") + 1])
        return found

    def children(self, pid: int | None = None) -> list[tuple[int, list[str]]]:
        """Direct children of pid (default: the `converter serve` process), with argv."""
        parent = pid if pid is not None else (self.proc.pid if self.proc else -1)
        found = []
        for child, args in _cmdlines():
            try:
                stat = Path(f"/proc/{child}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append((child, args))
        return found

    def engine_pid(self) -> int | None:
        """The engine process `converter serve` runs now, if any."""
        pids = [p for p, args in self.children() if "engine" in args and "--socket" in args]
        return pids[0] if pids else None

    def gunicorn_pid(self) -> int | None:
        """The gunicorn master `converter serve` runs now, if any."""
        pids = [p for p, args in self.children() if "converter.server" in args]
        return pids[0] if pids else None

    def http_worker_pids(self) -> list[int]:
        """The gunicorn worker processes serving HTTP now."""
        master = self.gunicorn_pid()
        return sorted(p for p, _ in self.children(master)) if master else []

    @property
    def scratch_root(self) -> Path:
        """The only directory the bridges read documents from and write them to."""
        return self.data_dir / "engine" / "scratch"

    def soffice_pids(self) -> list[int]:
        """PIDs of LibreOffice processes this server started."""
        pids = []
        marker = str(self.data_dir)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if "soffice.bin" in cmdline and marker in cmdline:
                pids.append(int(entry.name))
        return pids


def _cmdlines() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                raw = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            yield int(entry.name), raw.decode(errors="replace").split("\0")


def scrape(url: str) -> list[Sample]:
    """Every sample of url/metrics, read with prometheus-client's own parser."""
    response = requests.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return [sample for family in text_string_to_metric_families(response.text)
            for sample in family.samples]


def total(samples: list[Sample], name: str, **labels: str) -> float:
    """Sum of the samples called name whose labels include labels (0 when there are none)."""
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def error_of(response: requests.Response) -> dict[str, Any]:
    """Assert the JSON error envelope and return its inner object."""
    assert response.headers.get("Content-Type", "").startswith("application/json"), (
        response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error.get("type"), str) and error["type"], body
    assert isinstance(error.get("message"), str) and error["message"], body
    assert re.match(r"^[A-Za-z0-9._-]{8,}$", error.get("request_id", "")), body
    return error
