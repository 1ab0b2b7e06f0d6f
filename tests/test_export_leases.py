"""Export leases on SQLite and PostgreSQL: each export claimed once, reclaimed after expiry."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select, update

from converter.db.engine import next_seq, utcnow
from converter.db.schema import exports
from converter.service import export_leases as leases
from converter.service.run_worker import new_token
from tests.support.postgres import DIALECTS, dialect_engine


@pytest.fixture(params=DIALECTS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The same schema on both dialects (PostgreSQL at 127.0.0.1:5432, db test)."""
    yield from dialect_engine(request.param, tmp_path)


def _pending(db: Engine, count: int) -> list[str]:
    ids = [f"exp_{n:04d}" for n in range(count)]
    with db.begin() as conn:
        for export_id in ids:
            conn.execute(insert(exports).values(
                id=export_id, api_key_id="k", workspace="w", owner="u", scope="personal",
                sources=json.dumps([{"file_id": "f"}]), bundle="none", format="pdf",
                options="{}", subpath="", on_conflict="rename", status="pending",
                attempts=0, created_at=utcnow(), seq=next_seq()))
    return ids


def test_concurrent_claimers_take_each_export_once(db: Engine) -> None:
    """Four claimers racing over 40 exports: every export claimed exactly once."""
    ids = _pending(db, 40)

    def drain() -> list[str]:
        got = []
        while (claim := leases.claim_next(db, new_token(), 60)) is not None:
            got.append(claim.export_id)
            assert leases.finish(db, claim, "completed", "{}", None)
        return got

    with ThreadPoolExecutor(4) as pool:
        claimed = [i for part in pool.map(lambda _: drain(), range(4)) for i in part]
    assert sorted(claimed) == ids


def test_expired_lease_is_reclaimed_and_the_old_holder_cannot_finish(db: Engine) -> None:
    """A dead worker's export goes to the next claimer; the first token can record nothing."""
    (export_id,) = _pending(db, 1)
    first = leases.claim_next(db, new_token(), 60)
    assert first is not None and leases.claim_next(db, new_token(), 60) is None
    assert leases.renew(db, [first.token], 60) == 1
    with db.begin() as conn:  # the holder died: its lease ran out
        conn.execute(update(exports).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    second = leases.claim_next(db, new_token(), 60)
    assert second is not None and second.export_id == export_id and second.attempts == 2
    assert not leases.finish(db, first, "completed", "{}", None)
    assert leases.finish(db, second, "completed", "{}", None)
    with db.connect() as conn:
        assert conn.execute(select(exports.c.status)).scalar_one() == "completed"


def test_postpone_and_release_give_the_attempt_back(db: Engine) -> None:
    """Waiting for a run does not use an attempt; neither does a shutdown."""
    _pending(db, 1)
    claim = leases.claim_next(db, new_token(), 60)
    assert claim is not None and claim.attempts == 1
    assert leases.postpone(db, claim, 0.2, count_attempt=False)
    assert leases.claim_next(db, new_token(), 60) is None  # not before its delay
    deadline = time.monotonic() + 30
    while (again := leases.claim_next(db, new_token(), 60)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert again.attempts == 1
    assert leases.release(db, [again.token]) == 1
    with db.connect() as conn:
        row = conn.execute(select(exports.c.status, exports.c.attempts)).one()
    assert (row.status, row.attempts) == ("pending", 0)


def test_finished_exports_expire_with_their_replays(db: Engine, tmp_path: Path) -> None:
    """CONVERTER_RUN_RETENTION_DAYS covers exports: old finished ones go with their replay."""
    from converter.db.schema import idempotency_keys
    from converter.service.retention import expire
    from converter.service.sweep import Sweep
    from converter.storage import LocalStorage

    old, fresh, running = _pending(db, 3)
    with db.begin() as conn:
        conn.execute(update(exports).where(exports.c.id == old).values(
            status="completed", completed_at=utcnow() - timedelta(days=3)))
        conn.execute(update(exports).where(exports.c.id == fresh).values(
            status="failed", completed_at=utcnow()))
        conn.execute(update(exports).where(exports.c.id == running).values(status="processing"))
        conn.execute(insert(idempotency_keys).values(
            api_key_id="k", key="replay-old", request_hash="h", status_code=202,
            response="{}", created_at=utcnow(), subject_id=old))
    sweep = Sweep(batch=10)
    expire(db, LocalStorage(tmp_path / "objects"), sweep, None, timedelta(days=1))
    with db.connect() as conn:
        left = sorted(conn.execute(select(exports.c.id)).scalars())
        replays = conn.execute(select(idempotency_keys.c.key)).scalars().all()
    assert left == sorted([fresh, running]) and replays == []
    assert sweep.counts["exports"] == 1
