"""POST /v1/convert: bytes in, converted bytes out, through the content-keyed cache."""

from __future__ import annotations

import random
import shutil
import time
import zipfile
from pathlib import Path

import pytest
import requests

from tests.support.outputs import check_output
from tests.support.served import ServedApp, error_of

pytestmark = pytest.mark.engine


def post(app: ServedApp, path: Path, key: str | None = None, filename: str | None = None,
         **data: str) -> requests.Response:
    """One-shot conversion of the file at path."""
    with path.open("rb") as fh:
        return app.request("POST", "/v1/convert", key=key,
                           files={"file": (filename or path.name, fh)}, data=data)


def test_round_trip_and_cache(service: ServedApp, corpus: Path) -> None:
    """Bytes, type, a safe attachment name, miss then hit; nothing stored by default."""
    key = service.create_key("oneshot-ws", "sidecar")
    source = corpus / "docx/SampleDoc.docx"
    first = post(service, source, key=key, filename='../evil "name".docx', format="pdf")
    assert first.status_code == 200, first.text
    assert first.headers["Content-Type"] == "application/pdf"
    assert first.headers["X-Converter-Cache"] == "miss"
    disposition = first.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="evil _name_.pdf"'), disposition
    assert "/" not in disposition and ".." not in disposition
    check_output("pdf", first.content, "I am a test document")
    assert "X-Converter-File-Id" not in first.headers
    before = service.metrics()["converter_engine_calls_total"]
    second = post(service, source, key=key, format="pdf")
    assert second.headers["X-Converter-Cache"] == "hit"
    assert second.content == first.content
    assert service.metrics()["converter_engine_calls_total"] == before
    listed = service.request("GET", "/v1/files", key=key).json()
    assert listed["data"] == []


def test_cache_is_per_workspace(service: ServedApp, corpus: Path) -> None:
    """The same bytes from another workspace convert again: caches are never shared."""
    source = corpus / "odt/HelloWorld.odt"
    first = post(service, source, key=service.create_key("ws-a", "u"), format="txt")
    other = post(service, source, key=service.create_key("ws-b", "u"), format="txt")
    same = post(service, source, key=service.create_key("ws-a", "v"), format="txt")
    assert (first.headers["X-Converter-Cache"], other.headers["X-Converter-Cache"],
            same.headers["X-Converter-Cache"]) == ("miss", "miss", "hit")


def test_store_keeps_the_upload(service: ServedApp, corpus: Path) -> None:
    """store=true keeps the upload as a file, whose id comes back in X-Converter-File-Id."""
    key = service.create_key("oneshot-store", "u")
    response = post(service, corpus / "xlsx/SampleSS.xlsx", key=key, format="csv",
                    store="true", sheet="2")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/csv")
    check_output("csv", response.content, "Start of 2nd sheet")
    file_id = response.headers["X-Converter-File-Id"]
    got = service.request("GET", f"/v1/files/{file_id}", key=key)
    assert got.status_code == 200 and got.json()["filename"] == "SampleSS.xlsx"
    assert service.convert(file_id, "pdf", key=key).status_code == 200


@pytest.mark.parametrize(("data", "files", "status", "field"), [
    ({"format": "pdf"}, False, 400, "file"),
    ({"format": "mp3"}, True, 400, "format"),
    ({}, True, 400, "format"),
    ({"format": "pdf", "store": "maybe"}, True, 400, "store"),
    ({"format": "pdf", "pages": "2"}, True, 400, "options.pages"),
])
def test_errors_follow_the_error_table(service: ServedApp, corpus: Path, data: dict[str, str],
                                       files: bool, status: int, field: str) -> None:
    """Missing file, bad format, bad flag, an option of another target: 400 naming it."""
    upload = {"file": ("SampleDoc.docx", (corpus / "docx/SampleDoc.docx").read_bytes())}
    response = service.request("POST", "/v1/convert", data=data,
                               files=upload if files else None)
    assert response.status_code == status, response.text
    assert error_of(response)["field"] == field


def test_scopes_and_limits(serve: type[ServedApp], corpus: Path) -> None:
    """No key: 401; past CONVERTER_MAX_UPLOAD_MB: 413; a broken document: 422."""
    app = serve(env={"CONVERTER_MAX_UPLOAD_MB": "1"}, workers=1).start()
    source = corpus / "docx/SampleDoc.docx"
    with source.open("rb") as fh:
        anonymous = requests.post(f"{app.url}/v1/convert", files={"file": fh},
                                  data={"format": "pdf"}, timeout=60)
    assert anonymous.status_code == 401
    big = corpus / "xls/57231_MixedGasReport.xls"
    assert big.stat().st_size > 2**20
    assert post(app, big, format="pdf").status_code == 413
    broken = post(app, corpus / "bad/truncated62886.docx", format="pdf")
    assert broken.status_code in (400, 422) and error_of(broken)["type"] in (
        "invalid_request", "unprocessable_document")


def _worker_pids(app: ServedApp) -> list[int]:
    pids = app.http_worker_pids()
    assert pids, f"no HTTP worker found:\n{app.log()[-2000:]}"
    return pids


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_90_mib_upload_streams(serve: type[ServedApp], corpus: Path, tmp_path: Path) -> None:
    """Request and response stream: a 90 MiB document moves the worker's peak RSS little."""
    app = serve(workers=1).start()
    big = tmp_path / "big.docx"
    shutil.copyfile(corpus / "docx/SampleDoc.docx", big)
    rng = random.Random(3)
    with zipfile.ZipFile(big, "a", compression=zipfile.ZIP_STORED) as zf:
        # Unreferenced by the document: LibreOffice never reads it, the HTTP path must.
        zf.writestr("customXml/blob.bin", rng.randbytes(90 * 2**20))
    assert big.stat().st_size > 90 * 2**20
    warm = post(app, corpus / "docx/SampleDoc.docx", format="pdf")
    assert warm.status_code == 200
    # Whichever HTTP worker takes the request (and the engine process, which is handed
    # a path): none may hold the document in memory.
    pids = [*_worker_pids(app), app.engine_pid() or 0]
    time.sleep(0.5)
    before = {pid: _peak_rss_mib(pid) for pid in pids if pid}
    response = post(app, big, format="pdf")
    assert response.status_code == 200, response.text
    check_output("pdf", response.content, "I am a test document")
    grown = max(_peak_rss_mib(pid) - peak for pid, peak in before.items())
    print(f"peak RSS of the HTTP workers and the engine process grew by {grown:.1f} MiB at "
          f"most for a {big.stat().st_size / 2**20:.0f} MiB one-shot upload")
    assert grown < 8, f"peak RSS grew by {grown:.1f} MiB"
