"""Dependency outages under a running service: 503 while they last, recovery without a restart.

The database is a PostgreSQL cluster the test owns (never the shared one on 5432);
storage is moto's S3 server, killed and started again on the same port.
"""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.moto import BUCKET, CREDENTIALS, MotoServer, raw_client
from tests.support.pg_cluster import PgCluster, owned_cluster
from tests.support.served import ServedApp, error_of
from tests.test_runs import create_ok, wait_run

pytestmark = pytest.mark.engine

SLOW = "odt/OpenDocument-v1.2-os-part1.odt"  # about 13 s in LibreOffice
SAMPLE = "docx/SampleDoc.docx"


def _retryable(response: requests.Response, statuses: tuple[int, ...] = (503,)) -> None:
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    error = error_of(response)
    assert error["retryable"] is True, error
    if response.status_code == 503:
        assert int(response.headers["Retry-After"]) > 0


def _run_status(app: ServedApp, run_id: str) -> str:
    status: str = app.request("GET", f"/v1/runs/{run_id}", timeout=30).json()["status"]
    return status


@pytest.fixture
def cluster() -> Iterator[PgCluster]:
    """A PostgreSQL cluster of this test's own."""
    with owned_cluster() as owned:
        yield owned


@pytest.mark.postgres
def test_database_outage_answers_503_and_runs_survive_it(
        serve: type[ServedApp], cluster: PgCluster, corpus: Path) -> None:
    """PostgreSQL stopped mid-run: 503 unavailable + Retry-After; back: the run completes."""
    app = serve(env={"CONVERTER_DATABASE_URL": cluster.url}, workers=1).start()
    sample = app.upload_ok(corpus / SAMPLE)["id"]
    assert app.convert(sample, "pdf").status_code == 200
    slow = app.upload_ok(corpus / SLOW)["id"]
    in_flight = create_ok(app, slow, "pdf")
    wait_run(app, in_flight, until=("running",))

    cluster.stop()
    for response in (app.upload(corpus / SAMPLE), app.convert(sample, "odt"),
                     app.request("GET", "/v1/files"),
                     app.request("GET", f"/v1/runs/{in_flight}"),
                     app.request("POST", "/v1/runs", json={"file_id": sample, "format": "txt"})):
        _retryable(response)
        assert error_of(response)["type"] == "unavailable"
    ready = app.request("GET", "/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["database"] != "ok"
    # The run's conversion ends while the database is still down: its outcome waits.
    deadline = time.monotonic() + 180
    while "database unavailable while recording it" not in app.log():
        assert time.monotonic() < deadline, app.log()[-3000:]
        time.sleep(0.5)
    _retryable(app.convert(sample, "odt"))

    cluster.start()
    run = wait_run(app, in_flight)
    assert run["status"] == "completed", run
    assert requests.get(run["download_url"], timeout=30).content.startswith(b"%PDF-")
    assert app.request("GET", "/readyz").status_code == 200
    again = app.upload_ok(corpus / SAMPLE)["id"]
    assert app.convert(again, "odt").status_code == 200
    later = create_ok(app, sample, "txt")
    assert wait_run(app, later)["status"] == "completed"


def _rows(data_dir: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(files, artifacts) as (id, storage key), read from the service's SQLite database."""
    with sqlite3.connect(data_dir / "converter.db") as db:
        files = db.execute("SELECT id, storage_key FROM files ORDER BY id").fetchall()
        artifacts = db.execute("SELECT id, storage_key FROM artifacts ORDER BY id").fetchall()
    return files, artifacts


@pytest.mark.s3
def test_storage_outage_answers_retryably_and_writes_no_dangling_rows(
        serve: type[ServedApp], tmp_path: Path, corpus: Path) -> None:
    """moto killed: uploads and conversions answer 503/502 retryable, no row points at nothing."""
    moto = MotoServer(tmp_path / "moto.log")
    moto.start()
    prefix = f"outage-{secrets.token_hex(4)}/"
    try:
        app = serve(env={"CONVERTER_STORAGE": "s3", "CONVERTER_S3_BUCKET": BUCKET,
                         "CONVERTER_S3_ENDPOINT_URL": moto.url, "CONVERTER_S3_PREFIX": prefix,
                         "CONVERTER_RUN_MAX_ATTEMPTS": "10", "AWS_DEFAULT_REGION": "us-east-1",
                         **CREDENTIALS}, workers=1).start()
        sample = app.upload_ok(corpus / SAMPLE)["id"]
        assert app.convert(sample, "pdf").status_code == 200
        rows_before = _rows(app.data_dir)

        moto.kill()
        _retryable(app.upload(corpus / SAMPLE), (502, 503))
        _retryable(app.convert(sample, "odt"), (502, 503))
        in_flight = create_ok(app, sample, "txt")
        ready = app.request("GET", "/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["storage"] != "ok"
        assert _rows(app.data_dir) == rows_before, "a row was written for an unwritten object"
        assert _run_status(app, in_flight) in ("pending", "running")

        # moto comes back empty; a real S3 would still hold the original, so it is put back.
        moto.start()
        raw_client(moto.url).put_object(Bucket=BUCKET, Key=f"{prefix}originals/{sample}",
                                        Body=(corpus / SAMPLE).read_bytes())
        run = wait_run(app, in_flight, timeout=240)
        assert run["status"] == "completed", run
        assert requests.get(run["download_url"], timeout=30).status_code == 200
        fresh = app.upload_ok(corpus / SAMPLE)["id"]
        converted = app.convert(fresh, "pdf")
        assert converted.status_code == 200, converted.text
        assert requests.get(converted.json()["download_url"],
                            timeout=30).content.startswith(b"%PDF-")
        assert app.request("GET", "/readyz").status_code == 200
    finally:
        moto.stop()
