"""Claim rows under real concurrency: processes racing on SQLite and on PostgreSQL, lapsed
leases, shared failures, deadlines and an unreachable database."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.exc import OperationalError

from converter.db.engine import connect
from converter.db.outage import translate
from converter.db.schema import conversion_claims
from converter.errors import ConversionTimeout, Unavailable, UnprocessableDocument
from converter.service.claims import Claims, Taken
from converter.service.shared_flight import SharedFlight
from tests.support.postgres import fresh_database
from tests.support.served import free_port

PROCESSES = 6


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of either dialect."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'claims.db'}"
        connect(url).dispose()  # the schema, once, before processes race on it
        yield url
    else:
        with fresh_database() as url:
            connect(url).dispose()
            yield url


def _contender(url: str, folder: str, fail: bool, ready: Any, start: Any,
               results: Any) -> None:
    """One process: say it is ready, wait for the start, then ask the flight for key 'doc'."""
    db = connect(url)
    flight: SharedFlight[str] = SharedFlight(Claims(db, lease_seconds=2.0))
    done = Path(folder) / "result"

    def lookup() -> str | None:
        return done.read_text() if done.exists() else None

    def make() -> str:
        with open(Path(folder) / "makers", "a") as makers:  # O_APPEND: one line per maker
            makers.write(f"{os.getpid()}\n")
        time.sleep(0.3)  # long enough for the others to find the claim held
        if fail:
            raise UnprocessableDocument("LibreOffice cannot open it", field="file")
        tmp = done.with_suffix(".tmp")
        tmp.write_text(f"made by {os.getpid()}")
        tmp.rename(done)
        return done.read_text()

    ready.put(os.getpid())
    start.wait(60)
    try:
        got = flight.run("doc", "doc", lookup, make, time.monotonic() + 60,
                         lambda: ConversionTimeout("timed out"))
        results.put(("ok", got))
    except UnprocessableDocument as exc:
        results.put((exc.type, exc.message))
    finally:
        db.dispose()


def _race(url: str, folder: Path, fail: bool) -> tuple[list[str], list[tuple[str, str]]]:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    ready = ctx.Queue()
    results = ctx.Queue()
    procs = [ctx.Process(target=_contender, args=(url, str(folder), fail, ready, start,
                                                  results))
             for _ in range(PROCESSES)]
    for proc in procs:
        proc.start()
    for _proc in procs:  # all imported and connected: they start together
        ready.get(timeout=120)
    start.set()
    got = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    makers = (folder / "makers").read_text().split()
    return makers, got


def test_processes_racing_for_one_key_make_it_once(database_url: str, tmp_path: Path) -> None:
    """6 processes at once: one makes it, every one gets its result."""
    makers, got = _race(database_url, tmp_path, fail=False)
    assert len(makers) == 1
    assert got == [("ok", f"made by {makers[0]}")] * PROCESSES


def test_a_failure_reaches_every_waiting_process(database_url: str, tmp_path: Path) -> None:
    """The leader's 4xx is handed to the others, who never call make."""
    makers, got = _race(database_url, tmp_path, fail=True)
    assert len(makers) == 1
    assert got == [("unprocessable_document", "LibreOffice cannot open it")] * PROCESSES


def test_a_claim_that_stops_being_renewed_is_taken_over(database_url: str) -> None:
    """A holder that never heartbeats (it died): the waiter leads once the lease lapses."""
    db = connect(database_url)
    try:
        assert Claims(db, lease_seconds=1.0).acquire("doc", "dead@gone:1") == Taken(False)
        made: list[str] = []
        flight: SharedFlight[str] = SharedFlight(Claims(db, lease_seconds=2.0))
        started = time.monotonic()
        got = flight.run("doc", "doc", lambda: None, lambda: made.append("x") or "made",
                         time.monotonic() + 30, lambda: ConversionTimeout("timed out"))
        assert got == "made" and made == ["x"]
        assert time.monotonic() - started >= 0.5  # not before the dead holder's lease ran out
        assert Claims(db, 2.0).peek("doc") is None  # released by the new leader
    finally:
        db.dispose()


def _expiry(db: Engine, key: str) -> datetime | None:
    with db.connect() as conn:
        return conn.execute(select(conversion_claims.c.expires_at)
                            .where(conversion_claims.c.cache_key == key)).scalar()


def test_a_leader_renews_its_claim_while_it_works(database_url: str) -> None:
    """The heartbeat moves the lease on while make() runs, and the claim goes after it."""
    db = connect(database_url)
    try:
        flight: SharedFlight[str] = SharedFlight(Claims(db, lease_seconds=1.0))
        release = threading.Event()
        leader = threading.Thread(target=lambda: flight.run(
            "leader", "doc", lambda: None, lambda: release.wait(60) and "made",
            time.monotonic() + 60, lambda: ConversionTimeout("timed out")))
        leader.start()
        deadline = time.monotonic() + 30
        while (first := _expiry(db, "doc")) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert first is not None
        while (_expiry(db, "doc") or first) <= first and time.monotonic() < deadline:
            time.sleep(0.05)
        renewed = _expiry(db, "doc")
        release.set()
        leader.join(timeout=30)
        assert renewed is not None and renewed > first
        assert _expiry(db, "doc") is None
    finally:
        db.dispose()


def test_waiters_never_wait_past_their_deadline(database_url: str) -> None:
    """A claim held (for a minute) elsewhere: the waiter raises its timeout, makes nothing."""
    db = connect(database_url)
    try:
        assert Claims(db, lease_seconds=60).acquire("slow", "busy@elsewhere:1") == Taken(False)
        waiter: SharedFlight[str] = SharedFlight(Claims(db, lease_seconds=5))
        started = time.monotonic()
        with pytest.raises(ConversionTimeout):
            waiter.run("waiter", "slow", lambda: None, lambda: "made twice",
                       time.monotonic() + 1.0, lambda: ConversionTimeout("timed out"))
        assert time.monotonic() - started >= 1.0
    finally:
        db.dispose()


def test_an_unreachable_database_is_a_retryable_503() -> None:
    """Taking a claim while PostgreSQL is down raises what the API maps to 503 unavailable."""
    db = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test",
                       connect_args={"connect_timeout": 2})
    with pytest.raises(OperationalError) as caught:
        Claims(db, 5.0).acquire("doc", "me")
    error = translate(caught.value)
    assert isinstance(error, Unavailable) and error.status == 503
    assert error.details["retryable"] is True
