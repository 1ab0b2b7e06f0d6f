"""Watched-folder automations end to end: served apps, real LibreOffice, real connectors.

Documents are dropped into a local connector's folder the way a user's copy would land
(written beside it, then renamed in, so no listing sees half a file); the tests read
what arrives at the destination and the automation's history over HTTP.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert, select

from converter.connectors.local import TEMP_MARK, LocalProvider
from converter.db.engine import utcnow
from converter.db.schema import automation_claims
from tests.support.moto import BUCKET, CREDENTIALS, raw_client
from tests.support.postgres import fresh_database
from tests.support.served import ServedApp, error_of

pytestmark = [pytest.mark.engine]

# Small documents of five families: each converts in a second or two.
FIVE = ["docx/SampleDoc.docx", "xlsx/SampleSS.xlsx", "pptx/table_test.pptx",
        "odt/HelloWorld.odt", "rtf/pages_table_sample.rtf"]
MORE = FIVE + ["docx/endnotes.docx", "odt/footnote.odt", "xlsx/1_NoIden.xlsx",
               "rtf/calcium_score.rtf", "odt/changeTracked.odt"]


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.3) -> Any:
    """Poll check until it returns something truthy; fail naming what after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def connector(app: ServedApp, body: dict[str, Any]) -> str:
    """POST /v1/connectors; the new connector's id."""
    response = app.request("POST", "/v1/connectors", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def automation(app: ServedApp, source: str, destination: str, **extra: Any) -> str:
    """POST /v1/automations converting to PDF; the new automation's id."""
    response = app.request("POST", "/v1/automations", json={
        "source_connector_id": source, "destination_connector_id": destination,
        "formats": ["pdf"], **extra})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def events(app: ServedApp, automation_id: str) -> list[dict[str, Any]]:
    """The automation's whole history, oldest first (every page)."""
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        response = app.request("GET", f"/v1/automations/{automation_id}/events",
                               params={"limit": 100, "cursor": cursor})
        assert response.status_code == 200, response.text
        body = response.json()
        found += body["data"]
        if not body["next_cursor"]:
            return found[::-1]
        cursor = body["next_cursor"]


def kinds_by_path(history: list[dict[str, Any]], kind: str) -> Counter[str]:
    """How many events of kind each source path has."""
    return Counter(e["path"] for e in history if e["kind"] == kind)


def at(event: dict[str, Any]) -> datetime:
    """An event's time."""
    return datetime.fromisoformat(event["at"].replace("Z", "+00:00"))


def drop(corpus: Path, names: list[str], folder: Path) -> list[str]:
    """Copy corpus documents into folder atomically (write beside it, rename in)."""
    staging = folder.parent / f"staging-{secrets.token_hex(3)}"
    staging.mkdir()
    dropped = []
    for name in names:
        base = Path(name).name
        shutil.copyfile(corpus / name, staging / base)
        os.replace(staging / base, folder / base)
        dropped.append(base)
    staging.rmdir()
    return dropped


def pdf_name(source: str) -> str:
    """The destination name of a source's PDF."""
    return Path(source).stem + ".pdf"


def assert_one_pdf_each(destination: Path, dropped: list[str]) -> None:
    """Exactly one real PDF per source, nothing else (no renamed copy, no temp file)."""
    everything = sorted(p.name for p in destination.rglob("*") if p.is_file())
    assert everything == sorted(pdf_name(d) for d in dropped), everything
    for name in everything:
        data = (destination / name).read_bytes()
        assert data.startswith(b"%PDF-") and len(data) > 1000, (name, len(data))


def local_pair(app: ServedApp, root: Path) -> tuple[str, Path, str, Path]:
    """Source and destination local connectors under root (made if missing)."""
    source, destination = root / "inbox", root / "outbox"
    source.mkdir(exist_ok=True)
    destination.mkdir(exist_ok=True)
    return (connector(app, {"provider": "local", "path": str(source)}), source,
            connector(app, {"provider": "local", "path": str(destination)}), destination)


def test_five_documents_arrive_within_two_poll_intervals(serve: type[ServedApp],
                                                         corpus: Path, tmp_path: Path) -> None:
    """Five families in, five PDFs out, each within 2 intervals of the listing that saw it."""
    # 15 s: a file is ready at the second listing (one interval after the first), and the
    # five small conversions then need a few seconds on 2 LibreOffice instances; 15 s
    # leaves room for a 2-core machine shared with other test runs.
    poll = 15.0
    root = tmp_path / "root"
    root.mkdir()
    app = serve(env={"CONVERTER_LOCAL_CONNECTOR_ROOTS": str(root),
                     "CONVERTER_AUTOMATION_POLL_SECONDS": str(poll)}).start()
    source_id, source, destination_id, destination = local_pair(app, root)
    automation_id = automation(app, source_id, destination_id)
    dropped = drop(corpus, FIVE, source)
    history = wait_for("5 deliveries", lambda: (
        h if len(kinds_by_path(h := events(app, automation_id), "delivered")) == 5 else None),
        timeout=6 * poll)
    assert_one_pdf_each(destination, dropped)
    for name in dropped:
        mine = [e for e in history if e["path"] == name]
        assert [e["kind"] for e in mine] == ["seen", "converted", "delivered"], mine
        assert mine[2]["destination"] == pdf_name(name) and mine[2]["format"] == "pdf"
        # The bound: delivered no later than 2 intervals after the first listing saw it.
        late = at(mine[2]) - at(mine[0])
        assert late <= timedelta(seconds=2 * poll), (name, late)
    first_seen = min(at(e) for e in history if e["kind"] == "seen")
    last_delivered = max(at(e) for e in history if e["kind"] == "delivered")
    assert last_delivered - first_seen <= timedelta(seconds=2 * poll)


def test_a_restart_in_the_middle_converts_each_document_once(
        serve: type[ServedApp], corpus: Path, tmp_path: Path) -> None:
    """SIGTERM with some delivered: the next server finishes the rest, none twice."""
    root = tmp_path / "root"
    root.mkdir()
    # One LibreOffice: ten documents convert one after another, so a partial state lasts.
    app = serve(env={"CONVERTER_LOCAL_CONNECTOR_ROOTS": str(root),
                     "CONVERTER_AUTOMATION_POLL_SECONDS": "2"}, workers=1).start()
    source_id, source, destination_id, destination = local_pair(app, root)
    automation_id = automation(app, source_id, destination_id)
    dropped = drop(corpus, MORE, source)
    partial = wait_for("a first delivery", lambda: len(kinds_by_path(
        events(app, automation_id), "delivered")), timeout=180, every=0.1)
    assert partial < len(dropped), "all were delivered before the restart"
    assert app.stop() == 0
    app.start()
    wait_for("every delivery", lambda: len(kinds_by_path(
        events(app, automation_id), "delivered")) == len(dropped), timeout=300)
    time.sleep(3 * 2)  # three more listings: nothing may be converted again
    history = events(app, automation_id)
    for kind in ("seen", "converted", "delivered"):
        assert kinds_by_path(history, kind) == Counter(dropped), (kind, history)
    assert not [e for e in history if e["kind"] == "failed"], history
    assert_one_pdf_each(destination, dropped)


def _kill_group(app: ServedApp) -> None:
    assert app.proc is not None
    os.killpg(app.proc.pid, signal.SIGKILL)
    app.proc.wait(timeout=30)
    wait_for("LibreOffice to die with the service", lambda: not app.soffice_pids(), 30)


def test_kill_9_while_documents_are_delivered_leaves_one_object_each(
        serve: type[ServedApp], corpus: Path, tmp_path: Path) -> None:
    """kill -9 of the whole service twice mid-stream; restarted, one object per document."""
    root = tmp_path / "root"
    root.mkdir()
    app = serve(env={"CONVERTER_LOCAL_CONNECTOR_ROOTS": str(root),
                     "CONVERTER_AUTOMATION_POLL_SECONDS": "2",
                     # Claims of the killed service are taken over soon after the restart.
                     "CONVERTER_RUN_LEASE_SECONDS": "4"}, workers=1).start()
    source_id, source, destination_id, destination = local_pair(app, root)
    automation_id = automation(app, source_id, destination_id)
    dropped = drop(corpus, MORE, source)
    for delivered in (1, 4):  # two kill points: after the first, then the fourth delivery
        wait_for(f"{delivered} deliveries", lambda n=delivered: len(kinds_by_path(
            events(app, automation_id), "delivered")) >= n, timeout=240, every=0.1)
        _kill_group(app)
        app.start()
    wait_for("every delivery", lambda: len(kinds_by_path(
        events(app, automation_id), "delivered")) == len(dropped), timeout=300)
    history = events(app, automation_id)
    assert kinds_by_path(history, "delivered") == Counter(dropped), history
    assert_one_pdf_each(destination, dropped)
    assert not [p for p in destination.iterdir() if TEMP_MARK in p.name]


def test_a_takeover_after_write_before_done_overwrites_the_same_name(
        serve: type[ServedApp], corpus: Path, tmp_path: Path) -> None:
    """The crash window after the object is written, before the claim says so."""
    root = tmp_path / "root"
    root.mkdir()
    env = {"CONVERTER_LOCAL_CONNECTOR_ROOTS": str(root),
           "CONVERTER_AUTOMATION_POLL_SECONDS": "2"}
    app = serve(env=env, workers=1).start()
    source_id, source, destination_id, destination = local_pair(app, root)
    automation_id = automation(app, source_id, destination_id, enabled=False)
    app.stop()
    # The state a kill -9 leaves: the claim working with its names chosen and its lease
    # expired, the object written (here an old, short one), a temp file of the write.
    dropped = drop(corpus, ["docx/SampleDoc.docx"], source)[0]
    entry = LocalProvider(str(source), (str(root),)).stat(dropped)
    assert entry is not None
    stale = b"%PDF-1.4 written by the attempt that was killed"
    (destination / "SampleDoc.pdf").write_bytes(stale)
    (destination / f"{TEMP_MARK}0123456789abcdef-SampleDoc.pdf").write_bytes(stale[:10])
    db = create_engine(f"sqlite:///{app.data_dir / 'converter.db'}")
    long_ago = utcnow() - timedelta(minutes=5)
    with db.begin() as conn:
        conn.execute(insert(automation_claims).values(
            automation_id=automation_id, path=dropped, version=entry.version,
            size_bytes=entry.size, status="working", seen_at=long_ago,
            lease_owner="killed-worker", lease_expires_at=long_ago, attempts=1,
            destinations='{"pdf": "SampleDoc.pdf"}'))
    app.start()
    enabled = app.request("PATCH", f"/v1/automations/{automation_id}", json={"enabled": True})
    assert enabled.status_code == 200, enabled.text
    history = wait_for("the takeover's delivery", lambda: (
        h if kinds_by_path(h := events(app, automation_id), "delivered") else None), 120)
    delivered = [e for e in history if e["kind"] == "delivered"]
    assert [e["destination"] for e in delivered] == ["SampleDoc.pdf"], history
    with db.connect() as conn:
        status = conn.execute(select(automation_claims.c.status)).scalars().all()
    assert status == ["done"]
    assert (destination / "SampleDoc.pdf").read_bytes() != stale
    assert_one_pdf_each(destination, [dropped])
    db.dispose()


@pytest.mark.postgres
@pytest.mark.s3
def test_two_replicas_deliver_each_document_once(tmp_path: Path, corpus: Path,
                                                 moto_endpoint: str) -> None:
    """Two replicas on one PostgreSQL and bucket watch the same folder: one delivery each."""
    root = tmp_path / "root"
    root.mkdir()
    poll = 3.0
    with fresh_database() as database_url:
        env = {
            "CONVERTER_DATABASE_URL": database_url,
            "CONVERTER_STORAGE": "s3",
            "CONVERTER_S3_BUCKET": BUCKET,
            "CONVERTER_S3_ENDPOINT_URL": moto_endpoint,
            "CONVERTER_S3_PREFIX": f"automations-{secrets.token_hex(4)}/",
            "CONVERTER_SECRET_KEY": secrets.token_hex(32),  # connector credentials
            "CONVERTER_LOCAL_CONNECTOR_ROOTS": str(root),
            "CONVERTER_AUTOMATION_POLL_SECONDS": str(poll),
            **CREDENTIALS,
        }
        first = ServedApp(tmp_path / "a", env=env, workers=1)
        second = ServedApp(tmp_path / "b", env=env, workers=1)
        second.key = first.key
        second.http.headers["X-API-Key"] = first.key
        try:
            first.start()
            second.start()
            source_id, source, destination_id, destination = local_pair(first, root)
            automation_id = automation(second, source_id, destination_id)
            dropped = drop(corpus, MORE, source)
            wait_for("every delivery", lambda: len(kinds_by_path(
                events(first, automation_id), "delivered")) == len(dropped), timeout=300)
            time.sleep(3 * poll)  # more listings by both: nothing may be delivered again
            history = events(second, automation_id)
            for kind in ("seen", "converted", "delivered"):
                assert kinds_by_path(history, kind) == Counter(dropped), (kind, history)
            assert_one_pdf_each(destination, dropped)
        finally:
            second.stop()
            first.stop()


@pytest.mark.s3
def test_a_secret_is_in_no_response_and_no_log_line(serve: type[ServedApp], corpus: Path,
                                                    tmp_path: Path, moto_endpoint: str) -> None:
    """An S3 destination's secret_access_key: used to deliver, never shown or logged."""
    root = tmp_path / "root"
    (root / "inbox").mkdir(parents=True)
    app = serve(env={"CONVERTER_LOCAL_CONNECTOR_ROOTS": str(root),
                     "CONVERTER_AUTOMATION_POLL_SECONDS": "2",
                     "CONVERTER_WEBHOOK_ALLOW": "127.0.0.0/8",  # moto on loopback
                     "CONVERTER_LOG_LEVEL": "DEBUG"}, workers=1).start()
    secret = "sk" + secrets.token_urlsafe(30)  # moto without auth takes any secret
    prefix = f"auto-{secrets.token_hex(4)}"
    bodies: list[str] = []

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = app.request(method, path, **kwargs)
        bodies.append(response.text)
        return response

    created = call("POST", "/v1/connectors", json={
        "provider": "s3", "bucket": BUCKET, "prefix": prefix, "endpoint_url": moto_endpoint,
        "access_key_id": "AKIA" + secrets.token_hex(8).upper(), "secret_access_key": secret})
    assert created.status_code == 201, created.text
    s3_id = created.json()["id"]
    source_id = connector(app, {"provider": "local", "path": str(root / "inbox")})
    made = call("POST", "/v1/automations", json={
        "source_connector_id": source_id, "destination_connector_id": s3_id,
        "formats": ["pdf"], "destination_subpath": "out"})
    assert made.status_code == 201, made.text
    automation_id = made.json()["id"]
    drop(corpus, ["odt/HelloWorld.odt"], root / "inbox")
    wait_for("the delivery to S3", lambda: kinds_by_path(events(app, automation_id),
                                                          "delivered"), timeout=120)
    body = raw_client(moto_endpoint).get_object(
        Bucket=BUCKET, Key=f"{prefix}/out/HelloWorld.pdf")["Body"].read()
    assert body.startswith(b"%PDF-")
    for method, path in [("GET", f"/v1/connectors/{s3_id}"), ("GET", "/v1/connectors"),
                         ("GET", f"/v1/automations/{automation_id}"),
                         ("GET", "/v1/automations"),
                         ("GET", f"/v1/automations/{automation_id}/events"),
                         ("PATCH", f"/v1/automations/{automation_id}")]:
        kwargs = {"json": {"enabled": False}} if method == "PATCH" else {}
        assert call(method, path, **kwargs).status_code == 200
    assert len(bodies) == 8
    assert not [b for b in bodies if secret in b]
    assert secret[-4:] in created.text  # the hint is there: the check reads the right body
    log = app.log()
    assert "automation" in log.lower() or "connector" in log.lower()  # DEBUG did log
    assert secret not in log


def test_connectors_are_checked_in_the_workspace(serve: type[ServedApp],
                                                 tmp_path: Path) -> None:
    """Missing, unknown and other workspaces' connectors: errors naming the field."""
    root = tmp_path / "root"
    root.mkdir()
    app = serve(env={"CONVERTER_LOCAL_CONNECTOR_ROOTS": str(root)}, workers=1).start()
    source_id, _, destination_id, _ = local_pair(app, root)
    other_key = app.create_key("elsewhere", "olga")
    others = app.request("POST", "/v1/connectors", key=other_key,
                         json={"provider": "local", "path": str(root)})
    assert others.status_code == 201, others.text
    foreign = others.json()["id"]
    cases = [({"destination_connector_id": destination_id}, 400, "source_connector_id"),
             ({"source_connector_id": source_id}, 400, "destination_connector_id"),
             ({"source_connector_id": "conn_nope", "destination_connector_id": destination_id},
              404, "source_connector_id"),
             ({"source_connector_id": source_id, "destination_connector_id": foreign},
              404, "destination_connector_id"),
             ({"source_connector_id": foreign, "destination_connector_id": destination_id},
              404, "source_connector_id")]
    for body, status, field in cases:
        response = app.request("POST", "/v1/automations", json={"formats": ["pdf"], **body})
        assert response.status_code == status, (body, response.text)
        assert error_of(response).get("field") == field, (body, response.text)
    made = automation(app, source_id, destination_id)
    patched = app.request("PATCH", f"/v1/automations/{made}",
                          json={"destination_connector_id": foreign})
    assert patched.status_code == 404 and error_of(patched)["field"] == "destination_connector_id"
    # The other workspace sees neither the automation nor its history.
    for path in (f"/v1/automations/{made}", f"/v1/automations/{made}/events"):
        assert app.request("GET", path, key=other_key).status_code == 404
