"""Every error of the API table, in its JSON shape, and signed download links."""

from __future__ import annotations

import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.served import ServedApp, error_of


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """A server with tiny limits: 1 MiB uploads, 2 s links, 3 s conversions, one instance."""
    app = ServedApp(tmp_path_factory.mktemp("strict"), workers=1, env={
        "CONVERTER_MAX_UPLOAD_MB": "1",
        "CONVERTER_URL_TTL": "2",
        "CONVERTER_CONVERSION_TIMEOUT": "3",
    })
    app.start()
    yield app
    app.stop()


def _doc_id(service: ServedApp, corpus: Path) -> str:
    return service.upload_ok(corpus / "docx/SampleDoc.docx")["id"]


# ------------------------------------------------------------------------ 400
def test_unsupported_pair_lists_valid_targets(service: ServedApp, corpus: Path) -> None:
    """docx → xlsx is not in the matrix: 400 with the valid targets, in the message too."""
    response = service.convert(_doc_id(service, corpus), "xlsx")
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request" and error["field"] == "format"
    assert error["valid_targets"] == ["pdf", "html", "txt", "odt", "png"]
    assert "pdf, html, txt, odt, png" in error["message"]


@pytest.mark.parametrize(("data", "field"), [
    ({}, "format"),
    ({"format": ""}, "format"),
    ({"format": "exe"}, "format"),
    ({"format": "pdf", "options": "not json"}, "options"),
    ({"format": "pdf", "options": '{"colour": "red"}'}, "options.colour"),
    ({"format": "pdf", "options": '{"pdfa": "9"}'}, "options.pdfa"),
    ({"format": "pdf", "options": '{"page_range": "all of them"}'}, "options.page_range"),
])
def test_bad_convert_fields_are_400_naming_the_field(service: ServedApp, corpus: Path,
                                                    data: dict[str, str], field: str) -> None:
    """Missing or unknown format and bad options name the field at fault."""
    response = service.request("POST", f"/v1/files/{_doc_id(service, corpus)}/convert",
                               data=data)
    assert response.status_code == 400, response.text
    assert error_of(response)["field"] == field


def test_convert_accepts_urlencoded_multipart_and_json(service: ServedApp, corpus: Path) -> None:
    """The format field may come as a form (either encoding) or JSON."""
    file_id = _doc_id(service, corpus)
    path = f"/v1/files/{file_id}/convert"
    assert service.request("POST", path, data={"format": "txt"}).status_code == 200
    assert service.request("POST", path, files={"format": (None, "txt")}).status_code == 200
    assert service.request("POST", path, json={"format": "txt"}).status_code == 200


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("empty.docx", b"", "empty"),
    ("notes.txt", b"just some text\n", "supported formats"),
    ("report.docx", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "not a docx"),
    ("random.docx", bytes(range(256)) * 40, "not a docx"),
])
def test_bad_uploads_are_400(service: ServedApp, name: str, content: bytes, reason: str) -> None:
    """Empty, unsupported, or content that contradicts the extension."""
    response = service.request("POST", "/v1/files", files={"file": (name, content)})
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["field"] == "file" and reason in error["message"]


def test_spreadsheet_named_docx_is_400(service: ServedApp, corpus: Path) -> None:
    """Real xlsx content with a .docx name contradicts its extension."""
    response = service.upload(corpus / "xlsx/SampleSS.xlsx", filename="SampleSS.docx")
    assert response.status_code == 400
    assert "content is xlsx but the file is named .docx" in error_of(response)["message"]


def test_missing_file_field_and_bad_scope(service: ServedApp, corpus: Path) -> None:
    """No `file` field, or a scope outside personal/workspace."""
    response = service.request("POST", "/v1/files", data={"scope": "personal"})
    assert response.status_code == 400 and error_of(response)["field"] == "file"
    response = service.upload(corpus / "docx/SampleDoc.docx", scope="public")
    assert response.status_code == 400
    error = error_of(response)
    assert error["field"] == "scope" and error["valid_values"] == ["personal", "workspace"]


# ------------------------------------------------------------------------ 404
def test_unknown_file_is_404(service: ServedApp) -> None:
    """Nonexistent ids look exactly like invisible ones."""
    for method, path in (("GET", "/v1/files/file_doesnotexist"),
                         ("POST", "/v1/files/file_doesnotexist/convert"),
                         ("DELETE", "/v1/files/file_doesnotexist")):
        response = service.request(method, path, data={"format": "pdf"})
        assert response.status_code == 404
        assert error_of(response)["type"] == "not_found"


def test_unknown_route_and_method_are_json(service: ServedApp) -> None:
    """Even routing errors use the JSON envelope."""
    assert error_of(service.request("GET", "/v1/nothing-here"))["type"] == "not_found"
    response = service.request("PUT", "/v1/files")
    assert response.status_code == 405 and error_of(response)["type"] == "method_not_allowed"


# ------------------------------------------------------------------------ 413
def test_upload_over_the_limit_is_413(strict: ServedApp, corpus: Path) -> None:
    """A 2.3 MB upload against CONVERTER_MAX_UPLOAD_MB=1."""
    response = strict.upload(corpus / "xls/57231_MixedGasReport.xls")
    assert response.status_code == 413
    error = error_of(response)
    assert error["type"] == "payload_too_large" and "CONVERTER_MAX_UPLOAD_MB" in error["message"]


# ------------------------------------------------------------------------ 422
def test_encrypted_document_needs_its_password(service: ServedApp, corpus: Path) -> None:
    """Password-protected documents are kept, and convert only with options.password."""
    response = service.upload(corpus / "bad/encrypted-with-pwd_hello.odt")
    assert response.status_code == 201 and response.json()["encrypted"] is True
    converted = service.convert(response.json()["id"], "pdf")
    assert converted.status_code == 400
    error = error_of(converted)
    assert error["type"] == "password_required" and error["field"] == "options.password"


def test_corrupt_document_is_422_at_convert(service: ServedApp, corpus: Path) -> None:
    """Looks like an xlsx, but LibreOffice cannot load it."""
    file_id = service.upload_ok(corpus / "bad/xlsx-corrupted.xlsx")["id"]
    response = service.convert(file_id, "pdf")
    assert response.status_code == 422
    assert error_of(response)["type"] == "unprocessable_document"
    # The service keeps answering normally.
    assert service.convert(_doc_id(service, corpus), "pdf").status_code == 200


def test_zip_bomb_is_422(service: ServedApp, tmp_path: Path) -> None:
    """A docx declaring more than CONVERTER_MAX_UNCOMPRESSED_MB when unpacked."""
    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
        with zf.open("word/media/huge.bin", "w", force_zip64=True) as member:
            block = bytes(16 * 2**20)
            for _ in range(66):  # 1056 MiB of zeros, about 1 MiB compressed
                member.write(block)
    response = service.upload(path)
    assert response.status_code == 422
    assert "unpacks to" in error_of(response)["message"]


# ------------------------------------------------------------------------ 502
def test_conversion_over_the_timeout_is_502_retryable_and_on_time(strict: ServedApp,
                                                                  corpus: Path) -> None:
    """A 13 s document against a 3 s timeout: 502 at about 3 s, and the engine recovers."""
    file_id = strict.upload_ok(corpus / "odt/OpenDocument-v1.2-os-part1.odt")["id"]
    started = time.monotonic()
    response = strict.convert(file_id, "pdf")
    elapsed = time.monotonic() - started
    assert response.status_code == 502
    error = error_of(response)
    assert error["type"] == "upstream_error" and error["retryable"] is True
    assert "CONVERTER_CONVERSION_TIMEOUT" in error["message"]
    assert elapsed < 3 + 2.0, elapsed
    # The killed instance is restarted (readiness says when) and serves the next request.
    deadline = time.monotonic() + 60
    while requests.get(f"{strict.url}/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "the engine did not come back"
        time.sleep(0.2)
    ok = strict.convert(strict.upload_ok(corpus / "docx/SampleDoc.docx")["id"], "pdf")
    assert ok.status_code == 200, ok.text
    assert strict.metrics()['converter_engine_restarts_total{reason="timeout"}'] >= 1


# ------------------------------------------------------------------------ downloads
def test_download_serves_bytes_with_type_and_name(service: ServedApp, corpus: Path) -> None:
    """Content-Type of the target, Content-Disposition with the original name."""
    file_id = service.upload_ok(corpus / "docx/SampleDoc.docx", filename="Quarterly report.docx")
    body = service.convert(file_id["id"], "pdf").json()
    response = requests.get(body["download_url"], timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="Quarterly report.pdf"')
    assert response.content.startswith(b"%PDF-")


def test_tampered_links_are_403(service: ServedApp, corpus: Path) -> None:
    """Any change to the token invalidates it."""
    url = service.convert(_doc_id(service, corpus), "pdf").json()["download_url"]
    base, token = url.rsplit("/", 1)
    body, mac = token.split(".")
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    for bad in (f"{flipped}.{mac}", f"{body}.{mac[:-2]}", "garbage", f"{body}.", "a.b.c"):
        response = requests.get(f"{base}/{bad}", timeout=10)
        assert response.status_code == 403, bad
        assert error_of(response)["type"] == "forbidden"


def test_expired_links_are_403(strict: ServedApp, corpus: Path) -> None:
    """CONVERTER_URL_TTL=2: valid at once, 403 three seconds later."""
    file_id = strict.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    url = strict.convert(file_id, "txt").json()["download_url"]
    assert requests.get(url, timeout=10).status_code == 200
    time.sleep(3)
    response = requests.get(url, timeout=10)
    assert response.status_code == 403
    assert "expired" in error_of(response)["message"]


def test_formats_endpoint_serves_the_matrix(service: ServedApp) -> None:
    """GET /v1/formats lists every source with its targets."""
    sources = requests.get(f"{service.url}/v1/formats", timeout=10).json()["sources"]
    assert list(sources["docx"]["targets"]) == ["pdf", "html", "txt", "odt", "png"]
    assert "page_range" in sources["docx"]["targets"]["pdf"]["options"]


def test_health_and_readiness(service: ServedApp) -> None:
    """Both probes answer 200 on a ready server."""
    assert requests.get(f"{service.url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{service.url}/readyz", timeout=10).json()
    assert ready == {"status": "ready",
                     "checks": {"database": "ok", "storage": "ok", "disk": "ok", "engine": "ok"}}


