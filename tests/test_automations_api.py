"""Automations against a served app: a growing file waits, after delete and move:, bad bodies.

Local connectors on temporary directories under CONVERTER_LOCAL_CONNECTOR_ROOTS,
created through /v1/connectors; the poller lists every POLL seconds.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.served import ServedApp, error_of

pytestmark = pytest.mark.engine
POLL = 1.0
DOCS = ("docx/SampleDoc.docx", "xlsx/SampleSS.xlsx", "pptx/SampleShow.pptx",
        "odt/HelloWorld.odt", "ods/MergedCells.ods")
# Conversions of the five documents on a loaded 2-core machine (two instances, other
# helpers' suites beside): measured at a few seconds; the bound leaves ten times that.
CONVERSION_ALLOWANCE = 60.0


def _env(roots: Path) -> dict[str, str]:
    return {"CONVERTER_AUTOMATION_POLL_SECONDS": str(POLL),
            "CONVERTER_RUN_LEASE_SECONDS": "4",
            "CONVERTER_LOCAL_CONNECTOR_ROOTS": str(roots)}


def _connector(app: ServedApp, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    response = app.request("POST", "/v1/connectors", json={
        "provider": "local", "name": folder.name, "config": {"path": str(folder)}})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _automation(app: ServedApp, inbox: Path, outbox: Path, **fields: Any) -> str:
    response = app.request("POST", "/v1/automations", json={
        "source_connector_id": _connector(app, inbox), "formats": ["pdf"],
        "destination_connector_id": _connector(app, outbox), **fields})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _events(app: ServedApp, automation_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = app.request("GET", f"/v1/automations/{automation_id}/events",
                           params={"limit": 100, "cursor": cursor}).json()
        found += page["data"]
        if not page["next_cursor"]:
            return found
        cursor = page["next_cursor"]


def _outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:g}s")
        time.sleep(0.2)


def _expected() -> list[str]:
    return sorted(Path(doc).stem + ".pdf" for doc in DOCS)


def _restarted(first: ServedApp) -> ServedApp:
    """A new server on the same data directory, answering to the same key."""
    second = ServedApp(first.data_dir, env={k: v for k, v in first.env.items()
                                            if k.startswith("CONVERTER_")
                                            and k not in ("CONVERTER_PORT",)})
    second.key = first.key
    second.http.headers["X-API-Key"] = first.key
    return second


def _once_each(events: list[dict[str, Any]], kind: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in events:
        if event["kind"] == kind:
            counts[event["path"]] = counts.get(event["path"], 0) + 1
    return counts


def test_a_file_being_written_waits_and_after_delete_and_move(
        serve: type[ServedApp], tmp_path: Path, corpus: Path) -> None:
    """A file growing across listings is converted only once it is complete; delete and
    move: act on the source only after delivery."""
    roots = tmp_path / "roots"
    roots.mkdir()
    app = serve(env=_env(roots)).start()
    inbox, outbox = roots / "in", roots / "out"
    _connector(app, inbox)
    automation_id = _automation(app, inbox / "grow", outbox / "grow")
    data = (corpus / "docx/SampleDoc.docx").read_bytes()
    growing = inbox / "grow" / "SampleDoc.docx"
    growing.parent.mkdir(parents=True, exist_ok=True)
    step = max(1, len(data) // 16)
    with growing.open("wb") as out:
        for start in range(0, len(data), step):
            out.write(data[start:start + step])
            out.flush()
            # Faster than the listings: no two of them (POLL apart) see the same size.
            time.sleep(POLL * 0.3)
    _wait(lambda: _outputs(outbox / "grow") == ["SampleDoc.pdf"], 2 * POLL + 60, "its PDF")
    events = _events(app, automation_id)
    assert not [e for e in events if e["kind"] == "failed"], events  # never a partial one
    assert len([e for e in events if e["kind"] == "seen"]) >= 3
    assert _once_each(events, "converted") == {"SampleDoc.docx": 1}

    (inbox / "del").mkdir(exist_ok=True)
    (inbox / "mv").mkdir(exist_ok=True)
    deleting = _automation(app, inbox, outbox / "del", source_path="del", after="delete")
    moving = _automation(app, inbox, outbox / "mv", source_path="mv", after="move:done/mv")
    shutil.copy(corpus / "odt/HelloWorld.odt", inbox / "del")
    shutil.copy(corpus / "odt/HelloWorld.odt", inbox / "mv")
    _wait(lambda: not (inbox / "del" / "HelloWorld.odt").exists()
          and not (inbox / "mv" / "HelloWorld.odt").exists(), 2 * POLL + 60, "after steps")
    assert _outputs(outbox / "del") == _outputs(outbox / "mv") == ["HelloWorld.pdf"]
    assert (inbox / "done" / "mv" / "HelloWorld.odt").read_bytes() == (
        corpus / "odt/HelloWorld.odt").read_bytes()
    assert deleting != moving


def test_bad_bodies_are_400_naming_the_field(serve: type[ServedApp], tmp_path: Path) -> None:
    """Each invalid field is refused with 400 and its name; unknown ids are 404."""
    roots = tmp_path / "roots"
    roots.mkdir()
    app = serve(env=_env(roots), workers=1).start()
    good = {"source_connector_id": _connector(app, roots / "a"), "formats": ["pdf"],
            "destination_connector_id": _connector(app, roots / "b")}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "formats": []}, "formats"),
        ({**good, "formats": ["exe"]}, "formats"),
        ({**good, "formats": "pdf"}, "formats"),
        ({**good, "after": "shred"}, "after"),
        ({**good, "after": "move:../up"}, "after"),
        ({**good, "source_path": "../etc"}, "source_path"),
        ({**good, "destination_subpath": "/abs"}, "destination_subpath"),
        ({**good, "enabled": "yes"}, "enabled"),
        ({**good, "options": {"quality": 1000}}, "options.quality"),
        ({**good, "options": {"password": "x"}}, "options.password"),
        ({**good, "colour": "blue"}, "colour"),
        ({**good, "source_connector_id": ""}, "source_connector_id"),
        ({**good, "destination_connector_id": good["source_connector_id"],
          "source_path": "in", "destination_subpath": "in/out"}, "destination_subpath"),
    ]
    for body, field in cases:
        response = app.request("POST", "/v1/automations", json=body)
        assert response.status_code == 400, (body, response.text)
        error = error_of(response)
        assert error["field"] == field, (body, error)
    missing = app.request("POST", "/v1/automations",
                          json={**good, "source_connector_id": "con_nope"})
    assert missing.status_code == 404 and error_of(missing)["field"] == "source_connector_id"
    created = app.request("POST", "/v1/automations", json=good)
    assert created.status_code == 201, created.text
    automation_id = created.json()["id"]
    patched = app.request("PATCH", f"/v1/automations/{automation_id}",
                          json={"enabled": False})
    assert patched.status_code == 200 and patched.json()["enabled"] is False
    other = app.create_key(f"other-{secrets.token_hex(3)}", "bob")
    assert app.request("GET", f"/v1/automations/{automation_id}", key=other).status_code == 404
    assert app.request("DELETE", f"/v1/automations/{automation_id}").status_code == 204
    assert app.request("GET", f"/v1/automations/{automation_id}").status_code == 404
