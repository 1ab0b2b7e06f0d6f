"""Runs on PostgreSQL: SKIP LOCKED claims, lease expiry, concurrent idempotent creates, and a
served app with real LibreOffice. Each test module run uses a schema of its own."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import create_engine, delete, insert, select, text

from converter import config as config_module
from converter.db.engine import connect, next_seq, utcnow
from converter.db.schema import files, runs
from converter.service.principal import Principal
from converter.service.run_worker import RunWorker, claim_next, new_token, renew
from converter.wiring import build
from tests.support.served import ServedApp, error_of
from tests.test_runs import create_run, fetch, pdf_pages, wait_run
from tests.test_runs_recovery import FakeEngine

pytestmark = pytest.mark.postgres

BASE_URL = os.environ.get("CONVERTER_TEST_POSTGRES_URL",
                          "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="module")
def schemas() -> Iterator[Callable[[], str]]:
    """Makes fresh schemas in the test database (dropped afterwards); returns their URLs."""
    admin = create_engine(sqlalchemy.make_url(BASE_URL).set(drivername="postgresql+psycopg"))
    made: list[str] = []

    def make() -> str:
        schema = "runs_test_" + secrets.token_hex(4)
        try:
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        except sqlalchemy.exc.OperationalError as exc:
            pytest.fail(f"PostgreSQL is needed for these tests and is unreachable at "
                        f"{BASE_URL} (set CONVERTER_TEST_POSTGRES_URL): {exc.orig}")
        made.append(schema)
        # search_path in the URL makes every connection of the service use this schema.
        url = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    yield make
    with admin.begin() as conn:
        for schema in made:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="module")
def pg_url(schemas: Callable[[], str]) -> str:
    """One schema shared by the service-layer tests of this module."""
    return schemas()


@pytest.fixture(scope="module")
def db(pg_url: str) -> Iterator[sqlalchemy.Engine]:
    """The engine the service would use, schema created."""
    engine = connect(pg_url)
    yield engine
    engine.dispose()


def _pending(db: sqlalchemy.Engine, count: int) -> list[str]:
    file_id = "file_" + secrets.token_hex(8)
    now = utcnow()
    ids = [f"run_{secrets.token_hex(8)}" for _ in range(count)]
    with db.begin() as conn:
        conn.execute(insert(files).values(
            id=file_id, workspace="w", owner="u", scope="personal", filename="a.odt",
            format="odt", size_bytes=1, sha256="0" * 64, storage_key=f"originals/{file_id}",
            created_at=now, seq=next_seq()))
        conn.execute(insert(runs), [dict(
            id=run_id, api_key_id="key_x", workspace="w", owner="u", scope="personal",
            file_id=file_id, source_id=file_id, format="pdf", options="{}", status="pending",
            attempts=0, created_at=now, seq=next_seq()) for run_id in ids])
    return ids


def _forget(db: sqlalchemy.Engine, ids: list[str]) -> None:
    # Leftover leased rows would be reclaimed by the served app's workers later on.
    with db.begin() as conn:
        conn.execute(delete(runs).where(runs.c.id.in_(ids)))


def test_concurrent_claimers_never_share_a_run(db: sqlalchemy.Engine) -> None:
    """Four threads drain 60 runs: every run is claimed exactly once."""
    ids = _pending(db, 60)
    claimed: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(4)

    def drain() -> None:
        barrier.wait()
        while (claim := claim_next(db, new_token(), 30)) is not None:
            with lock:
                claimed.append(claim.run_id)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(ids)
    with db.connect() as conn:
        rows = conn.execute(select(runs.c.status, runs.c.attempts, runs.c.lease_owner)
                            .where(runs.c.id.in_(ids))).all()
    assert {(r.status, r.attempts) for r in rows} == {("running", 1)}
    assert len({r.lease_owner for r in rows}) == 60
    _forget(db, ids)


def test_expired_lease_is_reclaimed(db: sqlalchemy.Engine) -> None:
    """A renewed lease holds; one left to expire goes to the next claimer."""
    [run_id] = _pending(db, 1)
    first = claim_next(db, new_token(), 0.5)
    assert first is not None and first.run_id == run_id
    time.sleep(0.3)
    assert renew(db, [first.token], 0.5) == 1
    time.sleep(0.3)
    assert claim_next(db, new_token(), 0.5) is None
    time.sleep(0.6)
    second = claim_next(db, new_token(), 30)
    assert second is not None and second.run_id == run_id and second.attempts == 2
    assert renew(db, [first.token], 30) == 0
    _forget(db, [run_id])


def test_services_on_postgres(pg_url: str, tmp_path: Path, corpus: Path) -> None:
    """In-process services on PostgreSQL: concurrent same-key creates make one run, which runs."""
    engine = FakeEngine(tmp_path / "engine")
    cfg = config_module.load(environ={"CONVERTER_DATA_DIR": str(tmp_path / "data"),
                                      "CONVERTER_DATABASE_URL": pg_url,
                                      "CONVERTER_RUN_WORKERS": "2"})
    services = build(cfg, engine=engine)
    try:
        key_id, _raw = services.keys.create("pg", "u")
        who = Principal(key_id=key_id, workspace="pg", user_id="u")
        with (corpus / "odt/HelloWorld.odt").open("rb") as fh:
            record = services.files.upload(who, "HelloWorld.odt", fh, None)
        body = {"file_id": record.id, "format": "pdf"}
        answers: list[Any] = []
        barrier = threading.Barrier(8)

        def send() -> None:
            barrier.wait()
            answers.append(services.runs.create(who, body, "same", "http://test"))

        threads = [threading.Thread(target=send) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(answers) == 8 and {a.status_code for a in answers} == {202}
        assert len({a.body["run_id"] for a in answers}) == 1
        assert sum(not a.replayed for a in answers) == 1
        page, _cursor = services.runs.list(who, None, record.id, 100, None, "http://test")
        assert [r["id"] for r in page] == [answers[0].body["run_id"]]
        deadline = time.monotonic() + 30
        while services.runs.get(who, page[0]["id"], "http://test")["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        worker: RunWorker = services.extras["run_worker"]
        assert worker.active() == []
    finally:
        services.close()


def test_served_app_lifecycle_on_postgres(serve: type[ServedApp], schemas: Callable[[], str],
                                          corpus: Path) -> None:
    """The whole API on PostgreSQL with real LibreOffice: create, replay, poll, export, list."""
    app = serve(env={"CONVERTER_DATABASE_URL": schemas()}, workers=1).start()
    file_id = app.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    body = {"file_id": file_id, "format": "odt"}
    created = create_run(app, body, idempotency_key="pg-1")
    assert created.status_code == 202, created.text
    replay = create_run(app, body, idempotency_key="pg-1")
    assert replay.json() == created.json() and replay.headers["Idempotent-Replayed"] == "true"
    conflict = create_run(app, {**body, "format": "pdf"}, idempotency_key="pg-1")
    assert error_of(conflict)["type"] == "idempotency_key_in_use"
    run = wait_run(app, created.json()["run_id"])
    assert run["status"] == "completed", run
    assert fetch(run["download_url"])[:2] == b"PK"
    exported = app.request("POST", f"/v1/runs/{run['id']}/export", json={"format": "pdf"})
    assert exported.status_code == 200, exported.text
    assert pdf_pages(fetch(exported.json()["download_url"])) >= 1
    listed = app.request("GET", "/v1/runs?status=completed").json()
    assert [r["id"] for r in listed["data"]] == [run["id"]]
