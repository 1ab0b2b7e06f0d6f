"""Exports end to end: real LibreOffice, a served app, local folders and S3 through moto.

Covers the status model, delivery metadata checked against what the destination
holds, on_conflict, workspace defaults, runs with a destination, zip bundles,
bad subpaths, a failing destination (retries, then failed, nothing left behind)
and Idempotency-Key replay.
"""

from __future__ import annotations

import hashlib
import io
import secrets
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.moto import BUCKET, raw_client
from tests.support.served import ServedApp, error_of, free_port

DOC = "docx/SampleDoc.docx"
ODT = "odt/HelloWorld.odt"


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory CONVERTER_LOCAL_CONNECTOR_ROOTS allows."""
    return tmp_path_factory.mktemp("export-root")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, roots: Path) -> Iterator[ServedApp]:
    """One served app for the module: local roots, loopback S3 allowed, quick backoff."""
    served = ServedApp(tmp_path_factory.mktemp("served-exports"), workers=1, env={
        "CONVERTER_LOCAL_CONNECTOR_ROOTS": str(roots),
        "CONVERTER_WEBHOOK_ALLOW": "127.0.0.0/8",
        "CONVERTER_CONNECTOR_DELIVERY_ATTEMPTS": "3",
        "CONVERTER_CONNECTOR_BACKOFF_SECONDS": "0.2",
        "CONVERTER_LOG_LEVEL": "INFO",
    })
    served.start()
    yield served
    served.stop()


def _connector(app: ServedApp, body: dict[str, Any]) -> str:
    response = app.request("POST", "/v1/connectors", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _local(app: ServedApp, roots: Path) -> tuple[str, Path]:
    folder = roots / f"c-{secrets.token_hex(4)}"
    folder.mkdir()
    return _connector(app, {"provider": "local", "path": str(folder)}), folder


def _export(app: ServedApp, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    response = app.request("POST", "/v1/exports", json=body, headers=headers)
    assert response.status_code == 202, response.text
    created: dict[str, Any] = response.json()
    assert created["status"] == "pending" and created["id"].startswith("exp_")
    return created


def wait_export(app: ServedApp, export_id: str, timeout: float = 300.0) -> dict[str, Any]:
    """Poll until the export completes or fails (generous: the machine is shared)."""
    deadline = time.monotonic() + timeout
    seen = set()
    while True:
        body: dict[str, Any] = app.request("GET", f"/v1/exports/{export_id}").json()
        seen.add(body["status"])
        assert body["status"] in ("pending", "processing", "completed", "failed"), body
        if body["status"] in ("completed", "failed"):
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"export {export_id} still {body['status']} after {timeout}s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def doc(app: ServedApp, corpus: Path) -> dict[str, Any]:
    """An uploaded docx."""
    return app.upload_ok(corpus / DOC)


def test_file_export_to_local_with_on_conflict(app: ServedApp, roots: Path,
                                               doc: dict[str, Any]) -> None:
    """rename → "(1)", overwrite → same path, fail → failed with the reason; all verified."""
    conn, folder = _local(app, roots)
    body = {"file_id": doc["id"], "format": "pdf", "destination_connector_id": conn,
            "destination_subpath": "reports//2024/"}
    first = wait_export(app, _export(app, body)["id"])
    assert first["status"] == "completed", first
    delivery = first["delivery"]
    assert delivery["connector_id"] == conn and delivery["path"] == "reports/2024/SampleDoc.pdf"
    written = (folder / delivery["path"]).read_bytes()
    assert written.startswith(b"%PDF")
    assert delivery["sha256"] == hashlib.sha256(written).hexdigest() == first["sha256"]
    assert delivery["size_bytes"] == len(written) == first["size_bytes"]
    assert delivery["delivered_at"] and delivery["etag"] is None
    downloaded = requests.get(first["download_url"], timeout=60)
    assert downloaded.status_code == 200 and downloaded.content == written
    assert first["destination_subpath"] == "reports/2024"

    second = wait_export(app, _export(app, body)["id"])
    assert second["delivery"]["path"] == "reports/2024/SampleDoc (1).pdf"
    overwritten = wait_export(app, _export(app, {**body, "on_conflict": "overwrite"})["id"])
    assert overwritten["delivery"]["path"] == "reports/2024/SampleDoc.pdf"
    failed = wait_export(app, _export(app, {**body, "on_conflict": "fail"})["id"])
    assert failed["status"] == "failed" and "already exists" in failed["error"]
    assert failed["delivery"] is None and failed["download_url"] is None
    assert sorted(p.name for p in (folder / "reports/2024").iterdir()) == [
        "SampleDoc (1).pdf", "SampleDoc.pdf"]


def test_run_with_a_destination_delivers_its_output_to_s3(app: ServedApp, corpus: Path,
                                                          moto_endpoint: str) -> None:
    """POST /v1/runs with a destination: the attached export delivers once the run is done."""
    prefix = f"runs-{secrets.token_hex(4)}"
    conn = _connector(app, {"provider": "s3", "bucket": BUCKET, "prefix": prefix,
                            "endpoint_url": moto_endpoint, "access_key_id": "testing",
                            "secret_access_key": "testing"})
    file_id = app.upload_ok(corpus / ODT)["id"]
    run = app.request("POST", "/v1/runs", json={
        "file_id": file_id, "format": "pdf", "destination_connector_id": conn,
        "destination_subpath": "out"})
    assert run.status_code == 202, run.text
    export = wait_export(app, run.json()["export_id"])
    assert export["status"] == "completed", export
    assert export["run_id"] == run.json()["run_id"] and export["format"] == "pdf"
    delivery = export["delivery"]
    assert delivery["path"] == "out/HelloWorld.pdf" and delivery["etag"]
    got = raw_client(moto_endpoint).get_object(Bucket=BUCKET, Key=f"{prefix}/out/HelloWorld.pdf")
    data = got["Body"].read()
    assert hashlib.sha256(data).hexdigest() == delivery["sha256"]
    assert got["ETag"].strip('"') == delivery["etag"]
    # The run's own download is unchanged by its delivery.
    deadline = time.monotonic() + 60
    while app.request("GET", f"/v1/runs/{run.json()['run_id']}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_run_ids_bundled_as_zip_and_one_per_item(app: ServedApp, corpus: Path,
                                                 roots: Path) -> None:
    """bundle=zip delivers one zip of every output; bundle=none one object per run."""
    conn, folder = _local(app, roots)
    file_id = app.upload_ok(corpus / ODT)["id"]
    run_ids = []
    for target in ("pdf", "txt"):
        created = app.request("POST", "/v1/runs", json={"file_id": file_id, "format": target})
        run_ids.append(created.json()["run_id"])
    zipped = wait_export(app, _export(app, {"run_ids": run_ids, "bundle": "zip",
                                            "destination_connector_id": conn})["id"])
    assert zipped["status"] == "completed", zipped
    assert zipped["run_ids"] == run_ids and len(zipped["items"]) == 2
    archive = zipfile.ZipFile(io.BytesIO((folder / zipped["delivery"]["path"]).read_bytes()))
    assert sorted(archive.namelist()) == ["HelloWorld.pdf", "HelloWorld.txt"]
    assert requests.get(zipped["download_url"], timeout=60).content == (
        folder / zipped["delivery"]["path"]).read_bytes()
    each = wait_export(app, _export(app, {"run_ids": run_ids, "destination_connector_id": conn,
                                          "destination_subpath": "each"})["id"])
    assert each["status"] == "completed", each
    assert each["delivery"] is None and each["download_url"] is None  # one per item instead
    assert sorted(i["delivery"]["path"] for i in each["items"]) == [
        "each/HelloWorld.pdf", "each/HelloWorld.txt"]
    for item in each["items"]:
        assert requests.get(item["download_url"], timeout=60).content == (
            folder / item["delivery"]["path"]).read_bytes()
    txt_only = app.request("POST", "/v1/exports", json={"run_ids": run_ids, "format": "pdf"})
    assert txt_only.status_code == 400  # the txt run's output cannot become a PDF


def test_workspace_defaults_are_used_by_exports_without_a_destination(
        app: ServedApp, roots: Path, corpus: Path) -> None:
    """PUT /v1/export-defaults: a later export without a destination goes there."""
    conn, folder = _local(app, roots)
    key = app.create_key(f"ws-{secrets.token_hex(3)}", "dora")
    own = app.request("POST", "/v1/connectors", key=key,
                      json={"provider": "local", "path": str(folder)}).json()["id"]
    assert app.request("GET", "/v1/export-defaults", key=key).json()[
        "destination_connector_id"] is None
    other = app.request("PUT", "/v1/export-defaults", key=key,
                        json={"destination_connector_id": conn})
    assert other.status_code == 404  # another workspace's connector
    put = app.request("PUT", "/v1/export-defaults", key=key, json={
        "destination_connector_id": own, "destination_subpath": "inbox/converted"})
    assert put.status_code == 200 and put.json()["destination_subpath"] == "inbox/converted"
    assert app.request("GET", "/v1/export-defaults", key=key).json() == put.json()
    file_id = app.upload_ok(corpus / ODT, key=key)["id"]
    response = app.request("POST", "/v1/exports", key=key,
                           json={"file_id": file_id, "format": "txt"})
    assert response.status_code == 202, response.text
    done = app.request("GET", f"/v1/exports/{response.json()['id']}", key=key).json()
    deadline = time.monotonic() + 300
    while done["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
        done = app.request("GET", f"/v1/exports/{done['id']}", key=key).json()
    assert done["status"] == "completed", done
    assert done["destination_connector_id"] == own
    assert (folder / "inbox/converted/HelloWorld.txt").read_bytes() == requests.get(
        done["download_url"], timeout=60).content
    cleared = app.request("PUT", "/v1/export-defaults", key=key,
                          json={"destination_connector_id": None})
    assert cleared.json()["destination_connector_id"] is None


@pytest.mark.parametrize("subpath", ["../up", "/abs", "a\\b", "C:/x", "a/\x00", "~/x"])
def test_bad_subpaths_are_400(app: ServedApp, roots: Path, doc: dict[str, Any],
                              subpath: str) -> None:
    """On exports, runs and defaults alike, naming destination_subpath."""
    conn, _folder = _local(app, roots)
    for method, path, body in (
            ("POST", "/v1/exports", {"file_id": doc["id"], "format": "pdf"}),
            ("POST", "/v1/runs", {"file_id": doc["id"], "format": "pdf"}),
            ("PUT", "/v1/export-defaults", {})):
        response = app.request(method, path, json={
            **body, "destination_connector_id": conn, "destination_subpath": subpath})
        assert response.status_code == 400, (path, response.text)
        assert error_of(response)["field"] == "destination_subpath"


@pytest.mark.parametrize(("body", "field"), [
    ({"format": "pdf"}, "run_id"),
    ({"file_id": "x", "run_id": "y", "format": "pdf"}, "run_id"),
    ({"run_ids": [], "format": "pdf"}, "run_ids"),
    ({"FILE": "x"}, "FILE"),
    ({"file_id": "{doc}", "format": "pdf", "on_conflict": "merge"}, "on_conflict"),
    ({"file_id": "{doc}", "format": "pdf", "bundle": "zip"}, "bundle"),
    ({"file_id": "{doc}", "format": "mp3"}, "format"),
    ({"file_id": "{doc}", "format": "pdf", "destination_connector_id": "conn_nope"},
     "destination_connector_id"),
])
def test_bad_export_requests(app: ServedApp, doc: dict[str, Any], body: dict[str, Any],
                             field: str) -> None:
    """Each names its field (404 for a connector that is not the workspace's)."""
    body = {k: (doc["id"] if v == "{doc}" else v) for k, v in body.items()}
    response = app.request("POST", "/v1/exports", json=body)
    assert response.status_code in (400, 404), response.text
    assert error_of(response)["field"] == field


def test_unreachable_destination_retries_then_fails_leaving_nothing(
        app: ServedApp, doc: dict[str, Any]) -> None:
    """An S3 endpoint that never answers: retried with backoff, then failed with the reason."""
    port = free_port()
    conn = _connector(app, {"provider": "s3", "bucket": "nowhere-bucket",
                            "endpoint_url": f"http://127.0.0.1:{port}",
                            "access_key_id": "testing", "secret_access_key": "testing"})
    failed = wait_export(app, _export(app, {"file_id": doc["id"], "format": "pdf",
                                            "destination_connector_id": conn})["id"])
    assert failed["status"] == "failed" and "gave up after 3 attempts" in failed["error"]
    assert str(port) in failed["error"]
    assert failed["delivery"] is None
    retries = [line for line in app.log().splitlines()
               if "delivery of SampleDoc.pdf" in line and "nowhere-bucket" in line]
    assert len(retries) >= 2, app.log()[-3000:]
    scratch = app.data_dir / "tmp" / "exports"
    assert not list(scratch.iterdir())


def test_local_destination_that_breaks_fails_without_leftovers(
        app: ServedApp, roots: Path, doc: dict[str, Any]) -> None:
    """A subpath that is a file at the destination: failed, the reason, no temp files."""
    conn, folder = _local(app, roots)
    (folder / "taken").write_text("a file, not a folder")
    failed = wait_export(app, _export(app, {"file_id": doc["id"], "format": "pdf",
                                            "destination_connector_id": conn,
                                            "destination_subpath": "taken/inner"})["id"])
    assert failed["status"] == "failed" and "taken" in failed["error"]
    assert sorted(p.name for p in folder.rglob("*")) == ["taken"]


def test_idempotent_post_is_replayed(app: ServedApp, roots: Path, doc: dict[str, Any]) -> None:
    """The same Idempotency-Key and body: the first answer again, one export only."""
    conn, folder = _local(app, roots)
    key = "export-" + secrets.token_hex(6)
    body = {"file_id": doc["id"], "format": "pdf", "destination_connector_id": conn}
    first = _export(app, body, key)
    again = app.request("POST", "/v1/exports", json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 202 and again.json() == first
    assert again.headers["Idempotent-Replayed"] == "true"
    other = app.request("POST", "/v1/exports", json={**body, "format": "txt"},
                        headers={"Idempotency-Key": key})
    assert other.status_code == 409 and error_of(other)["type"] == "idempotency_key_in_use"
    assert wait_export(app, first["id"])["status"] == "completed"
    assert [p.name for p in folder.iterdir()] == ["SampleDoc.pdf"]


def test_list_by_status_and_cursor(app: ServedApp, doc: dict[str, Any]) -> None:
    """GET /v1/exports pages newest first and filters by status."""
    ids = [_export(app, {"file_id": doc["id"], "format": "txt"})["id"] for _ in range(3)]
    for export_id in ids:
        done = wait_export(app, export_id)
        assert done["status"] == "completed" and done["delivery"] is None
        assert done["download_url"]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, "status": "completed", **({"cursor": cursor} if cursor else {})}
        page = app.request("GET", "/v1/exports", params=params).json()
        assert all(e["status"] == "completed" for e in page["data"])
        seen += [e["id"] for e in page["data"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert [i for i in seen if i in ids] == list(reversed(ids))
    bad = app.request("GET", "/v1/exports", params={"status": "done"})
    assert bad.status_code == 400 and error_of(bad)["field"] == "status"


def test_python_client_connectors_and_exports(app: ServedApp, roots: Path,
                                              doc: dict[str, Any]) -> None:
    """The client's methods drive the same routes, with typed errors."""
    from converter.client import Client, ConnectorFailed, ExportFailed, NotFound

    folder = roots / f"client-{secrets.token_hex(3)}"
    folder.mkdir()
    with Client(app.url, app.key) as client:
        conn = client.create_connector("local", name="client",
                                       config={"path": str(folder)},
                                       idempotency_key=f"client-{folder.name}")
        assert client.get_connector(conn["id"]) == conn
        # The same call retried with its key answers the same connector, not a second one.
        assert client.create_connector("local", name="client", config={"path": str(folder)},
                                       idempotency_key=f"client-{folder.name}") == conn
        assert conn["id"] in [c["id"] for c in client.list_connectors()]
        assert client.test_connector(conn["id"])["ok"] is True
        done = client.wait_export(client.create_export(
            file_id=doc["id"], format="txt", destination_connector_id=conn["id"],
            destination_subpath="c")["id"], timeout=300)
        assert (folder / done["delivery"]["path"]).exists()
        assert [e["path"] for e in client.browse(conn["id"], "c")] == ["c/SampleDoc.txt"]
        assert done["id"] in [e["id"] for e in client.list_exports(status="completed")]
        with pytest.raises(ExportFailed, match="already exists"):
            client.wait_export(client.create_export(
                file_id=doc["id"], format="txt", destination_connector_id=conn["id"],
                destination_subpath="c", on_conflict="fail")["id"], timeout=300)
        assert client.set_export_defaults(conn["id"], "d")["destination_subpath"] == "d"
        assert client.get_export_defaults()["destination_connector_id"] == conn["id"]
        client.set_export_defaults(None)
        bad = client.create_connector("s3", config={
            "bucket": "no-such-bucket-anywhere",
            "endpoint_url": f"http://127.0.0.1:{free_port()}"},
            credentials={"access_key_id": "AKIAXXXXXXXXXXXXXXXX",
                         "secret_access_key": "y" * 30})
        with pytest.raises(ConnectorFailed):
            client.test_connector(bad["id"])
        client.delete_connector(conn["id"])
        with pytest.raises(NotFound):
            client.get_connector(conn["id"])
