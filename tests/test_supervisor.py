"""The supervisor under fire: killed, hung, worn-out and overloaded engine instances."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.support.owners import uploads_by_new_owners
from tests.support.served import ServedApp, error_of

pytestmark = pytest.mark.engine


def _wait(predicate: object, timeout: float, what: str) -> float:
    """Poll predicate until true; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _busy_soffice(app: ServedApp, timeout: float = 20) -> int:
    """PID of a LibreOffice that is converting right now (highest CPU time growth)."""
    def cpu(pid: int) -> int:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        except OSError:
            return 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = {pid: cpu(pid) for pid in app.soffice_pids()}
        time.sleep(0.3)
        grown = {pid: cpu(pid) - t for pid, t in before.items()}
        if grown and max(grown.values()) > 5:
            return max(grown, key=lambda p: grown[p])
    raise AssertionError("no LibreOffice became busy")


def _ready(app: ServedApp) -> bool:
    return requests.get(f"{app.url}/readyz", timeout=5).status_code == 200


def test_kill_9_during_conversion_is_retried_and_the_pool_recovers(
        serve: type[ServedApp], corpus: Path) -> None:
    """kill -9 the converting soffice: the request succeeds on the other instance."""
    app = serve(workers=2).start()
    file_id = app.upload_ok(corpus / "odt/OpenDocument-v1.2-os-part1.odt")["id"]  # ~13 s
    result: dict[str, requests.Response] = {}
    worker = threading.Thread(target=lambda: result.update(r=app.convert(file_id, "pdf")))
    worker.start()
    victim = _busy_soffice(app)
    os.kill(victim, signal.SIGKILL)
    worker.join(timeout=120)
    response = result["r"]
    assert response.status_code == 200, response.text
    assert requests.get(response.json()["download_url"], timeout=30).content.startswith(b"%PDF-")
    recovery = _wait(lambda: _ready(app) and len(app.soffice_pids()) == 2, 30, "full pool")
    assert recovery < 30
    assert app.metrics()['converter_engine_restarts_total{reason="crash"}'] >= 1
    assert victim not in app.soffice_pids()
    later = app.convert(app.upload_ok(corpus / "docx/SampleDoc.docx")["id"], "pdf")
    assert later.status_code == 200


def test_document_that_kills_two_instances_is_422(serve: type[ServedApp], corpus: Path) -> None:
    """A document whose conversion dies on both instances is unprocessable, not retried forever."""
    app = serve(workers=2).start()
    file_id = app.upload_ok(corpus / "odt/OpenDocument-v1.2-os-part1.odt")["id"]
    result: dict[str, requests.Response] = {}
    worker = threading.Thread(target=lambda: result.update(r=app.convert(file_id, "pdf")))
    worker.start()
    first = _busy_soffice(app)
    os.kill(first, signal.SIGKILL)
    second = _busy_soffice(app)
    assert second != first
    os.kill(second, signal.SIGKILL)
    worker.join(timeout=120)
    assert result["r"].status_code == 422
    assert "two engine instances" in error_of(result["r"])["message"]
    _wait(lambda: _ready(app), 30, "pool back after two crashes")


def test_idle_instance_killed_is_restarted(serve: type[ServedApp], corpus: Path) -> None:
    """The supervisor notices a dead idle instance and brings the pool back to strength."""
    app = serve(workers=2).start()
    victim = app.soffice_pids()[0]
    os.kill(victim, signal.SIGKILL)
    _wait(lambda: victim not in app.soffice_pids() and len(app.soffice_pids()) == 2
          and _ready(app), 30, "replacement instance")
    assert app.convert(app.upload_ok(corpus / "docx/SampleDoc.docx")["id"], "pdf").ok


def test_recycling_is_graceful(serve: type[ServedApp], corpus: Path) -> None:
    """CONVERTER_RECYCLE_AFTER=3: instances restart under load and no request fails."""
    app = serve(workers=2, env={"CONVERTER_RECYCLE_AFTER": "3"}).start()
    uploads = uploads_by_new_owners(app, corpus / "docx/SampleDoc.docx", "recycling", 16)
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda up: app.convert(up[0], "txt", key=up[1]), uploads))
    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses]
    assert app.metrics()['converter_engine_restarts_total{reason="recycle"}'] >= 3


def test_memory_limit_recycles(serve: type[ServedApp], corpus: Path) -> None:
    """CONVERTER_MAX_RSS_MB below LibreOffice's footprint: recycled after use, still serving."""
    app = serve(workers=2, env={"CONVERTER_MAX_RSS_MB": "64"}).start()
    for _ in range(3):
        assert app.convert(app.upload_ok(corpus / "docx/SampleDoc.docx")["id"], "pdf").ok
    _wait(lambda: app.metrics().get('converter_engine_restarts_total{reason="memory"}', 0) >= 1,
          30, "a memory recycle")


def test_full_queue_answers_503_with_retry_after(serve: type[ServedApp], corpus: Path) -> None:
    """One instance, a queue of 1: the third simultaneous conversion is turned away."""
    app = serve(workers=1, env={"CONVERTER_QUEUE_SIZE": "1"}).start()
    uploads = uploads_by_new_owners(app, corpus / "doc/Bug50955.doc", "queue", 5)
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda up: app.convert(up[0], "pdf", key=up[1]), uploads))
    statuses = sorted(r.status_code for r in responses)
    assert 503 in statuses and 200 in statuses, statuses
    assert set(statuses) <= {200, 503}
    for response in responses:
        if response.status_code == 503:
            error = error_of(response)
            assert error["type"] == "overloaded" and error["retryable"] is True
            assert int(response.headers["Retry-After"]) >= 1


def test_scratch_directories_are_always_removed(serve: type[ServedApp], corpus: Path) -> None:
    """After good, bad and timed-out conversions, no scratch directory is left."""
    app = serve(workers=1, env={"CONVERTER_CONVERSION_TIMEOUT": "3"}).start()
    assert app.convert(app.upload_ok(corpus / "docx/SampleDoc.docx")["id"], "pdf").ok
    bad = app.convert(app.upload_ok(corpus / "bad/xlsx-corrupted.xlsx")["id"], "pdf")
    assert bad.status_code == 422
    slow = app.convert(app.upload_ok(corpus / "odt/OpenDocument-v1.2-os-part1.odt")["id"],
                       "pdf")
    assert slow.status_code == 502
    scratch = app.data_dir / "engine" / "scratch"
    assert scratch.is_dir() and list(scratch.iterdir()) == []


def test_sigterm_leaves_no_libreoffice_behind(serve: type[ServedApp]) -> None:
    """converter serve stops cleanly on SIGTERM and takes its LibreOffice processes along."""
    app = serve(workers=2).start()
    pids = app.soffice_pids()
    assert len(pids) == 2
    assert app.stop(signal.SIGTERM) == 0
    _wait(lambda: not app.soffice_pids(), 10, "LibreOffice to exit")


def test_sigkill_of_the_service_leaves_no_libreoffice_behind(serve: type[ServedApp]) -> None:
    """Even kill -9 of the whole service: the kernel takes LibreOffice down with it."""
    app = serve(workers=2).start()
    assert app.proc is not None
    os.killpg(app.proc.pid, signal.SIGKILL)
    app.proc.wait(timeout=10)
    _wait(lambda: not app.soffice_pids(), 10, "LibreOffice to die with its parent")
