"""Automation claims in the database (SQLite and PostgreSQL): stability, exclusivity, takeover.

These drive automation_claims.py directly against real databases and a real
directory; the served tests (test_automations*.py) show the same through HTTP
with LibreOffice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from converter.connectors.local import LocalProvider
from converter.db.schema import automation_claims, automation_events
from converter.matrix import load as load_matrix
from converter.service import automation_claims as claims
from converter.service.automations import AutomationService
from converter.service.principal import Principal
from tests.support.local_connectors import LocalConnectors
from tests.support.postgres import DIALECTS, dialect_engine

WHO = Principal("key_test", "ws-claims", "alice")


@pytest.fixture(params=DIALECTS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of each dialect, schema created."""
    yield from dialect_engine(request.param, tmp_path)


@pytest.fixture
def source(tmp_path: Path) -> LocalProvider:
    """The watched directory."""
    (tmp_path / "in").mkdir()
    return LocalProvider(str(tmp_path / "in"), (str(tmp_path),))


@pytest.fixture
def automation_id(db: Engine, tmp_path: Path) -> str:
    """An automation of WHO's workspace watching tmp_path/in."""
    connectors = LocalConnectors(WHO.workspace, tmp_path, {"con_in": tmp_path / "in",
                                                           "con_out": tmp_path / "out"})
    service = AutomationService(db, load_matrix(), connectors)
    created, _replayed = service.create(WHO, {"source_connector_id": "con_in",
                                              "formats": ["pdf"],
                                              "destination_connector_id": "con_out"})
    return str(created["id"])


def _statuses(db: Engine) -> list[tuple[str, str]]:
    with db.connect() as conn:
        return sorted((r.path, r.status) for r in conn.execute(
            select(automation_claims.c.path, automation_claims.c.status)))


def _seen_events(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).where(
            automation_events.c.kind == "seen")).scalar_one())


def test_a_version_is_ready_only_when_two_listings_agree(db: Engine, source: LocalProvider,
                                                         automation_id: str) -> None:
    """A growing file keeps being re-seen; once unchanged across two listings it is ready."""
    stable = source.root / "stable.docx"
    stable.write_bytes(b"a" * 100)
    growing = source.root / "growing.docx"
    growing.write_bytes(b"b" * 10)
    assert claims.observe(db, automation_id, list(source.walk("")), 0.0) == 0
    assert _statuses(db) == [("growing.docx", "seen"), ("stable.docx", "seen")]
    with growing.open("ab") as out:  # still being written between the listings
        out.write(b"b" * 10)
    assert claims.observe(db, automation_id, list(source.walk("")), 0.0) == 1
    # The first version of the growing file is forgotten, the new one is only seen.
    assert _statuses(db) == [("growing.docx", "seen"), ("stable.docx", "ready")]
    assert claims.observe(db, automation_id, list(source.walk("")), 0.0) == 1
    assert _statuses(db) == [("growing.docx", "ready"), ("stable.docx", "ready")]
    # One seen event per version: stable once, growing twice.
    assert _seen_events(db) == 3


def test_listings_too_close_together_do_not_count_as_two(db: Engine, source: LocalProvider,
                                                         automation_id: str) -> None:
    """Another replica's listing a moment later is not a second, agreeing one."""
    (source.root / "a.docx").write_bytes(b"x" * 10)
    claims.observe(db, automation_id, list(source.walk("")), 30.0)
    assert claims.observe(db, automation_id, list(source.walk("")), 30.0) == 0
    assert _statuses(db) == [("a.docx", "seen")]


def test_one_claim_per_version_and_takeover_after_expiry(db: Engine, source: LocalProvider,
                                                         automation_id: str) -> None:
    """Only one token gets a ready version; an expired lease passes it on with its names."""
    (source.root / "a.docx").write_bytes(b"x" * 10)
    for _ in range(2):
        claims.observe(db, automation_id, list(source.walk("")), 0.0)
    first = claims.claim_next(db, "token-1", 0.5)
    assert first is not None and first.path == "a.docx" and first.destinations is None
    assert claims.claim_next(db, "token-2", 0.5) is None
    kept = claims.keep_destinations(db, first, {"pdf": "out/a.pdf"})
    assert kept is not None
    time.sleep(1.0)  # the lease (0.5 s) expires: its holder is presumed dead
    second = claims.claim_next(db, "token-2", 60)
    assert second is not None and second.id == first.id and second.attempts == 2
    assert second.destinations == {"pdf": "out/a.pdf"}
    # The first holder lost the lease: nothing it writes now is recorded.
    assert not claims.finish(db, first)
    assert claims.finish(db, second)
    assert _statuses(db) == [("a.docx", "done")]
    assert claims.claim_next(db, "token-3", 60) is None


def test_release_makes_a_claim_ready_at_once(db: Engine, source: LocalProvider,
                                             automation_id: str) -> None:
    """A stopping process hands its claims back without waiting for their leases."""
    (source.root / "a.docx").write_bytes(b"x")
    for _ in range(2):
        claims.observe(db, automation_id, list(source.walk("")), 0.0)
    held = claims.claim_next(db, "token-1", 600)
    assert held is not None
    assert claims.release(db, ["token-1"]) == 1
    again = claims.claim_next(db, "token-2", 600)
    assert again is not None and again.id == held.id and again.attempts == 1


def test_racing_listings_record_each_version_once(db: Engine, source: LocalProvider,
                                                   automation_id: str) -> None:
    """Replicas listing the same new files at the same moment: one seen event per version."""
    for index in range(30):
        (source.root / f"f{index:02}.docx").write_bytes(b"x" * (index + 1))
    entries = list(source.walk(""))
    start = threading.Barrier(6)

    def lister() -> None:
        start.wait(timeout=30)  # every listing reads the (empty) history before any insert
        claims.observe(db, automation_id, entries, 30.0)

    threads = [threading.Thread(target=lister) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert _seen_events(db) == 30
    assert len(_statuses(db)) == 30


def test_racing_claimers_take_each_version_once(db: Engine, source: LocalProvider,
                                                automation_id: str) -> None:
    """Eight threads claiming 30 ready versions at once: every version exactly once."""
    for index in range(30):
        (source.root / f"f{index:02}.docx").write_bytes(b"x" * (index + 1))
    for _ in range(2):
        claims.observe(db, automation_id, list(source.walk("")), 0.0)
    taken: list[str] = []
    lock = threading.Lock()

    def claimer(number: int) -> None:
        while (claim := claims.claim_next(db, f"token-{number}", 600)) is not None:
            with lock:
                taken.append(claim.path)
            assert claims.finish(db, claim)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(taken) == [f"f{index:02}.docx" for index in range(30)]


def test_retention_expires_events_but_keeps_claims(db: Engine, source: LocalProvider,
                                                   automation_id: str, tmp_path: Path) -> None:
    """CONVERTER_RUN_RETENTION_DAYS removes old history; claims stay, so nothing is redone."""
    from datetime import timedelta

    from converter.service import retention
    from converter.service.sweep import Sweep
    from converter.storage import LocalStorage

    (source.root / "a.docx").write_bytes(b"x")
    claims.observe(db, automation_id, list(source.walk("")), 0.0)
    time.sleep(0.05)
    sweep = Sweep(batch=10)
    retention.expire(db, LocalStorage(tmp_path / "objects"), sweep, None, timedelta(days=1))
    assert _seen_events(db) == 1  # younger than a day
    retention.expire(db, LocalStorage(tmp_path / "objects"), sweep, None,
                     timedelta(milliseconds=10))
    assert _seen_events(db) == 0 and sweep.counts["automation_events"] == 1
    assert _statuses(db) == [("a.docx", "seen")]
