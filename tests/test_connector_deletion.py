"""Deleting a connector automations use, on SQLite and PostgreSQL: refused, never racy.

The real ConnectorService and AutomationService on real databases; the served
test in test_connectors_api.py shows the same 409 through HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from converter.connectors.crypto import CredentialBox
from converter.connectors.registry import Settings
from converter.db.schema import automations, connectors
from converter.errors import Conflict, NotFound
from converter.matrix import load as load_matrix
from converter.service.automations import AutomationService
from converter.service.connectors import ConnectorService
from converter.service.principal import Principal
from tests.support.postgres import DIALECTS, dialect_engine

WHO = Principal("key_test", "ws-deletion", "alice")
RACE_ROUNDS = 12
CREATORS = 4


@pytest.fixture(params=DIALECTS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of each dialect, schema created."""
    yield from dialect_engine(request.param, tmp_path)


@pytest.fixture
def services(db: Engine, tmp_path: Path) -> tuple[ConnectorService, AutomationService]:
    """Connector and automation services sharing db, local connectors under tmp_path."""
    found = ConnectorService(db, CredentialBox(b"k" * 32), Settings(local_roots=(str(tmp_path),)))
    return found, AutomationService(db, load_matrix(), found)


def _local(service: ConnectorService, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    made, _replayed = service.create(WHO, {"provider": "local", "name": folder.name,
                                           "config": {"path": str(folder)}})
    return str(made["id"])


def _body(source: str, destination: str) -> dict[str, object]:
    return {"source_connector_id": source, "formats": ["pdf"],
            "destination_connector_id": destination}


def test_in_use_is_refused_then_allowed_once_repointed(
        services: tuple[ConnectorService, AutomationService], tmp_path: Path) -> None:
    """409 names the automation; after a PATCH to another connector the delete goes through."""
    connector_service, automation_service = services
    inbox, outbox, spare = (_local(connector_service, tmp_path / name)
                            for name in ("in", "out", "spare"))
    automation_id = str(automation_service.create(WHO, _body(inbox, outbox))[0]["id"])
    with pytest.raises(Conflict) as refused:
        connector_service.delete(WHO, outbox)
    assert refused.value.details == {"field": "connector_id", "automations": [automation_id]}
    assert connector_service.exists(WHO.workspace, outbox)
    automation_service.update(WHO, automation_id, {"destination_connector_id": spare})
    connector_service.delete(WHO, outbox)
    assert not connector_service.exists(WHO.workspace, outbox)
    with pytest.raises(NotFound):
        automation_service.update(WHO, automation_id, {"destination_connector_id": outbox})


def test_racing_creates_and_a_delete_never_leave_a_dangling_automation(
        services: tuple[ConnectorService, AutomationService], db: Engine,
        tmp_path: Path) -> None:
    """Automations created while their connector is deleted: either the delete or they fail."""
    connector_service, automation_service = services
    outbox = _local(connector_service, tmp_path / "out")
    outcomes: dict[str, int] = {"created": 0, "refused": 0, "deleted": 0, "in_use": 0}
    lock = threading.Lock()

    def count(outcome: str) -> None:
        with lock:
            outcomes[outcome] += 1

    for round_number in range(RACE_ROUNDS):
        inbox = _local(connector_service, tmp_path / f"in-{round_number}")
        barrier = threading.Barrier(CREATORS + 1)

        def create(source: str = inbox, start: threading.Barrier = barrier) -> None:
            start.wait()
            try:
                automation_service.create(WHO, _body(source, outbox))
                count("created")
            except NotFound:
                count("refused")

        def remove(connector_id: str = inbox, start: threading.Barrier = barrier) -> None:
            start.wait()
            try:
                connector_service.delete(WHO, connector_id)
                count("deleted")
            except Conflict:
                count("in_use")

        threads = [threading.Thread(target=create) for _ in range(CREATORS)]
        threads.append(threading.Thread(target=remove))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive(), "a create or delete hung"
    with db.connect() as conn:
        present = set(conn.execute(select(connectors.c.id)).scalars())
        used = conn.execute(select(automations.c.source_connector_id,
                                   automations.c.destination_connector_id)).all()
    dangling = [pair for pair in used if not set(pair) <= present]
    assert dangling == [], (dangling, outcomes)
    assert outcomes["created"] + outcomes["refused"] == RACE_ROUNDS * CREATORS
    assert outcomes["deleted"] + outcomes["in_use"] == RACE_ROUNDS
    assert outcomes["created"] == len(used)
