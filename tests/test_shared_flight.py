"""Single-flight across replicas: two served apps sharing a database (PostgreSQL, or one SQLite
file on this host) and an S3 bucket (moto's server) convert identical requests once."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import Engine, func, insert, select

from converter.db.engine import connect, utcnow
from converter.db.schema import artifacts, conversion_claims
from converter.service.conversion import cache_key
from tests.support.moto import BUCKET, CREDENTIALS
from tests.support.postgres import fresh_database
from tests.support.served import ServedApp, error_of

pytestmark = [pytest.mark.s3, pytest.mark.engine]

SLOW_DOC = "doc/Bug50955.doc"  # about 1.5 s to convert: requests overlap for sure
BROKEN_DOC = "bad/xlsx-corrupted.xlsx"  # LibreOffice cannot load it: 422


class Replicas:
    """Two replicas and their shared database."""

    def __init__(self, first: ServedApp, second: ServedApp, db: Engine) -> None:
        self.apps = (first, second)
        self.db = db

    def counter(self, name: str) -> float:
        """A counter added up over both replicas."""
        return sum(app.metrics().get(name, 0.0) for app in self.apps)

    def engine_calls(self) -> float:
        """LibreOffice conversions started by both replicas together."""
        return self.counter("converter_engine_calls_total")


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres), "sqlite"])
def replicas(request: pytest.FixtureRequest, tmp_path: Path,
             moto_endpoint: str) -> Iterator[Replicas]:
    """Two `converter serve` processes with one database, one bucket and one secret."""
    if request.param == "postgres":
        with fresh_database() as url:
            yield from _replicas(tmp_path, moto_endpoint, url)
    else:
        # Two processes on one SQLite file (a data directory each: one engine per directory).
        yield from _replicas(tmp_path, moto_endpoint, f"sqlite:///{tmp_path / 'shared.db'}")


@pytest.fixture
def short_lease_replicas(tmp_path: Path, moto_endpoint: str) -> Iterator[Replicas]:
    """Replicas on PostgreSQL whose claims lapse 2 s after their last heartbeat."""
    with fresh_database() as url:
        yield from _replicas(tmp_path, moto_endpoint, url,
                             {"CONVERTER_FLIGHT_LEASE_SECONDS": "2"})


def _replicas(tmp_path: Path, moto_endpoint: str, database_url: str,
              extra: dict[str, str] | None = None) -> Iterator[Replicas]:
    env = {
        "CONVERTER_DATABASE_URL": database_url,
        "CONVERTER_STORAGE": "s3",
        "CONVERTER_S3_BUCKET": BUCKET,
        "CONVERTER_S3_ENDPOINT_URL": moto_endpoint,
        "CONVERTER_S3_PREFIX": f"flight-{secrets.token_hex(4)}/",
        "CONVERTER_SECRET_KEY": secrets.token_hex(32),
        "CONVERTER_RUN_WORKERS": "0",
        "CONVERTER_CLEANUP_INTERVAL_SECONDS": "0",
        **CREDENTIALS,
        **(extra or {}),
    }
    first = ServedApp(tmp_path / "a", env=env, workers=1)
    second = ServedApp(tmp_path / "b", env=env, workers=1)
    second.key = first.key  # created once, by the replica that starts first
    second.http.headers["X-API-Key"] = first.key
    db = None
    try:
        first.start()
        second.start()
        db = connect(database_url)
        yield Replicas(first, second, db)
    finally:
        second.stop()
        first.stop()
        if db is not None:
            db.dispose()


def _split(replicas: Replicas, file_id: str, count: int) -> list[requests.Response]:
    """count identical converts at once, alternating between the replicas."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: replicas.apps[i % 2].convert(file_id, "pdf"),
                             range(count)))


def test_eight_identical_converts_on_two_replicas_make_one_engine_call(
        replicas: Replicas, corpus: Path) -> None:
    """8 at once, split between the replicas: 1 engine call in all, 1 artifact for all 8."""
    file_id = replicas.apps[0].upload_ok(corpus / SLOW_DOC)["id"]
    assert replicas.engine_calls() == 0
    responses = _split(replicas, file_id, 8)
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses]
    assert replicas.engine_calls() == 1, [
        {k: v for k, v in app.metrics().items() if "flight" in k or "engine_calls" in k}
        for app in replicas.apps]
    bodies = {requests.get(r.json()["download_url"], timeout=60).content for r in responses}
    assert len(bodies) == 1 and next(iter(bodies)).startswith(b"%PDF-")
    with replicas.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(artifacts)
                            .where(artifacts.c.file_id == file_id)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(conversion_claims)).scalar_one() == 0
    assert replicas.counter('converter_flight_claims_total{role="lead"}') == 1
    assert replicas.apps[1].convert(file_id, "pdf").json()["cached"] is True


def test_a_failure_is_shared_with_the_waiters(replicas: Replicas, corpus: Path) -> None:
    """4 converts at once of a document LibreOffice cannot open: 1 engine call, 4 equal 422s."""
    file_id = replicas.apps[0].upload_ok(corpus / BROKEN_DOC)["id"]
    responses = _split(replicas, file_id, 4)
    errors = [(r.status_code, error_of(r)["type"], error_of(r)["message"]) for r in responses]
    assert len(set(errors)) == 1, errors
    assert errors[0][:2] == (422, "unprocessable_document")
    assert replicas.engine_calls() == 1


def _claim_key(file: dict[str, str]) -> str:
    """The claim key of the file's default PDF: its owner's content key (bootstrap key's)."""
    owner = "user:default:admin" if file["scope"] == "personal" else "workspace:default"
    return cache_key(f"files:{owner}:sha256:{file['sha256']}", "pdf", {})


def _plant_claim(replicas: Replicas, key: str, expires_in: float) -> None:
    """A running claim of a leader that is gone: nobody will renew it."""
    now = utcnow()
    with replicas.db.begin() as conn:
        conn.execute(insert(conversion_claims).values(
            cache_key=key, owner="0123456789abcdef@gone:1", state="running",
            expires_at=now + timedelta(seconds=expires_in), created_at=now))


@pytest.mark.postgres
@pytest.mark.parametrize("replicas", ["postgres"], indirect=True)
def test_a_dead_leaders_claim_is_taken_over(replicas: Replicas, corpus: Path) -> None:
    """Lapsed already: taken at once. Still live but unrenewed: taken once it lapses."""
    first, second = replicas.apps
    lapsed = first.upload_ok(corpus / "odt/HelloWorld.odt")
    assert hashlib.sha256((corpus / "odt/HelloWorld.odt").read_bytes()).hexdigest() == \
        lapsed["sha256"]
    _plant_claim(replicas, _claim_key(lapsed), expires_in=-30)
    response = first.convert(lapsed["id"], "pdf")
    assert response.status_code == 200, response.text
    assert first.metrics().get('converter_flight_claims_total{role="takeover"}') == 1

    live = second.upload_ok(corpus / "docx/SampleDoc.docx")
    lease = 3.0
    _plant_claim(replicas, _claim_key(live), expires_in=lease)
    planted = time.monotonic()
    response = second.convert(live["id"], "pdf")
    assert response.status_code == 200, response.text
    # It cannot have been taken before the planted lease ran out.
    assert time.monotonic() - planted >= lease - 0.5
    got = second.metrics()
    assert got.get('converter_flight_claims_total{role="wait"}') == 1
    assert got.get('converter_flight_claims_total{role="takeover"}') == 1
    assert replicas.engine_calls() == 2
    with replicas.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(conversion_claims)).scalar_one() == 0


@pytest.mark.postgres
def test_a_replica_frozen_mid_conversion_is_taken_over(short_lease_replicas: Replicas,
                                                       corpus: Path) -> None:
    """SIGSTOP the leading replica: the other waits out its lease, converts, and answers;
    resumed, the first answers too, and both agree on one artifact."""
    first, second = short_lease_replicas.apps
    assert first.proc is not None
    file_id = first.upload_ok(corpus / SLOW_DOC)["id"]
    with ThreadPoolExecutor(1) as pool:
        leading = pool.submit(first.convert, file_id, "pdf")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with short_lease_replicas.db.connect() as conn:
                if conn.execute(select(conversion_claims.c.owner)).first() is not None:
                    break
            time.sleep(0.01)
        os.killpg(first.proc.pid, signal.SIGSTOP)  # its heartbeat stops with it
        try:
            with short_lease_replicas.db.connect() as conn:
                assert conn.execute(select(func.count()).select_from(conversion_claims)
                                    ).scalar_one() == 1, "the first replica finished already"
            taken = second.convert(file_id, "pdf")
            assert taken.status_code == 200, taken.text
            got = second.metrics()
            assert got.get('converter_flight_claims_total{role="takeover"}') == 1
            assert got["converter_engine_calls_total"] == 1
        finally:
            os.killpg(first.proc.pid, signal.SIGCONT)
        resumed = leading.result(timeout=300)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["size_bytes"] == taken.json()["size_bytes"]
    with short_lease_replicas.db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(artifacts)
                            .where(artifacts.c.file_id == file_id)).scalar_one() == 1
