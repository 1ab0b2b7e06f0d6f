"""The converter service under test: a real ``converter serve`` driven over HTTP."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench.documents import Doc
from converter import config
from converter.db.engine import connect
from converter.service.keys import KeyStore
from tests.support.served import ServedApp

# The cache-hit load runs thousands of requests per second through one key; the
# per-key budget would answer most of them with 429 and measure the limiter instead.
UNLIMITED = "1000000000"
# A full run makes ~450 conversions; the default recycling (every 200 per instance)
# would put a LibreOffice restart inside some timed batches and not others.
NO_RECYCLING = "100000"


class ServiceError(Exception):
    """The service answered a benchmark request with an error."""


@dataclass(frozen=True)
class ColdTiming:
    """One cold conversion over HTTP, in seconds."""

    upload: float
    convert: float
    download: float

    @property
    def total(self) -> float:
        """Upload + convert + download."""
        return self.upload + self.convert + self.download


class ServiceUnderTest:
    """``converter serve`` with a fresh data directory and the default pool size."""

    def __init__(self, root: Path, workers: int | None = None) -> None:
        # As shipped (CONVERTER_WORKERS=auto: one instance per CPU plus one): under the fair
        # policy heavy work leaves the last instance free, so a smaller pool would be the
        # service deployed worse than it ships.
        shipped = config.load({"CONVERTER_WORKERS": "auto", "CONVERTER_HTTP_WORKERS": "auto"})
        workers = workers or shipped.workers
        # HTTP workers as shipped too (the test helper's default is a fixed 2).
        self.app = ServedApp(root / "service", workers=workers,
                             http_workers=shipped.http_workers,
                             env={"CONVERTER_REQUESTS_PER_MINUTE": UNLIMITED,
                                  "CONVERTER_RECYCLE_AFTER": NO_RECYCLING})
        self.workers = workers
        # The pool's soffice.bin processes carry the data dir in their profile path.
        self.marker = str(self.app.data_dir)
        self._local = threading.local()
        # Each upload gets an owner of its own: the content cache answers a second upload
        # of the same bytes by the same owner, and a fresh upload here means a real miss.
        self._owners: dict[str, str] = {}
        self._owners_lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL of the running service."""
        return self.app.url

    @property
    def key(self) -> str:
        """The bootstrap API key."""
        return self.app.key

    def start(self) -> None:
        """Start the service and wait until /readyz says ready."""
        self.app.start(timeout=180)

    def stop(self) -> None:
        """Stop the service (SIGTERM, then SIGKILL if it hangs)."""
        self.app.stop()

    def _session(self) -> requests.Session:
        # requests.Session is not thread-safe: one per client thread, kept alive.
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["X-API-Key"] = self.app.key
            self._local.session = session
        return session

    def _new_owner(self) -> str:
        store = KeyStore(connect(f"sqlite:///{self.app.data_dir / 'converter.db'}"))
        try:
            return store.create("bench", f"owner-{secrets.token_hex(6)}")[1]
        finally:
            store.db.dispose()

    def key_for(self, file_id: str) -> str:
        """The API key of the owner that uploaded file_id (the bootstrap key if none)."""
        with self._owners_lock:
            return self._owners.get(file_id, self.app.key)

    def _headers(self, file_id: str) -> dict[str, str]:
        with self._owners_lock:
            owner = self._owners.get(file_id)
        return {"X-API-Key": owner} if owner else {}

    def upload(self, doc: Doc) -> tuple[str, float]:
        """POST /v1/files as a new owner (no cache by content); return (file id, seconds)."""
        data = doc.path.read_bytes()
        owner = self._new_owner()
        started = time.perf_counter()
        response = self._session().post(f"{self.url}/v1/files", timeout=300,
                                        headers={"X-API-Key": owner},
                                        files={"file": (doc.path.name, data)})
        elapsed = time.perf_counter() - started
        if response.status_code != 201:
            raise ServiceError(f"upload {doc.name}: {response.status_code} {response.text[:200]}")
        file_id = str(response.json()["id"])
        with self._owners_lock:
            self._owners[file_id] = owner
        return file_id, elapsed

    def convert(self, file_id: str, target: str = "pdf") -> tuple[dict[str, Any], float]:
        """POST /v1/files/{id}/convert; return (JSON body, seconds)."""
        started = time.perf_counter()
        response = self._session().post(f"{self.url}/v1/files/{file_id}/convert",
                                        headers=self._headers(file_id),
                                        data={"format": target}, timeout=300)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise ServiceError(f"convert {file_id}: {response.status_code} "
                               f"{response.text[:200]}")
        body: dict[str, Any] = response.json()
        return body, elapsed

    def download(self, url: str) -> tuple[int, float]:
        """GET a signed download URL; return (bytes, seconds)."""
        started = time.perf_counter()
        response = self._session().get(url, timeout=300)
        content = response.content
        elapsed = time.perf_counter() - started
        if response.status_code != 200 or not content:
            raise ServiceError(f"download: {response.status_code} {response.text[:200]}")
        return len(content), elapsed

    def cold(self, doc: Doc) -> ColdTiming:
        """A conversion the cache cannot answer: fresh upload, convert, download."""
        file_id, upload = self.upload(doc)
        body, convert = self.convert(file_id)
        if body.get("cached"):
            raise ServiceError(f"fresh upload of {doc.name} was answered from the cache")
        _size, download = self.download(str(body["download_url"]))
        return ColdTiming(upload, convert, download)

    def convert_uploaded(self, file_id: str) -> float:
        """Convert an already uploaded file and download the PDF; return seconds."""
        started = time.perf_counter()
        body, _ = self.convert(file_id)
        if body.get("cached"):
            raise ServiceError(f"{file_id} was answered from the cache")
        self.download(str(body["download_url"]))
        return time.perf_counter() - started

    def cached_file(self, doc: Doc) -> str:
        """Upload and convert doc once, and check a repeat is a cache hit; return its id."""
        file_id, _ = self.upload(doc)
        self.convert(file_id)
        body, _ = self.convert(file_id)
        if body.get("cached") is not True:
            raise ServiceError(f"repeat conversion of {doc.name} was not a cache hit: {body}")
        return file_id

    def metrics(self) -> dict[str, float]:
        """The service's /metrics, parsed."""
        return self.app.metrics()
