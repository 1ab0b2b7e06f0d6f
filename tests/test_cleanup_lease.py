"""The cleanup lease: one replica at a time, once per interval, taken over when its holder
dies. On SQLite and on PostgreSQL, where replicas on other hosts share only the database."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from converter import config as config_module
from converter.service.cleanup import Cleanup, build
from converter.service.leases import Lease, expired_holds
from converter.storage import LocalStorage
from tests.support.postgres import DIALECTS, dialect_engine


@pytest.fixture(params=DIALECTS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of each dialect, schema created."""
    yield from dialect_engine(request.param, tmp_path)


def test_one_holder_at_a_time_and_not_before_due(db: Engine) -> None:
    """A held lease is refused to others, even forced; a finished one waits until due."""
    first, second = Lease(db, "cleanup", 60), Lease(db, "cleanup", 60)
    assert first.acquire() and first.acquire()  # taking it again while holding it is fine
    assert not second.acquire() and not second.acquire(force=True)
    assert first.holder().owner == first.token
    first.finish(next_due_in=600)
    assert first.holder().owner is None
    assert not second.acquire() and not first.acquire()  # not due for ten minutes
    assert second.acquire(force=True)  # converter gc: now, when nobody is running a pass
    assert not first.renew()


def test_an_expired_hold_is_taken_over(db: Engine) -> None:
    """A holder that died (stopped renewing) loses the lease once it expires."""
    dead, heir = Lease(db, "cleanup", 0.5), Lease(db, "cleanup", 60)
    assert dead.acquire()
    assert not heir.acquire()
    time.sleep(1.0)
    assert expired_holds(db, dry_run=True) == 1
    assert heir.acquire()
    assert not dead.renew()
    assert expired_holds(db, dry_run=False) == 0  # held again, by a live holder


def test_replicas_racing_run_one_pass(db: Engine, tmp_path: Path) -> None:
    """Six replicas ask for a pass at the same moment: exactly one runs it."""
    cfg = config_module.load(environ={"CONVERTER_DATA_DIR": str(tmp_path / "data")})
    replicas: list[Cleanup] = [build(cfg, db, LocalStorage(tmp_path / "objects"))
                               for _ in range(6)]
    start = threading.Barrier(len(replicas))
    ran: Counter[bool] = Counter()
    lock = threading.Lock()

    def replica(cleanup: Cleanup) -> None:
        start.wait()
        outcome = cleanup.run_leased()
        with lock:
            ran[outcome is not None] += 1

    threads = [threading.Thread(target=replica, args=(c,)) for c in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert ran == Counter({True: 1, False: 5})
    # The pass that ran set the next one CONVERTER_CLEANUP_INTERVAL_SECONDS away for all.
    assert [c.run_leased() for c in replicas] == [None] * 6
