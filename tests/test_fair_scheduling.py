"""Fair scheduling of the engine queue over served apps with real LibreOffice.

Assertions are on completion order and counts, never on wall-clock thresholds: each
test first waits until the engine reports the backlog it needs (converter_engine_waiting),
then checks who finished before whom.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from converter.db.engine import connect
from converter.service.keys import KeyStore
from tests.support.served import ServedApp, error_of
from tests.test_runs import create_ok, wait_run

pytestmark = pytest.mark.engine

HEAVY = "doc/Bug50955.doc"      # 603 KB, 92 pages: ~1.5 s alone, estimated heavy
HEAVIER = "odt/excelfileformat.odt"  # 356 KB, 247 pages: ~4 s
SMALL = "docx/SampleDoc.docx"   # 12 KB, two pages: ~0.1 s


def _wait_waiting(app: ServedApp, at_least: int, timeout: float = 120) -> None:
    """Poll /metrics until at least that many conversions wait for an instance."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.metrics().get("converter_engine_waiting", 0) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError(f"never {at_least} conversions waiting:\n{app.log()[-2000:]}")


class Finishes:
    """Records the order in which conversions complete."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self._lock = threading.Lock()

    def convert(self, app: ServedApp, label: str, file_id: str, key: str) -> int:
        """Convert to PDF, note label when it is done; return the status code."""
        status = app.convert(file_id, "pdf", key=key).status_code
        with self._lock:
            self.order.append(label)
        return status


def _uploads(app: ServedApp, path: Path, workspace: str, count: int) -> list[tuple[str, str]]:
    """count uploads of one document as (file id, key), each by a user of its own.

    Identical bytes of one owner convert once (the content cache and single-flight);
    these tests need each upload to be work for the engine, so each has its own owner.
    """
    store = KeyStore(connect(f"sqlite:///{app.data_dir / 'converter.db'}"))
    try:
        keys = [store.create(workspace, f"user-{secrets.token_hex(4)}")[1]
                for _ in range(count)]
    finally:
        store.db.dispose()
    return [(app.upload_ok(path, key=k)["id"], k) for k in keys]


def _flood_then_neighbour(app: ServedApp, corpus: Path, flood: int = 5,
                          neighbours: int = 2) -> list[str]:
    """A queues flood heavy conversions on one instance; then B sends small ones."""
    heavy = _uploads(app, corpus / HEAVY, "ws-a", flood)
    small = _uploads(app, corpus / SMALL, "ws-b", neighbours)
    finishes = Finishes()
    with ThreadPoolExecutor(flood + neighbours) as pool:
        futures: list[Future[int]] = [pool.submit(finishes.convert, app, "A", fid, key)
                                      for fid, key in heavy]
        _wait_waiting(app, flood - 1)  # one converting, the rest queued
        futures += [pool.submit(finishes.convert, app, "B", fid, key) for fid, key in small]
        assert [f.result() for f in futures] == [200] * (flood + neighbours)
    return finishes.order


def test_small_conversions_of_another_workspace_overtake_a_backlog(
        serve: type[ServedApp], corpus: Path) -> None:
    """fair: B's conversions finish while A still has most of its backlog queued."""
    app = serve(workers=1).start()
    order = _flood_then_neighbour(app, corpus)
    # A's first was converting when B arrived; at most one more of A's may go first
    # (the one already handed the instance as B's requests came in).
    assert order.index("B") <= 2 and order[:4].count("B") == 2, order
    assert order[-1] == "A", order


def test_fifo_makes_the_neighbour_wait_for_the_whole_backlog(
        serve: type[ServedApp], corpus: Path) -> None:
    """The reference: CONVERTER_ENGINE_SCHEDULER=fifo serves A's backlog first."""
    app = serve(workers=1, env={"CONVERTER_ENGINE_SCHEDULER": "fifo"}).start()
    order = _flood_then_neighbour(app, corpus)
    assert order == ["A"] * 5 + ["B"] * 2, order


def test_sync_conversion_goes_ahead_of_queued_runs(serve: type[ServedApp],
                                                   corpus: Path) -> None:
    """Two runs queue behind a busy instance; a later HTTP conversion is served first."""
    app = serve(workers=1).start()
    busy_id = app.upload_ok(corpus / HEAVIER)["id"]
    run_files = _uploads(app, corpus / HEAVY, "default", 2)
    small_id = app.upload_ok(corpus / SMALL)["id"]
    with ThreadPoolExecutor(2) as pool:
        busy = pool.submit(app.convert, busy_id, "pdf")
        _wait_busy(app)
        runs = [(create_ok(app, fid, "pdf", key=key), key) for fid, key in run_files]
        _wait_waiting(app, 2)  # both runs' conversions queued behind the busy instance
        sync = app.convert(small_id, "pdf")
        assert sync.status_code == 200, sync.text
        states = [app.request("GET", f"/v1/runs/{r}", key=key).json()["status"]
                  for r, key in runs]
        assert busy.result().status_code == 200
    # Served ahead of both runs, although they were queued first.
    assert states == ["running", "running"], states
    finished = [wait_run(app, r, key=key) for r, key in runs]
    assert [r["status"] for r in finished] == ["completed", "completed"], finished


def _wait_busy(app: ServedApp, instances: int = 1, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while app.metrics().get("converter_engine_busy", 0) < instances:
        assert time.monotonic() < deadline, "the engine never became busy"
        time.sleep(0.05)


def test_flooding_workspace_gets_503_while_others_keep_flowing(
        serve: type[ServedApp], corpus: Path) -> None:
    """CONVERTER_QUEUE_PER_WORKSPACE=2: A's fourth is refused with Retry-After; B's passes."""
    app = serve(workers=1, env={"CONVERTER_QUEUE_PER_WORKSPACE": "2"}).start()
    key_a = app.create_key("ws-a", "alice")
    key_b = app.create_key("ws-b", "bob")
    first = app.upload_ok(corpus / HEAVIER, key=key_a)["id"]
    queued = _uploads(app, corpus / HEAVY, "ws-a", 2)
    extra = app.upload_ok(corpus / SMALL, key=key_a)["id"]
    neighbour = app.upload_ok(corpus / SMALL, key=key_b)["id"]
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(app.convert, first, "pdf", key_a)
        _wait_busy(app)
        waiting = [pool.submit(app.convert, fid, "pdf", key) for fid, key in queued]
        _wait_waiting(app, 2)
        refused = app.convert(extra, "pdf", key=key_a)
        accepted = app.convert(neighbour, "pdf", key=key_b)
        statuses = [running.result().status_code, *(w.result().status_code for w in waiting)]
    assert refused.status_code == 503, refused.text
    error = error_of(refused)
    assert error["type"] == "overloaded" and error["retryable"] is True
    assert "CONVERTER_QUEUE_PER_WORKSPACE" in error["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert accepted.status_code == 200, accepted.text
    assert statuses == [200, 200, 200]
    # Once A's queue drained, A is served again.
    assert app.convert(extra, "pdf", key=key_a).status_code == 200


@pytest.mark.parametrize("scheduler", ["fair", "fifo"])
def test_heavy_documents_never_take_the_last_idle_instance(
        serve: type[ServedApp], corpus: Path, scheduler: str) -> None:
    """fair: A's heavy backlog leaves the second instance idle; B's small one takes it.

    No other workspace has asked before A's backlog, and B finishes first. Under fifo (the
    plain reference) A takes both instances and B waits for one of A's to finish.
    """
    fair = scheduler == "fair"
    app = serve(workers=2, env={"CONVERTER_ENGINE_SCHEDULER": scheduler}).start()
    heavy = _uploads(app, corpus / HEAVIER, "ws-a", 3)
    small = _uploads(app, corpus / SMALL, "ws-b", 1)
    finishes = Finishes()
    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(finishes.convert, app, "A", fid, key) for fid, key in heavy]
        _wait_busy(app)
        _wait_waiting(app, 2 if fair else 1)
        if not fair:
            _wait_busy(app, 2)
        # Sampled while A's backlog waits: under fair the second instance stays idle.
        held = app.metrics()
        futures.append(pool.submit(finishes.convert, app, "B", *small[0]))
        assert [f.result() for f in futures] == [200] * 4
    if fair:
        assert held["converter_engine_busy"] == 1, held
        assert finishes.order[0] == "B", finishes.order
    else:
        assert held["converter_engine_busy"] == 2, held
        assert finishes.order[0] == "A", finishes.order
    assert app.metrics()["converter_engine_busy_max"] == 2


def test_heavy_backlog_alone_uses_one_instance_in_turn(
        serve: type[ServedApp], corpus: Path) -> None:
    """fair, two instances, heavy work only: every conversion completes, one at a time.

    The idle instance is never handed to heavy work, and a held-back ticket is handed the
    busy one as soon as it is released (nothing waits for a timeout).
    """
    app = serve(workers=2).start()
    heavy = _uploads(app, corpus / HEAVY, "ws-a", 3)
    with ThreadPoolExecutor(3) as pool:
        statuses = [f.result().status_code
                    for f in [pool.submit(app.convert, fid, "pdf", key) for fid, key in heavy]]
    assert statuses == [200] * 3
    metrics = app.metrics()
    assert metrics["converter_engine_busy_max"] == 1, metrics
    assert metrics["converter_engine_waiting"] == 0, metrics


def test_a_pool_of_one_runs_heavy_work(serve: type[ServedApp], corpus: Path) -> None:
    """CONVERTER_WORKERS=1: no instance to spare, so a heavy document takes the only one."""
    app = serve(workers=1).start()
    file_id = app.upload_ok(corpus / HEAVY)["id"]
    assert app.convert(file_id, "pdf").status_code == 200
    assert app.metrics()["converter_engine_busy_max"] == 1


def test_scheduler_setting_is_validated(serve: type[ServedApp]) -> None:
    """An unknown CONVERTER_ENGINE_SCHEDULER stops the service with a message naming it."""
    app = serve(env={"CONVERTER_ENGINE_SCHEDULER": "random"})
    with pytest.raises(RuntimeError) as failed:
        app.start(timeout=30)
    assert "CONVERTER_ENGINE_SCHEDULER" in str(failed.value)
