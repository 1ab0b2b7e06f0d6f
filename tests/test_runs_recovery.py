"""Runs survive crashes and transient failures: kill -9 and restart, leases, bounded retries."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select, update

from converter import config as config_module
from converter.db.engine import utcnow
from converter.db.schema import runs
from converter.engine.pool import EngineJob
from converter.errors import ConversionTimeout, Overloaded, UnprocessableDocument, UpstreamError
from converter.service.principal import Principal
from converter.service.run_worker import RunWorker, claim_next, new_token, renew
from converter.wiring import Services, build
from tests.support.served import ServedApp
from tests.test_runs import create_ok, fetch, pdf_pages, wait_run

Action = Exception | Callable[[], None] | None


class FakeEngine:
    """Stands in for LibreOffice in service-layer tests: scripted failures, then a copy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.script: list[Action] = []
        self.calls = 0
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def scratch(self) -> Iterator[Path]:
        """A fresh directory per conversion."""
        with self.lock:
            self.calls += 1
            path = self.root / f"scratch-{self.calls}"
        path.mkdir(parents=True)
        yield path

    def convert(self, source: Path, target: Path, job: EngineJob, deadline: float) -> None:
        """Run the next scripted action; with none left, 'convert' by copying."""
        with self.lock:
            action = self.script.pop(0) if self.script else None
        if isinstance(action, Exception):
            raise action
        if action is not None:
            action()
        target.write_bytes(b"converted " + source.read_bytes()[:16])


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Services, FakeEngine, Principal]]:
    """In-process services on SQLite with a fake engine and one run worker thread."""
    engine = FakeEngine(tmp_path / "engine")
    cfg = config_module.load(environ={"CONVERTER_DATA_DIR": str(tmp_path / "data"),
                                      "CONVERTER_RUN_WORKERS": "1",
                                      "CONVERTER_RUN_LEASE_SECONDS": "2",
                                      "CONVERTER_RUN_MAX_ATTEMPTS": "3"})
    services = build(cfg, engine=engine)
    worker: RunWorker = services.extras["run_worker"]
    worker.retry_base = 0.05
    key_id, _raw = services.keys.create("w", "u")
    yield services, engine, Principal(key_id=key_id, workspace="w", user_id="u")
    services.close()


def _submit(services: Services, who: Principal, corpus: Path, target: str = "pdf") -> str:
    with (corpus / "odt/HelloWorld.odt").open("rb") as fh:
        record = services.files.upload(who, "HelloWorld.odt", fh, None)
    accepted = services.runs.create(who, {"file_id": record.id, "format": target}, None,
                                     "http://test")
    assert accepted.status_code == 202
    run_id: str = accepted.body["run_id"]
    return run_id


def _wait(services: Services, who: Principal, run_id: str, until: tuple[str, ...] = (
        "completed", "failed"), timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        run = services.runs.get(who, run_id, "http://test")
        if run["status"] in until:
            return run
        assert time.monotonic() < deadline, run
        time.sleep(0.02)


@pytest.mark.parametrize("failure", [
    UpstreamError("engine instance crashed"),
    ConversionTimeout("Conversion exceeded CONVERTER_CONVERSION_TIMEOUT"),
    Overloaded("All engine instances are busy"),
])
def test_transient_failures_are_retried(stack: tuple[Services, FakeEngine, Principal],
                                        corpus: Path, failure: Exception) -> None:
    """One transient failure, then success: completed on the second attempt."""
    services, engine, who = stack
    engine.script = [failure]
    run = _wait(services, who, _submit(services, who, corpus))
    assert run["status"] == "completed" and run["attempts"] == 2 and run["error"] is None
    assert engine.calls == 2


def test_retries_are_bounded(stack: tuple[Services, FakeEngine, Principal],
                             corpus: Path) -> None:
    """A failure that persists fails the run after CONVERTER_RUN_MAX_ATTEMPTS, saying so."""
    services, engine, who = stack
    engine.script = [ConversionTimeout("Conversion exceeded the timeout")] * 5
    run = _wait(services, who, _submit(services, who, corpus))
    assert run["status"] == "failed" and run["attempts"] == 3
    assert run["error"] == "Conversion exceeded the timeout (gave up after 3 attempts)"
    assert engine.calls == 3


@pytest.mark.parametrize("failure, message", [
    (UnprocessableDocument("LibreOffice cannot open this document"),
     "LibreOffice cannot open this document"),
    (UpstreamError("Engine rejected the request: bad filter", retryable=False),
     "Engine rejected the request: bad filter"),
    (RuntimeError("a bug"), "Internal error while converting; the run could not be completed"),
])
def test_permanent_failures_fail_at_once(stack: tuple[Services, FakeEngine, Principal],
                                         corpus: Path, failure: Exception,
                                         message: str) -> None:
    """Bad documents and unexpected errors are not retried; the error is readable."""
    services, engine, who = stack
    engine.script = [failure]
    run = _wait(services, who, _submit(services, who, corpus))
    assert (run["status"], run["attempts"], run["error"]) == ("failed", 1, message)


def test_expired_lease_is_reclaimed_and_the_stale_worker_cannot_finish(
        stack: tuple[Services, FakeEngine, Principal], corpus: Path) -> None:
    """A worker that stops renewing loses the run; its late result is not recorded twice."""
    services, engine, who = stack
    worker: RunWorker = services.extras["run_worker"]
    worker.stop()  # drive claims by hand below
    run_id = _submit(services, who, corpus)
    gate = threading.Event()
    engine.script = [lambda: gate.wait(10) and None]
    stale = claim_next(services.db, new_token(), lease_seconds=0.3)
    assert stale is not None and stale.run_id == run_id and stale.attempts == 1
    # execute() without the worker loop: nobody renews this lease, as in a hung process.
    hung = threading.Thread(target=worker.execute, args=(stale,))
    hung.start()
    while engine.calls < 1:
        time.sleep(0.01)
    assert claim_next(services.db, new_token(), lease_seconds=5) is None  # still leased
    time.sleep(0.4)
    fresh = claim_next(services.db, new_token(), lease_seconds=5)
    assert fresh is not None and fresh.run_id == run_id and fresh.attempts == 2
    assert renew(services.db, [stale.token], 5) == 0  # the stale lease is gone
    gate.set()
    hung.join(timeout=10)
    with services.db.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).one()
    assert (row.status, row.lease_owner) == ("running", fresh.token)
    worker.execute(fresh)
    run = _wait(services, who, run_id)
    assert run["status"] == "completed" and run["attempts"] == 2
    # The reclaimed run got the stale worker's content-addressed artifact, not a second one.
    assert engine.calls == 1


def test_renewed_leases_are_kept_and_abandoned_runs_give_up(
        stack: tuple[Services, FakeEngine, Principal], corpus: Path) -> None:
    """Renewal keeps a run; a run interrupted more than max_attempts times fails clearly."""
    services, _engine, who = stack
    worker: RunWorker = services.extras["run_worker"]
    worker.stop()
    run_id = _submit(services, who, corpus)
    held = claim_next(services.db, new_token(), lease_seconds=0.3)
    assert held is not None
    for _ in range(3):
        time.sleep(0.15)
        assert renew(services.db, [held.token], 0.3) == 1
        assert claim_next(services.db, new_token(), lease_seconds=0.3) is None
    last = held
    for _ in range(3):  # three more processes "die" holding it
        time.sleep(0.35)
        claimed = claim_next(services.db, new_token(), lease_seconds=0.3)
        assert claimed is not None
        last = claimed
    assert last.attempts == 4
    worker.execute(last)
    run = _wait(services, who, run_id)
    assert run["status"] == "failed" and "interrupted 3 times" in run["error"]


def test_shutdown_hands_unfinished_runs_back(stack: tuple[Services, FakeEngine, Principal],
                                             corpus: Path) -> None:
    """stop() releases a run still converting: pending again, the attempt not counted."""
    services, engine, who = stack
    release = threading.Event()
    engine.script = [lambda: release.wait(10) and None]
    run_id = _submit(services, who, corpus)
    _wait(services, who, run_id, until=("running",))
    worker: RunWorker = services.extras["run_worker"]
    worker.stop(drain=0.2)
    with services.db.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.id == run_id)).one()
    assert (row.status, row.attempts, row.lease_owner) == ("pending", 0, None)
    release.set()
    time.sleep(0.2)  # the interrupted conversion ends; its result must not be recorded
    with services.db.connect() as conn:
        assert conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar() == (
            "pending")
    replacement = RunWorker(services.db, services.conversions, services.matrix, 1, 2, 3)
    replacement.start()
    try:
        assert _wait(services, who, run_id)["status"] == "completed"
    finally:
        replacement.stop()


def test_not_before_delays_a_retry(stack: tuple[Services, FakeEngine, Principal],
                                   corpus: Path) -> None:
    """A run waiting out its retry delay is not claimed early."""
    services, _engine, who = stack
    services.extras["run_worker"].stop()
    run_id = _submit(services, who, corpus)
    with services.db.begin() as conn:
        conn.execute(update(runs).where(runs.c.id == run_id).values(
            not_before=utcnow().replace(year=utcnow().year + 1)))
    assert claim_next(services.db, new_token(), 5) is None


# ---------------------------------------------------------------- real served app


def test_kill_9_during_a_run_then_restart_completes_it(serve: type[ServedApp],
                                                       corpus: Path) -> None:
    """SIGKILL the whole service mid-conversion; a restarted one reclaims and completes it."""
    # A generous timeout: the run must not fail for being slow on a busy machine.
    env = {"CONVERTER_RUN_LEASE_SECONDS": "3", "CONVERTER_CONVERSION_TIMEOUT": "600"}
    first = serve(env=env, workers=1).start()
    file_id = first.upload_ok(corpus / "docx/bug65649.docx")["id"]
    run_id = create_ok(first, file_id, "pdf")
    running = wait_run(first, run_id, until=("running",))
    time.sleep(1.0)  # inside LibreOffice's conversion of 180 pages (5 s or more)
    assert first.proc is not None and first.soffice_pids()
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=30)
    deadline = time.monotonic() + 15
    while first.soffice_pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not first.soffice_pids(), "LibreOffice outlived the killed service"
    with sqlite3.connect(first.data_dir / "converter.db", timeout=30) as db:
        status, lease = db.execute("SELECT status, lease_owner FROM runs WHERE id = ?",
                                   (run_id,)).fetchone()
    assert status == "running" and lease  # orphaned: nobody renews this lease now

    second = ServedApp(first.data_dir, env={**env, "CONVERTER_BOOTSTRAP_KEY": first.key},
                       workers=1)
    second.key = first.key
    second.http.headers["X-API-Key"] = first.key
    try:
        second.start()
        run = wait_run(second, run_id, timeout=600)
        assert run["status"] == "completed", (run, second.log()[-3000:])
        assert run["attempts"] == 2 and run["started_at"] == running["started_at"]
        assert pdf_pages(fetch(run["download_url"])) > 100
        with sqlite3.connect(first.data_dir / "converter.db", timeout=30) as db:
            artifacts = db.execute("SELECT count(*) FROM artifacts WHERE file_id = ?",
                                   (file_id,)).fetchone()[0]
        assert artifacts == 1
    finally:
        second.stop()


def test_engine_overload_is_retried_until_the_run_completes(serve: type[ServedApp],
                                                            corpus: Path) -> None:
    """With no wait queue, a run meeting a busy engine gets 503-overloaded, retries, completes."""
    app = serve(env={"CONVERTER_QUEUE_SIZE": "0", "CONVERTER_RUN_MAX_ATTEMPTS": "6"},
                workers=1).start()
    slow = app.upload_ok(corpus / "odt/excelfileformat.odt")["id"]
    quick = app.upload_ok(corpus / "odt/HelloWorld.odt")["id"]
    results: list[requests.Response] = []
    blocker = threading.Thread(target=lambda: results.append(app.convert(slow, "pdf")))
    blocker.start()
    deadline = time.monotonic() + 30
    while app.metrics().get("converter_engine_busy", 0) < 1:
        assert time.monotonic() < deadline, "the blocking conversion never started"
        time.sleep(0.05)
    run_id = create_ok(app, quick, "txt")
    run = wait_run(app, run_id, timeout=120)
    blocker.join(timeout=120)
    assert results and results[0].status_code == 200, results
    assert run["status"] == "completed" and run["attempts"] >= 2, run
    assert fetch(run["download_url"]).strip()
    assert f"run {run_id} attempt 1 failed" in app.log()
