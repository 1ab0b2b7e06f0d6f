"""The automation executor in-process, with LibreOffice: convert, deliver, ``after``, failures.

The poller's steps are called one at a time (list_once, work_once), so what is
asserted never depends on how fast a loaded machine converts.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select

from converter import config as config_module
from converter.db.schema import automation_claims, automations
from converter.service.automation_executor import Executor
from converter.service.automation_poller import AutomationPoller
from converter.service.automations import AutomationService
from converter.service.principal import Principal
from converter.wiring import Services, build
from tests.support.local_connectors import LocalConnectors

pytestmark = pytest.mark.engine
WHO = Principal("key_exec", "ws-exec", "alice")
DOCS = ("docx/SampleDoc.docx", "xlsx/SampleSS.xlsx", "pptx/SampleShow.pptx",
        "odt/HelloWorld.odt", "rtf/unicode.rtf")


@dataclass
class Rig:
    """Services with one engine, a watched folder and a destination folder."""

    services: Services
    automations: AutomationService
    poller: AutomationPoller
    inbox: Path
    outbox: Path

    def create(self, **fields: Any) -> str:
        """An automation from inbox to outbox (fields override the defaults)."""
        body = {"source_connector_id": "con_in", "formats": ["pdf"],
                "destination_connector_id": "con_out", **fields}
        return str(self.automations.create(WHO, body)[0]["id"])

    def settle(self, rounds: int = 2) -> None:
        """List rounds times, then work until nothing is ready."""
        for _ in range(rounds):
            self.poller.list_once()
        while self.poller.work_once():
            pass

    def statuses(self) -> dict[str, str]:
        """Claim status by source path (the latest version of each)."""
        with self.services.db.connect() as conn:
            return {r.path: r.status for r in conn.execute(
                select(automation_claims.c.path, automation_claims.c.status)
                .order_by(automation_claims.c.id))}


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """One service graph with a two-instance engine for the module."""
    data = tmp_path_factory.mktemp("executor")
    config = config_module.load(environ={}, data_dir=str(data), workers=2,
                                cleanup_interval_seconds=0.0, run_workers=0)
    found = build(config)
    # build() starts the service's own poller, whose connectors know none of the rigs'
    # folders: left running, its workers race the rig's work_once for ready claims and
    # fail them with "No connector 'con_in'". The rigs drive their own poller instead.
    found.extras["automation_poller"].stop(drain=0)
    found.engine.wait_ready(180)
    yield found
    found.close()


@pytest.fixture
def rig(services: Services, tmp_path: Path) -> Rig:
    """Fresh folders and connectors over the shared services."""
    with services.db.begin() as conn:  # the poller lists every automation: only this test's
        conn.execute(delete(automations))
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    outbox.mkdir()
    connectors = LocalConnectors(WHO.workspace, tmp_path, {"con_in": inbox, "con_out": outbox})
    executor = Executor(services.db, connectors, services.oneshot, max_attempts=3)
    # stable_after is half the poll interval: 0 here, as the test lists on purpose.
    poller = AutomationPoller(services.db, connectors, executor, 0.0001, 60)
    return Rig(services, AutomationService(services.db, services.matrix, connectors),
               poller, inbox, outbox)


def _pdfs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_five_documents_become_five_pdfs(rig: Rig, corpus: Path) -> None:
    """Each dropped document is converted once and delivered beside the others' PDFs."""
    rig.create(destination_subpath="pdfs")
    for doc in DOCS:
        shutil.copy(corpus / doc, rig.inbox)
    (rig.inbox / "sub").mkdir()
    shutil.copy(corpus / "ods/MergedCells.ods", rig.inbox / "sub")
    rig.settle()
    assert _pdfs(rig.outbox) == sorted(["pdfs/HelloWorld.pdf", "pdfs/SampleDoc.pdf",
                                        "pdfs/SampleShow.pdf", "pdfs/SampleSS.pdf",
                                        "pdfs/sub/MergedCells.pdf", "pdfs/unicode.pdf"])
    for pdf in rig.outbox.rglob("*.pdf"):
        assert pdf.read_bytes().startswith(b"%PDF-")
    assert set(rig.statuses().values()) == {"done"}
    # Sources are untouched (after: keep) and nothing is converted again.
    assert len(list(rig.inbox.rglob("*.*"))) == 6
    rig.settle()
    assert set(rig.statuses().values()) == {"done"} and len(_pdfs(rig.outbox)) == 6


def test_a_changed_file_replaces_its_output(rig: Rig, corpus: Path) -> None:
    """A new version of a source is converted again, to the same destination name."""
    rig.create()
    target = rig.inbox / "report.docx"
    shutil.copy(corpus / "docx/SampleDoc.docx", target)
    rig.settle()
    first = (rig.outbox / "report.pdf").read_bytes()
    shutil.copy(corpus / "docx/endnotes.docx", target)
    rig.settle()
    assert _pdfs(rig.outbox) == ["report.pdf"]
    assert (rig.outbox / "report.pdf").read_bytes() != first


def test_after_delete_and_move(rig: Rig, corpus: Path, tmp_path: Path) -> None:
    """delete removes a source once delivered; move: puts it under the path given."""
    (rig.inbox / "a").mkdir()
    (rig.inbox / "b").mkdir()
    rig.create(source_path="a", destination_subpath="from-a", after="delete")
    rig.create(source_path="b", destination_subpath="from-b", after="move:done/b")
    shutil.copy(corpus / "odt/HelloWorld.odt", rig.inbox / "a")
    shutil.copy(corpus / "docx/SampleDoc.docx", rig.inbox / "b")
    rig.settle()
    assert _pdfs(rig.outbox) == ["from-a/HelloWorld.pdf", "from-b/SampleDoc.pdf"]
    assert _pdfs(rig.inbox) == ["done/b/SampleDoc.docx"]


def test_an_existing_object_is_not_overwritten(rig: Rig, corpus: Path) -> None:
    """A file the automation did not write keeps its name; the output takes the next one."""
    rig.create()
    (rig.outbox / "HelloWorld.pdf").write_bytes(b"not ours")
    shutil.copy(corpus / "odt/HelloWorld.odt", rig.inbox)
    rig.settle()
    assert (rig.outbox / "HelloWorld.pdf").read_bytes() == b"not ours"
    assert (rig.outbox / "HelloWorld (1).pdf").read_bytes().startswith(b"%PDF-")


def test_unconvertible_files_fail_with_reasons(rig: Rig, corpus: Path) -> None:
    """A non-document, and a target the source's format lacks, are failed events with why."""
    automation_id = rig.create(formats=["pdf", "csv"])
    (rig.inbox / "notes.txt").write_text("plain text is not a supported source\n")
    shutil.copy(corpus / "odt/HelloWorld.odt", rig.inbox)
    rig.settle()
    assert rig.statuses() == {"notes.txt": "failed", "HelloWorld.odt": "done"}
    from converter.service import automation_history

    events, _cursor = automation_history.page(rig.services.db, automation_id, "failed", 20,
                                              None)
    reasons = {e["path"]: e["reason"] for e in events}
    assert "unsupported document" in reasons["notes.txt"]
    assert reasons["HelloWorld.odt"] == "odt cannot be converted to csv"
    assert _pdfs(rig.outbox) == ["HelloWorld.pdf"]
    # A source whose formats did not all succeed is never deleted or moved.
    assert (rig.inbox / "HelloWorld.odt").exists()
