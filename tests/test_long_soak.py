"""The long soak: mixed work for 20 minutes while LibreOffice, the service and the database die.

Not part of ``./run test`` (it is marked ``soak``, which the default run deselects): run it
with ``./run test -m soak tests/test_long_soak.py`` (``SOAK_SECONDS`` shortens or lengthens
it; 1200 by default). It prints its figures at the end.

What it proves, on a PostgreSQL cluster of its own and the default local storage:
- every run the service accepted ends completed or failed with a reason: none is lost;
- files given a short ``expires_in`` disappear while the soak runs (retention works under load);
- after ``converter gc`` no object lacks a row and no row lacks its object;
- LibreOffice's memory stays bounded: instances are recycled and their peak RSS stays under
  CONVERTER_MAX_RSS_MB plus one conversion's worth.
"""

from __future__ import annotations

import io
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import requests
import sqlalchemy as sa

from tests.support.pg_cluster import PgCluster, owned_cluster
from tests.support.served import ServedApp

pytestmark = [pytest.mark.soak, pytest.mark.engine, pytest.mark.postgres]

SECONDS = float(os.environ.get("SOAK_SECONDS", "1200"))
# Small real documents and targets the conversion matrix offers for each.
DOCS = {"docx/SampleDoc.docx": ("pdf", "txt", "html", "odt"),
        "doc/SampleDoc.doc": ("pdf", "txt", "docx"),
        "odt/HelloWorld.odt": ("pdf", "txt", "docx"),
        "rtf/Example_text.rtf": ("pdf", "txt", "odt"),
        "xlsx/SampleSS.xlsx": ("pdf", "csv", "html"),
        "ods/SampleSS.ods": ("pdf", "csv", "xlsx"),
        "pptx/SampleShow.pptx": ("pdf", "odp")}
GENERATED = {"rtf": ("pdf", "txt", "odt", "docx"), "xlsx": ("pdf", "html", "csv")}
WORDS = ("soak", "convert", "office", "document", "tenant", "engine", "page", "sheet",
         "retention", "lease", "storage", "recycle", "memory", "kill", "restart")
MAX_RSS_MB = 900
EPHEMERAL_SECONDS = 20
RETRYABLE = {502, 503, 507}


@dataclass
class Ledger:
    """What the clients did and saw, shared by their threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    files: list[str] = field(default_factory=list)  # live, deletable, never expiring
    run_files: list[str] = field(default_factory=list)  # never deleted: runs point at them
    ephemeral: dict[str, float] = field(default_factory=dict)  # file id -> expiry (monotonic)
    runs: list[str] = field(default_factory=list)
    targets: dict[str, tuple[str, ...]] = field(default_factory=dict)  # file id -> targets
    outcomes: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    recycles_seen: float = 0.0
    chaos: Counter[str] = field(default_factory=Counter)

    def note(self, op: str, response: requests.Response | None, allowed: tuple[int, ...] = ()
             ) -> bool:
        """Count one answer; True when it succeeded. 5xx must say retryable; 500 never."""
        with self.lock:
            if response is None:
                self.outcomes[f"{op}:connection"] += 1
                return False
            status = response.status_code
            self.outcomes[f"{op}:{status}"] += 1
            if status < 300:
                return True
            if status in RETRYABLE and _retryable(response):
                return False
            if status in allowed:
                return False
            self.unexpected.append(f"{op} -> {status}: {response.text[:300]}")
            return False


def _retryable(response: requests.Response) -> bool:
    try:
        return bool(response.json()["error"].get("retryable"))
    except (ValueError, KeyError, AttributeError):
        return False


def _call(app: ServedApp, method: str, path: str, **kwargs: Any) -> requests.Response | None:
    try:
        return app.request(method, path, timeout=120, **kwargs)
    except requests.RequestException:
        return None  # the service was being killed: the client retries later


class Client(threading.Thread):
    """One caller mixing uploads, conversions, runs and deletes until the end."""

    def __init__(self, app: ServedApp, corpus: Path, ledger: Ledger, deadline: float,
                 seed: int) -> None:
        super().__init__(daemon=True)
        self.app, self.corpus, self.ledger, self.deadline = app, corpus, ledger, deadline
        self.rng = random.Random(seed)

    def run(self) -> None:
        """Pick an operation at random until the deadline."""
        ops = [(self.upload, 3), (self.convert, 4), (self.create_run, 3), (self.delete, 1),
               (self.check_ephemeral, 1)]
        while time.monotonic() < self.deadline:
            op = self.rng.choices([o for o, _ in ops], [w for _, w in ops])[0]
            op()
            time.sleep(self.rng.uniform(0.05, 0.3))

    def _document(self) -> tuple[str, bytes, tuple[str, ...]]:
        """A corpus document, or (half the time) a generated one no upload had before.

        The content cache converts the same bytes of one owner once, so only documents
        never seen keep LibreOffice converting, and so recycling, for the whole soak.
        """
        if self.rng.random() < 0.5:
            rel = self.rng.choice(sorted(DOCS))
            path = self.corpus / rel
            return path.name, path.read_bytes(), DOCS[rel]
        words = " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(50, 400)))
        if self.rng.random() < 0.5:
            text = ("{\\rtf1\\ansi{\\fonttbl\\f0 Liberation Serif;}\\f0 "
                    f"{uuid.uuid4()}\\par {words}}}")
            return "generated.rtf", text.encode("ascii"), GENERATED["rtf"]
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        for row in range(self.rng.randint(5, 60)):
            sheet.append([str(uuid.uuid4()), self.rng.random(), row, *words.split()[:4]])
        buffer = io.BytesIO()
        book.save(buffer)
        return "generated.xlsx", buffer.getvalue(), GENERATED["xlsx"]

    def _upload(self, expires_in: int | None = None) -> str | None:
        name, content, targets = self._document()
        data = {"expires_in": str(expires_in)} if expires_in else {}
        response = _call(self.app, "POST", "/v1/files", data=data,
                         files={"file": (name, content)})
        if self.ledger.note("upload", response) and response is not None:
            file_id: str = response.json()["id"]
            with self.ledger.lock:
                self.ledger.targets[file_id] = targets
            return file_id
        return None

    def upload(self) -> None:
        """A file to keep, one for runs, or one that expires soon."""
        kind = self.rng.choice(["keep", "run", "ephemeral"])
        file_id = self._upload(EPHEMERAL_SECONDS if kind == "ephemeral" else None)
        if file_id is None:
            return
        with self.ledger.lock:
            if kind == "keep":
                self.ledger.files.append(file_id)
            elif kind == "run":
                self.ledger.run_files.append(file_id)
            else:
                self.ledger.ephemeral[file_id] = time.monotonic() + EPHEMERAL_SECONDS

    def _pick(self, pool: list[str]) -> str | None:
        with self.ledger.lock:
            return self.rng.choice(pool) if pool else None

    def convert(self) -> None:
        """A synchronous conversion of a kept file, checked for real output."""
        file_id = self._pick(self.ledger.files + self.ledger.run_files)
        if file_id is None:
            return
        response = _call(self.app, "POST", f"/v1/files/{file_id}/convert",
                         data={"format": self.rng.choice(self.ledger.targets[file_id])})
        # 404: a kept file another client deleted meanwhile.
        if self.ledger.note("convert", response, allowed=(404,)) and response is not None:
            link = response.json()["download_url"]
            try:
                got = requests.get(link, timeout=60)
            except requests.RequestException:
                return
            # 404: the file was deleted between the conversion and the download.
            self.ledger.note("download", got, allowed=(404,))

    def create_run(self) -> None:
        """An async run, created with an Idempotency-Key and retried until answered."""
        file_id = self._pick(self.ledger.run_files)
        if file_id is None:
            return
        key = uuid.uuid4().hex
        body = {"file_id": file_id, "format": self.rng.choice(self.ledger.targets[file_id])}
        for _attempt in range(60):
            response = _call(self.app, "POST", "/v1/runs", json=body,
                             headers={"Idempotency-Key": key})
            if self.ledger.note("run", response, allowed=(429,)) and response is not None:
                with self.ledger.lock:
                    self.ledger.runs.append(response.json()["run_id"])
                return
            if response is not None and response.status_code == 429:
                return  # over the run budget: not accepted, so nothing to lose
            if time.monotonic() > self.deadline + 120:
                return
            time.sleep(2.0)

    def delete(self) -> None:
        """Delete a kept file (never one runs point at)."""
        with self.ledger.lock:
            if not self.ledger.files:
                return
            file_id = self.ledger.files.pop(self.rng.randrange(len(self.ledger.files)))
        self.ledger.note("delete", _call(self.app, "DELETE", f"/v1/files/{file_id}"),
                         allowed=(404,))

    def check_ephemeral(self) -> None:
        """A file past its expires_in (and a cleanup pass) must be gone."""
        now = time.monotonic()
        with self.ledger.lock:
            due = [f for f, exp in self.ledger.ephemeral.items() if exp + 30 < now]
        for file_id in due[:3]:
            response = _call(self.app, "GET", f"/v1/files/{file_id}")
            if response is not None and response.status_code == 404:
                with self.ledger.lock:
                    self.ledger.ephemeral.pop(file_id, None)
                    self.ledger.outcomes["expired_seen"] += 1


class Chaos(threading.Thread):
    """Every 20 to 40 s: kill LibreOffice, kill the whole service, or kill the database."""

    def __init__(self, app: ServedApp, cluster: PgCluster, ledger: Ledger, deadline: float
                 ) -> None:
        super().__init__(daemon=True)
        self.app, self.cluster, self.ledger, self.deadline = app, cluster, ledger, deadline
        self.rng = random.Random(20261202)
        self.errors: list[str] = []

    def run(self) -> None:
        """Sample memory often, strike now and then."""
        next_strike = time.monotonic() + 30
        # A fixed rotation, so even a short soak hits every kind of failure.
        rotation = ["soffice", "database", "service", "soffice"]
        while time.monotonic() < self.deadline:
            self.sample()
            if time.monotonic() >= next_strike:
                try:
                    self.strike(rotation[sum(self.ledger.chaos.values()) % len(rotation)])
                except Exception as exc:  # reported at the end: the soak must not hide it
                    self.errors.append(repr(exc))
                next_strike = time.monotonic() + self.rng.uniform(20, 40)
            time.sleep(2)

    def sample(self) -> None:
        """LibreOffice's resident memory, read from /proc, and the recycles counted so far."""
        for pid in self.app.soffice_pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                    with self.ledger.lock:
                        self.ledger.peak_rss_mb = max(self.ledger.peak_rss_mb, rss)
        try:
            recycles = self.app.metrics().get(
                'converter_engine_restarts_total{reason="recycle"}', 0.0)
        except (requests.RequestException, ValueError):
            return
        with self.ledger.lock:
            self.ledger.recycles_seen = max(self.ledger.recycles_seen, recycles)

    def strike(self, what: str) -> None:
        """One failure, and the recovery an operator's supervisor would make."""
        self.ledger.chaos[what] += 1
        if what == "soffice":
            pids = self.app.soffice_pids()
            if pids:
                os.kill(self.rng.choice(pids), signal.SIGKILL)
        elif what == "service":
            # Like a container killed: every process of the service, at once.
            assert self.app.proc is not None
            os.killpg(self.app.proc.pid, signal.SIGKILL)
            self.app.proc.wait(timeout=30)
            _wait_gone(self.app)
            self.app.start(timeout=300)
        else:
            self.cluster.kill()
            time.sleep(self.rng.uniform(3, 10))
            self.cluster.start()


def _wait_gone(app: ServedApp, timeout: float = 60) -> None:
    """Until no LibreOffice of this service is left (the service died with it)."""
    deadline = time.monotonic() + timeout
    while app.soffice_pids():
        if time.monotonic() > deadline:
            raise AssertionError(f"LibreOffice outlived its service: {app.soffice_pids()}")
        time.sleep(0.5)


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster the soak may kill."""
    with owned_cluster() as owned:
        yield owned


def _settle_runs(app: ServedApp, run_ids: list[str], timeout: float = 900) -> Counter[str]:
    """Wait until every run is completed or failed; the statuses at the end."""
    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    final: Counter[str] = Counter()
    while pending and time.monotonic() < deadline:
        for run_id in sorted(pending):
            response = _call(app, "GET", f"/v1/runs/{run_id}")
            if response is None or response.status_code in RETRYABLE:
                continue
            if response.status_code == 404:
                final["lost"] += 1
                pending.discard(run_id)
                continue
            run = response.json()
            if run["status"] in ("completed", "failed"):
                assert run["status"] == "completed" or run.get("error"), run
                final[run["status"]] += 1
                pending.discard(run_id)
        time.sleep(2)
    final["lost"] += len(pending)
    return final


def _orphans(app: ServedApp, db_url: str) -> tuple[list[str], list[str]]:
    """(objects without a row, rows without their object) in local storage."""
    root = app.data_dir / "objects"
    # Temp files of writes a kill interrupted count too: gc must clear them as well.
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            keys = {row[0] for row in conn.execute(sa.text(
                "SELECT storage_key FROM files UNION SELECT storage_key FROM artifacts "
                "UNION SELECT storage_key FROM content_artifacts"))}
    finally:
        engine.dispose()
    return sorted(on_disk - keys), sorted(keys - on_disk)


def test_long_soak(serve: type[ServedApp], cluster: PgCluster, corpus: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    """SOAK_SECONDS of mixed work and random kills: no lost run, no orphan, bounded memory."""
    env = {"CONVERTER_DATABASE_URL": cluster.url, "CONVERTER_RECYCLE_AFTER": "25",
           "CONVERTER_MAX_RSS_MB": str(MAX_RSS_MB), "CONVERTER_CLEANUP_INTERVAL_SECONDS": "15",
           "CONVERTER_ORPHAN_GRACE_SECONDS": "60", "CONVERTER_RUNS_PER_HOUR": "100000",
           "CONVERTER_REQUESTS_PER_MINUTE": "100000", "CONVERTER_RUN_LEASE_SECONDS": "20",
           "CONVERTER_RUN_MAX_ATTEMPTS": "10", "CONVERTER_CONVERSION_TIMEOUT": "90"}
    app = serve(env=env, workers=2).start(timeout=300)
    ledger = Ledger()
    started = time.monotonic()
    deadline = started + SECONDS
    clients = [Client(app, corpus, ledger, deadline, seed) for seed in range(3)]
    chaos = Chaos(app, cluster, ledger, deadline)
    for thread in [*clients, chaos]:
        thread.start()
    for thread in [*clients, chaos]:
        thread.join(timeout=SECONDS + 900)
    assert not chaos.errors, chaos.errors
    if not cluster.running():
        cluster.start()
    runs = _settle_runs(app, ledger.runs)
    # Ephemeral files still listed are given time for one more cleanup pass.
    time.sleep(EPHEMERAL_SECONDS + 30)
    expired_left = [f for f in ledger.ephemeral
                    if (r := _call(app, "GET", f"/v1/files/{f}")) is not None
                    and r.status_code == 200]
    app.stop()
    _wait_gone(app)
    # Stopped, the service has no write in flight: every object without a row is garbage
    # now, however recent the last kill that left it (the grace is for running services).
    app.env["CONVERTER_ORPHAN_GRACE_SECONDS"] = "1"
    time.sleep(1.5)
    gc_out = app.cli("gc")
    objects_without_row, rows_without_object = _orphans(app, cluster.url)
    with capsys.disabled():
        print(f"\nlong soak: {time.monotonic() - started:.0f} s, chaos {dict(ledger.chaos)}")
        print(f"runs: {len(ledger.runs)} accepted, {dict(runs)}")
        print(f"answers: {dict(sorted(ledger.outcomes.items()))}")
        print(f"LibreOffice peak RSS {ledger.peak_rss_mb:.0f} MiB (limit {MAX_RSS_MB}), "
              f"recycles seen {ledger.recycles_seen:.0f}")
        print(f"gc after the soak:\n{gc_out}")
        print(f"orphans: {len(objects_without_row)} objects without a row, "
              f"{len(rows_without_object)} rows without an object")
    if ledger.unexpected:
        logged = [line[:4000] for line in app.log().splitlines() if '"ERROR"' in line]
        raise AssertionError("unexpected answers:\n" + "\n".join(ledger.unexpected[:10])
                             + "\nerrors logged:\n" + "\n".join(logged[:5]))
    assert runs["lost"] == 0, runs
    assert len(ledger.runs) >= 10 and runs["completed"] >= 1, runs
    assert sum(ledger.chaos.values()) >= 3, ledger.chaos
    assert ledger.outcomes["expired_seen"] + len(ledger.ephemeral) > 0, "no file expired"
    assert not expired_left, f"files past expires_in still served: {expired_left[:5]}"
    assert not objects_without_row and not rows_without_object, (
        objects_without_row[:5], rows_without_object[:5])
    # A conversion may push an instance past the limit before the check that recycles it.
    assert ledger.peak_rss_mb < MAX_RSS_MB + 512, ledger.peak_rss_mb
    assert ledger.recycles_seen >= 1, "no instance was recycled: memory bound untested"
