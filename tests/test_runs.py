"""Async runs over a real served app: lifecycle, export, errors, listing and the hourly budget."""

from __future__ import annotations

import io
import time
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

import pypdf
import pytest
import requests

from tests.support.served import ServedApp, error_of

TERMINAL = ("completed", "failed")


def create_run(app: ServedApp, body: dict[str, Any], key: str | None = None,
               idempotency_key: str | None = None) -> requests.Response:
    """POST /v1/runs with a JSON body (and an Idempotency-Key if given)."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return app.request("POST", "/v1/runs", key=key, json=body, headers=headers)


def create_ok(app: ServedApp, file_id: str, target: str, key: str | None = None,
              **extra: Any) -> str:
    """Create a run, assert 202, return its id."""
    response = create_run(app, {"file_id": file_id, "format": target, **extra}, key=key)
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    return run_id


def wait_run(app: ServedApp, run_id: str, key: str | None = None, timeout: float = 180.0,
             until: tuple[str, ...] = TERMINAL) -> dict[str, Any]:
    """Poll GET /v1/runs/{id} until its status is in until; return the run JSON."""
    deadline = time.monotonic() + timeout
    while True:
        response = app.request("GET", f"/v1/runs/{run_id}", key=key, timeout=30)
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        if run["status"] in until:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']} after {timeout}s:\n"
                                 f"{run}\n{app.log()[-3000:]}")
        time.sleep(0.2)


def fetch(url: str) -> bytes:
    """Download a signed URL (no API key needed)."""
    response = requests.get(url, timeout=60)
    assert response.status_code == 200, response.text
    return response.content


def pdf_pages(data: bytes) -> int:
    """Page count of a PDF held in memory."""
    assert data.startswith(b"%PDF-"), data[:20]
    return len(pypdf.PdfReader(io.BytesIO(data)).pages)


def targets_of(app: ServedApp, source: str) -> list[str]:
    """The matrix's targets for a source format, as GET /v1/formats lists them."""
    return list(app.request("GET", "/v1/formats").json()["sources"][source]["targets"])


def test_run_lifecycle_and_export(service: ServedApp, corpus: Path) -> None:
    """202 → poll → completed with a signed URL → download; then re-export, cached on repeat."""
    file_id = service.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    response = create_run(service, {"file_id": file_id, "format": "odt"})
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"run_id", "status", "status_url"}
    assert body["status"] == "pending"
    assert body["status_url"] == f"{service.url}/v1/runs/{body['run_id']}"
    assert response.headers["Location"] == body["status_url"]
    assert int(response.headers["RateLimit-Limit"]) == 30
    assert 0 <= int(response.headers["RateLimit-Remaining"]) < 30

    first = requests.get(body["status_url"], headers={"X-API-Key": service.key}, timeout=10)
    assert first.status_code == 200 and first.json()["status"] in ("pending", "running",
                                                                     "completed")
    run = wait_run(service, body["run_id"])
    assert run["status"] == "completed", run
    assert run["id"] == body["run_id"] and run["file_id"] == file_id and run["format"] == "odt"
    assert run["error"] is None and run["webhook"] is None and run["attempts"] == 1
    assert run["created_at"] <= run["started_at"] <= run["completed_at"]
    expires = datetime.fromisoformat(run["expires_at"].replace("Z", "+00:00"))
    assert 3500 < expires.timestamp() - time.time() <= 3601, run["expires_at"]
    data = fetch(run["download_url"])
    assert len(data) == run["size_bytes"] > 0
    with zipfile.ZipFile(io.BytesIO(data)) as odt:
        assert odt.read("mimetype") == b"application/vnd.oasis.opendocument.text"

    exported = service.request("POST", f"/v1/runs/{run['id']}/export", json={"format": "pdf"})
    assert exported.status_code == 200, exported.text
    out = exported.json()
    assert out["run_id"] == run["id"] and out["format"] == "pdf" and out["cached"] is False
    pdf = fetch(out["download_url"])
    assert pdf_pages(pdf) >= 1 and len(pdf) == out["size_bytes"]
    again = service.request("POST", f"/v1/runs/{run['id']}/export", json={"format": "pdf"})
    assert again.status_code == 200 and again.json()["cached"] is True
    assert fetch(again.json()["download_url"]) == pdf

    bad = service.request("POST", f"/v1/runs/{run['id']}/export", json={"format": "xlsx"})
    assert bad.status_code == 400
    assert error_of(bad)["valid_targets"] == targets_of(service, "odt")


def test_export_is_409_until_completed_and_400_for_a_pdf_output(service: ServedApp,
                                                                 corpus: Path) -> None:
    """A run still working cannot be exported; a PDF output is not a convertible source."""
    file_id = service.upload_ok(corpus / "odt/excelfileformat.odt")["id"]
    run_id = create_ok(service, file_id, "pdf")
    early = service.request("POST", f"/v1/runs/{run_id}/export", json={"format": "docx"})
    assert early.status_code == 409, early.text
    error = error_of(early)
    assert error["type"] == "conflict" and error["status"] in ("pending", "running")
    run = wait_run(service, run_id)
    assert run["status"] == "completed", run
    assert pdf_pages(fetch(run["download_url"])) > 100
    late = service.request("POST", f"/v1/runs/{run_id}/export", json={"format": "docx"})
    assert late.status_code == 400
    error = error_of(late)
    assert error["valid_targets"] == [] and "pdf is not a convertible source" in error["message"]


def test_a_bad_document_fails_with_a_clear_error(service: ServedApp, corpus: Path) -> None:
    """A document LibreOffice cannot open: failed with a readable error, not retried."""
    file_id = service.upload_ok(corpus / "bad/xlsx-corrupted.xlsx")["id"]
    run = wait_run(service, create_ok(service, file_id, "pdf"))
    assert run["status"] == "failed"
    assert "cannot open or convert this document" in run["error"]
    assert run["download_url"] is None and run["size_bytes"] is None
    assert run["attempts"] == 1
    export = service.request("POST", f"/v1/runs/{run['id']}/export", json={"format": "pdf"})
    assert export.status_code == 409 and error_of(export)["status"] == "failed"
    # Deleting the file takes its runs with it.
    assert service.request("DELETE", f"/v1/files/{file_id}").status_code == 204
    assert service.request("GET", f"/v1/runs/{run['id']}").status_code == 404


def test_create_errors(service: ServedApp, corpus: Path) -> None:
    """Unknown pair → 400 with valid targets; unknown file → 404; malformed bodies → 400."""
    file_id = service.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    pair = create_run(service, {"file_id": file_id, "format": "xlsx"})
    assert pair.status_code == 400
    error = error_of(pair)
    assert error["field"] == "format" and error["valid_targets"] == targets_of(service, "docx")
    missing = create_run(service, {"file_id": file_id})
    assert missing.status_code == 400 and error_of(missing)["valid_targets"] == (
        targets_of(service, "docx"))
    unknown = create_run(service, {"file_id": "file_nope", "format": "pdf"})
    assert unknown.status_code == 404 and error_of(unknown)["type"] == "not_found"
    for body, field in (({"format": "pdf"}, "file_id"),
                        ({"file_id": file_id, "format": "pdf", "colour": 1}, "colour"),
                        ({"file_id": file_id, "format": "pdf", "options": [1]}, "options"),
                        ({"file_id": file_id, "format": "pdf", "options": {"dpi": 3}},
                         "options.dpi"),
                        ({"file_id": file_id, "format": "pdf", "webhook_url": 5}, "webhook_url")):
        response = create_run(service, body)
        assert response.status_code == 400, (body, response.text)
        assert error_of(response)["field"] == field, body
    not_json = service.request("POST", "/v1/runs", data="file_id=x")
    assert not_json.status_code == 400 and "JSON" in error_of(not_json)["message"]
    assert service.request("GET", "/v1/runs/run_nope").status_code == 404
    assert service.request("POST", "/v1/runs/run_nope/export",
                           json={"format": "pdf"}).status_code == 404
    assert requests.get(f"{service.url}/v1/runs", timeout=10).status_code == 401


@pytest.fixture(scope="module")
def people(service: ServedApp) -> dict[str, str]:
    """Two users in one workspace and one in another."""
    return {"ann": service.create_key("runs-ws", "ann"),
            "ben": service.create_key("runs-ws", "ben"),
            "cat": service.create_key("runs-other", "cat")}


def _all_pages(app: ServedApp, key: str, query: str = "") -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        path = f"/v1/runs?limit=2{query}" + (f"&cursor={cursor}" if cursor else "")
        response = app.request("GET", path, key=key)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["data"]) <= 2
        seen.extend(page["data"])
        cursor = page["next_cursor"]
        if cursor is None:
            return seen


def test_listing_pages_newest_first_within_scope(service: ServedApp, corpus: Path,
                                                 people: dict[str, str]) -> None:
    """Cursor pages cover every visible run once, newest first; scope rules match files."""
    doc = corpus / "odt/HelloWorld.odt"
    personal = service.upload_ok(doc, key=people["ann"])["id"]
    shared = service.upload_ok(doc, key=people["ann"], scope="workspace")["id"]
    other = service.upload_ok(doc, key=people["cat"])["id"]
    ann_runs = [create_ok(service, personal, "txt", key=people["ann"]),
                create_ok(service, personal, "pdf", key=people["ann"]),
                create_ok(service, shared, "txt", key=people["ann"]),
                create_ok(service, shared, "docx", key=people["ben"]),
                create_ok(service, personal, "html", key=people["ann"])]
    cat_run = create_ok(service, other, "txt", key=people["cat"])
    for run_id in ann_runs:
        wait_run(service, run_id, key=people["ann"])

    listed = _all_pages(service, people["ann"])
    assert [r["id"] for r in listed] == list(reversed(ann_runs))
    assert all(r["status"] == "completed" and r["download_url"] for r in listed)
    ben = [r["id"] for r in _all_pages(service, people["ben"])]
    assert ben == [ann_runs[3], ann_runs[2]]
    assert [r["id"] for r in _all_pages(service, people["cat"])] == [cat_run]
    by_file = _all_pages(service, people["ann"], f"&file_id={shared}")
    assert [r["id"] for r in by_file] == [ann_runs[3], ann_runs[2]]
    done = _all_pages(service, people["ann"], "&status=completed")
    assert {r["id"] for r in done} == set(ann_runs)
    assert _all_pages(service, people["ann"], "&status=failed") == []

    # Not visible is 404, for reading, exporting and creating alike.
    assert service.request("GET", f"/v1/runs/{ann_runs[0]}", key=people["ben"]).status_code == 404
    assert service.request("GET", f"/v1/runs/{ann_runs[2]}", key=people["ben"]).status_code == 200
    assert service.request("GET", f"/v1/runs/{ann_runs[2]}", key=people["cat"]).status_code == 404
    assert service.request("POST", f"/v1/runs/{ann_runs[0]}/export", key=people["ben"],
                           json={"format": "pdf"}).status_code == 404
    assert create_run(service, {"file_id": personal, "format": "pdf"},
                      key=people["ben"]).status_code == 404

    for query, field in (("?status=done", "status"), ("?cursor=%%%", "cursor"),
                         ("?limit=0", "limit")):
        response = service.request("GET", f"/v1/runs{query}", key=people["ann"])
        assert response.status_code == 400 and error_of(response)["field"] == field


def test_hourly_budget_429_frees_failed_runs_and_resets(serve: type[ServedApp],
                                                        corpus: Path) -> None:
    """Over CONVERTER_RUNS_PER_HOUR → 429 with Retry-After; failed runs and time free budget."""
    app = serve(env={"CONVERTER_RUNS_PER_HOUR": "2", "CONVERTER_RUNS_WINDOW_SECONDS": "8"},
                workers=1).start()
    good = app.upload_ok(corpus / "odt/HelloWorld.odt")["id"]
    bad = app.upload_ok(corpus / "bad/xlsx-corrupted.xlsx")["id"]

    failing = create_run(app, {"file_id": bad, "format": "pdf"})
    assert failing.status_code == 202 and failing.headers["RateLimit-Remaining"] == "1"
    ok = create_run(app, {"file_id": good, "format": "pdf"})
    assert ok.status_code == 202 and ok.headers["RateLimit-Remaining"] == "0"
    assert wait_run(app, failing.json()["run_id"])["status"] == "failed"

    # The failed run gave its slot back.
    freed = create_run(app, {"file_id": good, "format": "txt"})
    assert freed.status_code == 202, freed.text
    over = create_run(app, {"file_id": good, "format": "html"})
    assert over.status_code == 429
    error = error_of(over)
    assert error["type"] == "rate_limit_exceeded"
    retry_after = int(over.headers["Retry-After"])
    assert 1 <= retry_after <= 8 and error["retry_after"] == retry_after
    assert over.headers["RateLimit-Limit"] == "2" and over.headers["RateLimit-Remaining"] == "0"
    assert int(over.headers["RateLimit-Reset"]) == retry_after
    # Other endpoints keep working: they have their own per-minute budget.
    assert app.request("GET", "/v1/runs").status_code == 200

    time.sleep(retry_after + 0.5)
    after = create_run(app, {"file_id": good, "format": "html"})
    assert after.status_code == 202, after.text
