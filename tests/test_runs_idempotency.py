"""Idempotency-Key on POST /v1/runs and POST /v1/runs/{id}/export, over a real served app."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, insert, select

from converter.db.engine import utcnow
from converter.db.schema import idempotency_keys, metadata
from converter.errors import IdempotencyKeyInUse
from converter.service.idempotency import IdempotencyStore, request_hash
from tests.support.served import ServedApp, error_of
from tests.test_runs import create_run, wait_run


@pytest.fixture(scope="module")
def keys(service: ServedApp) -> dict[str, str]:
    """Two users of one workspace (each key has its own idempotency namespace)."""
    return {"u1": service.create_key("idem", "u1"), "u2": service.create_key("idem", "u2")}


@pytest.fixture
def shared_file(service: ServedApp, corpus: Path, keys: dict[str, str]) -> str:
    """A fresh workspace-scoped upload, so each test counts its own runs."""
    return str(service.upload_ok(corpus / "odt/HelloWorld.odt", key=keys["u1"],
                                 scope="workspace")["id"])


def runs_of(service: ServedApp, key: str, file_id: str) -> list[str]:
    """Ids of the runs of one file."""
    response = service.request("GET", f"/v1/runs?limit=100&file_id={file_id}", key=key)
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["data"]]


def test_same_key_same_body_replays_the_first_response(service: ServedApp,
                                                       keys: dict[str, str],
                                                       shared_file: str) -> None:
    """The retry gets the same run id and 202; the body is compared as JSON, not as text."""
    body = {"file_id": shared_file, "format": "pdf", "options": {"page_range": "1"}}
    first = create_run(service, body, key=keys["u1"], idempotency_key="order-1")
    assert first.status_code == 202, first.text
    assert "Idempotent-Replayed" not in first.headers
    reordered = {"options": {"page_range": "1"}, "format": "pdf", "file_id": shared_file}
    for again in (body, reordered):
        replay = create_run(service, again, key=keys["u1"], idempotency_key="order-1")
        assert replay.status_code == 202
        assert replay.json() == first.json()
        assert replay.headers["Idempotent-Replayed"] == "true"
    assert wait_run(service, first.json()["run_id"], key=keys["u1"])["status"] == "completed"
    # Still replayed once the run has completed: the response is the original one.
    late = create_run(service, body, key=keys["u1"], idempotency_key="order-1")
    assert late.json() == first.json()
    assert runs_of(service, keys["u1"], shared_file) == [first.json()["run_id"]]


def test_same_key_different_body_is_409(service: ServedApp, keys: dict[str, str],
                                        shared_file: str) -> None:
    """Reusing a key for another request is refused and creates nothing."""
    first = create_run(service, {"file_id": shared_file, "format": "txt"}, key=keys["u1"],
                       idempotency_key="order-2")
    assert first.status_code == 202
    other = create_run(service, {"file_id": shared_file, "format": "html"}, key=keys["u1"],
                       idempotency_key="order-2")
    assert other.status_code == 409
    error = error_of(other)
    assert error["type"] == "idempotency_key_in_use" and error["field"] == "Idempotency-Key"
    assert runs_of(service, keys["u1"], shared_file) == [first.json()["run_id"]]


def test_keys_are_scoped_to_the_api_key(service: ServedApp, keys: dict[str, str],
                                        shared_file: str) -> None:
    """Another API key with the same Idempotency-Key and body makes its own run."""
    body = {"file_id": shared_file, "format": "txt"}
    one = create_run(service, body, key=keys["u1"], idempotency_key="shared-name")
    two = create_run(service, body, key=keys["u2"], idempotency_key="shared-name")
    assert one.status_code == two.status_code == 202
    assert one.json()["run_id"] != two.json()["run_id"]
    assert len(runs_of(service, keys["u1"], shared_file)) == 2


def test_failed_validation_does_not_use_up_the_key(service: ServedApp, keys: dict[str, str],
                                                   shared_file: str) -> None:
    """Only accepted requests are remembered; a fixed retry of a 400 goes through."""
    bad = create_run(service, {"file_id": shared_file, "format": "xlsx"}, key=keys["u1"],
                     idempotency_key="fix-me")
    assert bad.status_code == 400
    good = create_run(service, {"file_id": shared_file, "format": "pdf"}, key=keys["u1"],
                      idempotency_key="fix-me")
    assert good.status_code == 202, good.text
    for header in ("", "x" * 256, "caf\u00e9"):
        response = service.request("POST", "/v1/runs", key=keys["u1"],
                                   json={"file_id": shared_file, "format": "pdf"},
                                   headers={"Idempotency-Key": header})
        assert response.status_code == 400, header
        assert error_of(response)["field"] == "Idempotency-Key"


def test_concurrent_requests_with_one_key_create_one_run(service: ServedApp,
                                                         keys: dict[str, str],
                                                         shared_file: str) -> None:
    """Many simultaneous retries: every answer names the same single run."""
    body = {"file_id": shared_file, "format": "docx"}
    barrier = threading.Barrier(12)
    answers: list[requests.Response] = []
    lock = threading.Lock()

    def send() -> None:
        session = requests.Session()
        barrier.wait()
        response = session.post(f"{service.url}/v1/runs", json=body, timeout=60,
                                headers={"X-API-Key": keys["u1"], "Idempotency-Key": "burst"})
        with lock:
            answers.append(response)

    threads = [threading.Thread(target=send) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in answers] == [202] * 12, [r.text for r in answers]
    assert len({r.json()["run_id"] for r in answers}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in answers) == 1
    assert runs_of(service, keys["u1"], shared_file) == [answers[0].json()["run_id"]]


def test_export_honours_idempotency_keys(service: ServedApp, keys: dict[str, str],
                                         shared_file: str) -> None:
    """A repeated export replays its first answer; the key cannot be reused elsewhere."""
    created = create_run(service, {"file_id": shared_file, "format": "docx"}, key=keys["u1"])
    run_id = created.json()["run_id"]
    assert wait_run(service, run_id, key=keys["u1"])["status"] == "completed"
    path = f"/v1/runs/{run_id}/export"
    first = service.request("POST", path, key=keys["u1"], json={"format": "pdf"},
                            headers={"Idempotency-Key": "export-1"})
    assert first.status_code == 200, first.text
    replay = service.request("POST", path, key=keys["u1"], json={"format": "pdf"},
                             headers={"Idempotency-Key": "export-1"})
    assert replay.status_code == 200 and replay.json() == first.json()
    assert replay.headers["Idempotent-Replayed"] == "true"
    other = service.request("POST", path, key=keys["u1"], json={"format": "txt"},
                            headers={"Idempotency-Key": "export-1"})
    assert other.status_code == 409 and error_of(other)["type"] == "idempotency_key_in_use"
    elsewhere = create_run(service, {"file_id": shared_file, "format": "pdf"}, key=keys["u1"],
                           idempotency_key="export-1")
    assert elsewhere.status_code == 409


def test_keys_expire_after_24_hours(service: ServedApp, keys: dict[str, str],
                                    shared_file: str) -> None:
    """A key older than 24 hours is forgotten: the same request then makes a new run."""
    body = {"file_id": shared_file, "format": "txt"}
    first = create_run(service, body, key=keys["u2"], idempotency_key="yesterday")
    assert first.status_code == 202
    # Age the stored key in the served app's own database, as a day passing would.
    with sqlite3.connect(service.data_dir / "converter.db", timeout=30) as db:
        aged = db.execute("UPDATE idempotency_keys SET created_at = ? WHERE key = ?",
                          ((datetime.now(UTC) - timedelta(hours=25)).strftime(
                              "%Y-%m-%d %H:%M:%S.%f"), "yesterday")).rowcount
    assert aged == 1
    second = create_run(service, body, key=keys["u2"], idempotency_key="yesterday")
    assert second.status_code == 202 and "Idempotent-Replayed" not in second.headers
    assert second.json()["run_id"] != first.json()["run_id"]
    replay = create_run(service, body, key=keys["u2"], idempotency_key="yesterday")
    assert replay.json() == second.json()


def test_store_hashes_purges_and_refuses(tmp_path: Path) -> None:
    """The store itself: canonical hashing, 409 on a different hash, purge of old rows."""
    db = create_engine(f"sqlite:///{tmp_path / 'idem.db'}")
    metadata.create_all(db)
    store = IdempotencyStore(db)
    digest = request_hash("POST", "/v1/runs", {"b": 1, "a": [1, 2]})
    assert digest == request_hash("post", "/v1/runs", {"a": [1, 2], "b": 1})
    assert digest != request_hash("POST", "/v1/runs/x/export", {"b": 1, "a": [1, 2]})
    with db.begin() as conn:
        store.remember(conn, "key_a", "k1", digest, 202, {"run_id": "run_1"})
        conn.execute(insert(idempotency_keys).values(
            api_key_id="key_a", key="old", request_hash=digest, status_code=202,
            response="{}", created_at=utcnow() - timedelta(hours=30)))
    replay = store.peek("key_a", "k1", digest)
    assert replay is not None and replay.body == {"run_id": "run_1"}
    assert store.peek("key_b", "k1", digest) is None
    with pytest.raises(IdempotencyKeyInUse):
        store.peek("key_a", "k1", "0" * 64)
    assert store.purge_expired(force=True) == 1
    with db.connect() as conn:
        assert conn.execute(select(idempotency_keys.c.key)).scalars().all() == ["k1"]
    db.dispose()
