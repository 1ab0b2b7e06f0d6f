"""url in place of file, on POST /v1/files and POST /v1/convert, under the address policy."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.support.origin import Origin, send
from tests.support.outputs import check_output
from tests.support.served import ServedApp, error_of, free_port

pytestmark = pytest.mark.engine


@pytest.fixture
def origin(corpus: Path) -> Iterator[Origin]:
    """A document server on 127.0.0.1: named by Content-Disposition, by path, and a redirect."""
    data = (corpus / "docx/SampleDoc.docx").read_bytes()
    server = Origin()
    server.routes["/presigned"] = lambda h: send(h, data, headers={
        "Content-Disposition": "attachment; filename=\"Quarterly report.docx\""})
    server.routes["/files/plain%20name.docx"] = lambda h: send(h, data)
    server.routes["/missing"] = lambda h: send(h, b"gone", status=404)

    def to_denied(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", f"http://127.0.0.2:{server.port}/presigned")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server.routes["/redirect"] = to_denied
    yield server
    server.close()


def test_url_import_when_allowed(serve: type[ServedApp], origin: Origin, corpus: Path) -> None:
    """Allowed by CONVERTER_WEBHOOK_ALLOW: stored with its name, and converted one-shot."""
    app = serve(env={"CONVERTER_WEBHOOK_ALLOW": "127.0.0.1/32"}, workers=1).start()
    expected = hashlib.sha256((corpus / "docx/SampleDoc.docx").read_bytes()).hexdigest()
    stored = app.request("POST", "/v1/files", data={"url": f"{origin.url}/presigned"})
    assert stored.status_code == 201, stored.text
    assert stored.json()["filename"] == "Quarterly report.docx"
    assert stored.json()["sha256"] == expected and stored.json()["format"] == "docx"
    named = app.request("POST", "/v1/files", data={"url": f"{origin.url}/files/plain%20name.docx"})
    assert named.status_code == 201 and named.json()["filename"] == "plain name.docx"
    converted = app.request("POST", "/v1/convert", data={
        "url": f"{origin.url}/presigned", "format": "pdf"})
    assert converted.status_code == 200, converted.text
    assert converted.headers["Content-Disposition"].startswith(
        'attachment; filename="Quarterly report.pdf"')
    check_output("pdf", converted.content, "I am a test document")
    # Refused on the redirect even though the first address was allowed.
    redirected = app.request("POST", "/v1/convert", data={
        "url": f"{origin.url}/redirect", "format": "pdf"})
    assert redirected.status_code == 400, redirected.text
    assert "127.0.0.2" in error_of(redirected)["message"]
    failing = app.request("POST", "/v1/files", data={"url": f"{origin.url}/missing"})
    assert failing.status_code == 502
    assert "127.0.0.1" in error_of(failing)["message"]
    closed = app.request("POST", "/v1/files", data={"url": f"http://127.0.0.1:{free_port()}/x"})
    assert closed.status_code == 502 and error_of(closed)["type"] == "upstream_error"


def test_url_import_denied_by_default(service: ServedApp, origin: Origin) -> None:
    """Without the setting, loopback is denied: 400 with the reason, nothing fetched."""
    for path in ("/v1/files", "/v1/convert"):
        response = service.request("POST", path, data={"url": f"{origin.url}/presigned",
                                                       "format": "pdf"})
        assert response.status_code == 400, response.text
        error = error_of(response)
        assert error["field"] == "url" and "loopback" in error["message"]
    assert origin.paths() == []


def test_file_and_url_together_are_refused(service: ServedApp, corpus: Path) -> None:
    """Exactly one source: both is a 400 naming url."""
    with (corpus / "docx/SampleDoc.docx").open("rb") as fh:
        response = service.request("POST", "/v1/convert", files={"file": fh},
                                   data={"url": "https://example.org/a.docx", "format": "pdf"})
    assert response.status_code == 400 and error_of(response)["field"] == "url"
