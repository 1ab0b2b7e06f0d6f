"""Idempotency-Key on creating connectors and automations, on SQLite and PostgreSQL.

The real services on real databases: a retried create (even concurrent) makes one
record and replays its answer; the same key for another body is refused. The
served test in test_connectors_api.py shows the header round trip over HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from converter.connectors.crypto import CredentialBox
from converter.connectors.registry import Settings
from converter.db.schema import automations, connectors
from converter.errors import IdempotencyKeyInUse
from converter.matrix import load as load_matrix
from converter.service.automations import AutomationService
from converter.service.connectors import ConnectorService
from converter.service.keys import KeyStore
from converter.service.principal import Principal
from tests.support.postgres import DIALECTS, dialect_engine

RETRIES = 6


@pytest.fixture(params=DIALECTS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of each dialect, schema created."""
    yield from dialect_engine(request.param, tmp_path)


def _count(db: Engine, table: Any) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _concurrently(create: Any) -> list[tuple[dict[str, Any], bool]]:
    """RETRIES calls of create released together; their results."""
    barrier = threading.Barrier(RETRIES)
    results: list[tuple[dict[str, Any], bool]] = []
    lock = threading.Lock()

    def call() -> None:
        barrier.wait()
        found = create()
        with lock:
            results.append(found)

    threads = [threading.Thread(target=call) for _ in range(RETRIES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a create hung"
    return results


def test_connector_and_automation_creates_happen_once_per_key(db: Engine,
                                                              tmp_path: Path) -> None:
    """Concurrent retries with one key: one row each, every answer the same record."""
    # A real key: concurrent writers for one key take turns on its row.
    key_id, _raw = KeyStore(db).create("ws-idem", "alice")
    who = Principal(key_id, "ws-idem", "alice")
    connector_service = ConnectorService(db, CredentialBox(b"s" * 32),
                                         Settings(local_roots=(str(tmp_path),)))
    automation_service = AutomationService(db, load_matrix(), connector_service)
    for folder in ("in", "out"):
        (tmp_path / folder).mkdir()
    body = {"provider": "local", "name": "in", "config": {"path": str(tmp_path / "in")}}
    made = _concurrently(lambda: connector_service.create(who, body, "conn-key-1"))
    assert _count(db, connectors) == 1
    assert len({answer["id"] for answer, _ in made}) == 1
    assert sorted(replayed for _, replayed in made) == [False] + [True] * (RETRIES - 1)
    source_id = made[0][0]["id"]
    destination, _replayed = connector_service.create(
        who, {"provider": "local", "config": {"path": str(tmp_path / "out")}})

    wanted = {"source_connector_id": source_id, "formats": ["pdf"],
              "destination_connector_id": destination["id"]}
    created = _concurrently(lambda: automation_service.create(who, wanted, "aut-key-1"))
    assert _count(db, automations) == 1
    assert len({answer["id"] for answer, _ in created}) == 1
    assert all(answer == created[0][0] for answer, _ in created)

    with pytest.raises(IdempotencyKeyInUse):
        automation_service.create(who, {**wanted, "formats": ["png"]}, "aut-key-1")
    with pytest.raises(IdempotencyKeyInUse):
        connector_service.create(who, {**body, "name": "other"}, "conn-key-1")
    automation_service.create(who, wanted)  # no key: a second automation, as asked
    assert _count(db, automations) == 2 and _count(db, connectors) == 2
