"""Retention: expires_in and CONVERTER_RETENTION_DAYS delete files with their artifacts,
CONVERTER_RUN_RETENTION_DAYS deletes runs and their Idempotency-Key replays, and a live
run keeps its file. Against served apps with a cleanup loop of one second."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.served import ServedApp, error_of, total

DAY = 86400.0
FAST_LOOP = {"CONVERTER_CLEANUP_INTERVAL_SECONDS": "1"}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll check until it holds; fail naming what did not happen."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.25)


def passes(app: ServedApp) -> float:
    """Cleanup passes the app completed so far."""
    return total(app.scrape(), "converter_cleanup_passes_total", outcome="ok")


def after_passes(app: ServedApp, count: int = 2) -> None:
    """Wait until count more cleanup passes have completed from now."""
    start = passes(app)
    wait_for(lambda: passes(app) >= start + count, 60, f"{count} cleanup passes")


def objects_of(app: ServedApp, file_id: str) -> list[Path]:
    """The local objects of a file: its original and every artifact."""
    root = app.data_dir / "objects"
    return [p for p in [root / "originals" / file_id, *(root / "artifacts" / file_id).glob("*")]
            if p.exists()]


def iso(text: str) -> datetime:
    """An API timestamp as a datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def create_run(app: ServedApp, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    """POST /v1/runs; returns the 202 body."""
    response = app.request("POST", "/v1/runs", json=body,
                           headers={"Idempotency-Key": idempotency_key})
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    return created


@pytest.mark.engine
def test_expires_in_deletes_the_file_and_its_artifacts(serve: type[ServedApp],
                                                       corpus: Path) -> None:
    """A file uploaded with expires_in=10 goes, original and artifacts; one without stays."""
    app = serve(env=FAST_LOOP, workers=1).start()
    with (corpus / "odt" / "HelloWorld.odt").open("rb") as fh:
        short = app.request("POST", "/v1/files", data={"expires_in": "10"},
                            files={"file": ("HelloWorld.odt", fh)})
    assert short.status_code == 201, short.text
    doomed = short.json()
    created = iso(doomed["created_at"])
    assert iso(doomed["expires_at"]) - created == timedelta(seconds=10)
    kept = app.upload_ok(corpus / "odt" / "HelloWorld.odt")
    assert kept["expires_at"] is None  # CONVERTER_RETENTION_DAYS defaults to forever
    assert app.convert(doomed["id"], "txt").json()["cached"] is False
    # The same bytes of the same owner: the content cache copies the artifact under kept,
    # which must outlive the file it came from.
    assert app.convert(kept["id"], "txt").json()["cached"] is True
    assert total(app.scrape(), "converter_engine_calls_total") == 1
    assert len(objects_of(app, doomed["id"])) == 2

    wait_for(lambda: app.request("GET", f"/v1/files/{doomed['id']}").status_code == 404,
             60, "deletion of the expired file")
    assert objects_of(app, doomed["id"]) == []
    assert not (app.data_dir / "objects" / "artifacts" / doomed["id"]).exists()
    after_passes(app)
    assert app.request("GET", f"/v1/files/{kept['id']}").status_code == 200
    assert len(objects_of(app, kept["id"])) == 2
    assert app.convert(kept["id"], "txt").json()["cached"] is True
    samples = app.scrape()
    assert total(samples, "converter_cleanup_items_total", kind="files") == 1
    assert total(samples, "converter_cleanup_duration_seconds_count") >= 1
    assert total(samples, "converter_cleanup_last_success_timestamp_seconds") > 0


@pytest.mark.parametrize("value", ["0", "-5", "soon", "1.5", "315360001"])
def test_expires_in_is_validated(service: ServedApp, corpus: Path, value: str) -> None:
    """expires_in must be whole seconds in range; the 400 names the field."""
    with (corpus / "odt" / "HelloWorld.odt").open("rb") as fh:
        response = service.request("POST", "/v1/files", data={"expires_in": value},
                                   files={"file": ("HelloWorld.odt", fh)})
    assert response.status_code == 400
    error = error_of(response)
    assert error["field"] == "expires_in" and "315360000" in error["message"]


@pytest.mark.engine
def test_retention_days_is_reported_and_shortened_by_expires_in(serve: type[ServedApp],
                                                                corpus: Path) -> None:
    """expires_at is the sooner of expires_in and CONVERTER_RETENTION_DAYS."""
    app = serve(env={"CONVERTER_RETENTION_DAYS": "2"}, workers=1).start()
    plain = app.upload_ok(corpus / "odt" / "HelloWorld.odt")
    assert iso(plain["expires_at"]) - iso(plain["created_at"]) == timedelta(days=2)
    with (corpus / "odt" / "HelloWorld.odt").open("rb") as fh:
        longer = app.request("POST", "/v1/files", data={"expires_in": str(5 * 86400)},
                             files={"file": ("HelloWorld.odt", fh)}).json()
    assert iso(longer["expires_at"]) - iso(longer["created_at"]) == timedelta(days=2)
    listed = {f["id"]: f for f in app.request("GET", "/v1/files").json()["data"]}
    assert listed[plain["id"]]["expires_at"] == plain["expires_at"]


@pytest.mark.engine
def test_runs_expire_with_their_replays_and_keep_their_file_while_live(
        serve: type[ServedApp], corpus: Path) -> None:
    """A finished run outlives its file's retention, holding the file; then both go."""
    run_life = 20.0  # long against a slow machine's pass, short for a test
    app = serve(env={**FAST_LOOP, "CONVERTER_RETENTION_DAYS": str(1 / DAY),
                     "CONVERTER_RUN_RETENTION_DAYS": str(run_life / DAY)}, workers=1).start()
    file = app.upload_ok(corpus / "odt" / "HelloWorld.odt")
    body = {"file_id": file["id"], "format": "txt"}
    run = create_run(app, body, "retained-run")

    def status() -> str:
        return str(app.request("GET", f"/v1/runs/{run['run_id']}").json().get("status"))

    wait_for(lambda: status() in ("completed", "failed"), 120, "the run finishing")
    assert status() == "completed"
    # The file's own second of retention is long past; passes ran; the live run holds it.
    after_passes(app)
    assert app.request("GET", f"/v1/files/{file['id']}").status_code == 200
    finished = app.request("GET", f"/v1/runs/{run['run_id']}").json()
    assert finished["download_url"] and datetime.now(UTC) < iso(
        finished["completed_at"]) + timedelta(seconds=run_life), "the test ran too slowly"
    replay = app.request("POST", "/v1/runs", json=body,
                         headers={"Idempotency-Key": "retained-run"})
    assert replay.headers.get("Idempotent-Replayed") == "true"

    wait_for(lambda: app.request("GET", f"/v1/runs/{run['run_id']}").status_code == 404,
             run_life + 60, "deletion of the expired run")
    wait_for(lambda: app.request("GET", f"/v1/files/{file['id']}").status_code == 404,
             60, "deletion of the file its run held")
    assert objects_of(app, file["id"]) == []
    samples = app.scrape()
    assert total(samples, "converter_cleanup_items_total", kind="runs") >= 1
    assert total(samples, "converter_cleanup_items_total", kind="files") == 1
    # The stored replay went with the run: the same request is not answered with a deleted
    # run's id but looked at afresh, and its file is gone.
    again = app.request("POST", "/v1/runs", json=body,
                        headers={"Idempotency-Key": "retained-run"})
    assert again.status_code == 404 and error_of(again)["field"] == "file_id"
