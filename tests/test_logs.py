"""Structured logs: a full lifecycle on a served app, logged as JSON, leaks no secret or text."""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from converter import logs
from tests.support.served import ServedApp
from tests.test_runs import create_ok, fetch, wait_run
from tests.test_runs_webhooks import Receiver, check_signature

CONVERT_ROUTE = "/v1/files/<file_id>/convert"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1."""
    server = Receiver()
    yield server
    server.close()


def _records(app: ServedApp) -> list[dict[str, Any]]:
    """Every line the server wrote, each of which must be a JSON object."""
    records = []
    for number, line in enumerate(app.log().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(record, dict) and {"time", "level", "logger", "message"} <= set(
            record), line
        records.append(record)
    return records


def convert(app: ServedApp, file_id: str, target: str, request_id: str) -> requests.Response:
    """POST /v1/files/{id}/convert with an X-Request-ID."""
    return app.request("POST", f"/v1/files/{file_id}/convert", data={"format": target},
                       headers={"X-Request-ID": request_id})


def _phrase(text: str) -> str:
    """A distinctive phrase of the document: its longest line of words."""
    lines = [line.strip() for line in text.splitlines() if len(line.split()) >= 4]
    assert lines, text[:500]
    return max(lines, key=len)[:80]


@pytest.mark.engine
def test_lifecycle_logs_are_json_and_leak_nothing(serve: type[ServedApp], corpus: Path,
                                                 receiver: Receiver) -> None:
    """Upload, convert, run with a webhook, download: JSON lines for every request, gunicorn
    and the engine; no API key, webhook secret, download token or document text in them."""
    app = serve(workers=1, env={"CONVERTER_LOG_FORMAT": "json", "CONVERTER_LOG_LEVEL": "INFO",
                                "CONVERTER_WEBHOOK_ALLOW": "127.0.0.0/8"}).start()
    given_id = "trace-0123456789abcdef"
    upload = app.upload(corpus / "docx/SampleDoc.docx")
    assert upload.status_code == 201, upload.text
    file_id = upload.json()["id"]
    text = convert(app, file_id, "txt", given_id)
    assert text.status_code == 200 and text.headers["X-Request-ID"] == given_id
    phrase = _phrase(fetch(text.json()["download_url"]).decode("utf-8-sig"))
    pdf = convert(app, file_id, "pdf", "no spaces allowed!")
    made_id = pdf.headers["X-Request-ID"]
    assert pdf.status_code == 200 and made_id != "no spaces allowed!" and made_id

    secret_response = app.request("GET", "/v1/webhooks/secret")
    secret = secret_response.json()["secret"]
    run_id = create_ok(app, file_id, "odt", webhook_url=receiver.url("/hook"))
    [call] = receiver.wait_for("/hook", 1)
    check_signature(secret, call)
    run = wait_run(app, run_id)
    assert fetch(pdf.json()["download_url"]).startswith(b"%PDF-")
    assert fetch(run["download_url"])
    wrong = app.request("GET", f"/v1/files/{file_id}", key="sk_live_wrong_key_000000")
    assert wrong.status_code == 401
    token = pdf.json()["download_url"].rsplit("/", 1)[1]
    app.stop()

    raw = app.log()
    secret_key = base64.b64decode(secret[len("whsec_"):])
    for needle, what in ((app.key, "the API key"), (app.key[len("sk_live_"):], "the key body"),
                         ("sk_live_wrong_key", "a rejected key"),
                         (secret, "the webhook secret"),
                         (secret[len("whsec_"):], "the secret's base64"),
                         (secret_key.hex(), "the secret's bytes"),
                         (token, "a download token"), (phrase, "document text"),
                         (call.headers["webhook-signature"][3:], "a webhook signature")):
        assert needle not in raw, f"{what} is in the logs"

    records = _records(app)
    http = [r for r in records if r["logger"] == "converter.http"]
    for record in http:
        assert {"request_id", "method", "route", "status", "duration_ms"} <= set(record), record
        assert record["route"].startswith("/") and "sk_live" not in json.dumps(record)
    by_id = {r["request_id"]: r for r in http}
    assert by_id[given_id]["route"] == CONVERT_ROUTE and by_id[given_id]["status"] == 200
    assert by_id[given_id]["file_id"] == file_id and by_id[given_id]["key_id"].startswith("key_")
    assert by_id[made_id]["file_id"] == file_id and by_id[made_id]["duration_ms"] > 0
    uploads = [r for r in http if r["route"] == "/v1/files" and r["method"] == "POST"]
    assert [r.get("file_id") for r in uploads] == [file_id]
    created = [r for r in http if r["route"] == "/v1/runs" and r["method"] == "POST"]
    assert [(r.get("run_id"), r.get("file_id")) for r in created] == [(run_id, file_id)]
    assert [r["status"] for r in http if r["route"] == "/v1/files/<file_id>"] == [401]
    downloads = [r for r in http if r["route"] == "/v1/downloads/<token>"]
    assert len(downloads) == 3 and all(r["file_id"] == file_id for r in downloads), downloads
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r["time"])
               for r in records)
    loggers = {r["logger"] for r in records}
    assert "gunicorn.error" in loggers, loggers  # gunicorn's own lines, in the same shape
    engine = [r for r in records if r["logger"] == "converter.engine"]
    assert any(r.get("instance") == "engine-0" and r.get("reason") == "start"
               and "ready" in r["message"] for r in engine), engine
    # The bridge runs in LibreOffice's Python; its lines are re-logged in the same shape.
    bridge = [r for r in records if r["logger"] == "converter.engine.bridge"]
    assert any(r["message"].startswith("serving on") and r["instance"] == "engine-0"
               for r in bridge), bridge


def _record(**extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("converter.http", logging.INFO, __file__, 1, "GET %s", ("/x",),
                               None)
    record.__dict__.update(extra)
    return record


def test_text_and_json_lines_carry_the_same_fields() -> None:
    """Extra fields are JSON keys in one format and key=value pairs in the other."""
    line = logs.formatter("json").format(_record(request_id="req_1", status=200))
    parsed = json.loads(line)
    assert (parsed["message"], parsed["request_id"], parsed["status"]) == ("GET /x", "req_1", 200)
    assert parsed["level"] == "INFO" and parsed["logger"] == "converter.http"
    text = logs.formatter("text").format(_record(request_id="req_1", status=200))
    assert "INFO converter.http[" in text and text.endswith("GET /x request_id=req_1 status=200")


def test_default_format_is_text_on_a_terminal_and_json_otherwise() -> None:
    """CONVERTER_LOG_FORMAT empty: decided by whether stderr is a terminal."""
    assert logs.resolve("", io.StringIO()) == "json"
    primary, secondary = os.openpty()
    try:
        with open(secondary, "w", closefd=False) as terminal:
            assert logs.resolve("", terminal) == "text"
    finally:
        os.close(primary)
        os.close(secondary)
    assert logs.resolve("text", io.StringIO()) == "text"
    assert logs.resolve("json") == "json"

