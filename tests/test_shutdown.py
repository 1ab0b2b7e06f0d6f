"""Graceful shutdown of `converter serve` on SIGTERM (CONVERTER_SHUTDOWN_GRACE).

It stops accepting work, lets the synchronous conversion in flight finish, hands
the run it could not finish back to the queue (claimable at once, by a replica
or the next start) and leaves no LibreOffice behind.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.served import ServedApp
from tests.test_runs import create_ok, wait_run

pytestmark = pytest.mark.engine

GRACE = 10
SLOW_RUN = "odt/OpenDocument-v1.2-os-part1.odt"  # about 13 s to PDF: longer than GRACE
SYNC = "docx/bug59058.docx"  # about 2 s to PDF: well within GRACE


def _wait(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout}s: {what}"
        time.sleep(0.05)


def _engine_busy(app: ServedApp) -> float:
    return app.metrics().get("converter_engine_busy", 0.0)


def _leftovers(data_dir: Path) -> list[str]:
    """Command lines of LibreOffice processes or bridges still running for data_dir."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if f"{data_dir}/" in cmdline + environ and (
                "soffice" in cmdline or "converter.engine.bridge" in cmdline):
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def test_sigterm_finishes_sync_work_releases_runs_and_leaves_nothing(
        serve: type[ServedApp], corpus: Path) -> None:
    """SIGTERM while a run and a sync conversion convert: the sync answer is 200, the process
    exits within the grace, the run is pending again at once and completes on the next start,
    and no LibreOffice of that data directory is left."""
    app = serve(workers=2, http_workers=2,
                env={"CONVERTER_SHUTDOWN_GRACE": str(GRACE)}).start()
    assert app.proc is not None
    run_file = app.upload_ok(corpus / SLOW_RUN)["id"]
    run_id = create_ok(app, run_file, "pdf")
    _wait(lambda: _engine_busy(app) >= 1, 60, "the run to start converting")

    answer: dict[str, Any] = {}

    def convert() -> None:
        response = requests.post(f"{app.url}/v1/convert", headers={"X-API-Key": app.key},
                                 files={"file": (corpus / SYNC).open("rb")},
                                 data={"format": "pdf"}, timeout=120)
        answer.update(response=response, at=time.monotonic())

    thread = threading.Thread(target=convert, daemon=True)
    thread.start()
    _wait(lambda: _engine_busy(app) >= 2, 60, "the sync conversion to start converting")
    sent = time.monotonic()
    app.proc.send_signal(signal.SIGTERM)

    thread.join(GRACE + 30)
    response = answer["response"]
    assert answer["at"] > sent, "the conversion finished before SIGTERM: nothing was tested"
    assert response.status_code == 200, response.text
    assert response.content.startswith(b"%PDF-")
    # New work is refused while the service stops (connection refused or reset).
    with pytest.raises(requests.ConnectionError):
        for _ in range(100):
            requests.get(f"{app.url}/healthz", timeout=5)
            time.sleep(0.1)

    code = app.proc.wait(GRACE + 30)
    took = time.monotonic() - sent
    assert code == 0, app.log()[-3000:]
    assert took < GRACE + 20, f"stopping took {took:.1f}s"
    assert not _leftovers(app.data_dir)

    with sqlite3.connect(app.data_dir / "converter.db") as db:
        status, owner, expires, not_before = db.execute(
            "SELECT status, lease_owner, lease_expires_at, not_before FROM runs WHERE id = ?",
            (run_id,)).fetchone()
    assert (status, owner, expires, not_before) == ("pending", None, None, None)

    # The next process claims it at once and completes it (the old key still works).
    again = ServedApp(app.data_dir, env={"CONVERTER_SHUTDOWN_GRACE": str(GRACE)})
    again.key = app.key
    again.http.headers["X-API-Key"] = app.key
    try:
        again.start()
        assert wait_run(again, run_id, timeout=180)["status"] == "completed"
    finally:
        again.stop()
