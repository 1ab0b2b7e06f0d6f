"""Connectors over HTTP: create, list, get, patch, delete, test, browse; secrets never shown.

A served app with a local connector root on a temporary directory, and S3 through
moto's standalone server (the authenticating one for wrong-credential tests).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.moto import BUCKET, AuthenticatedS3
from tests.support.served import ServedApp, error_of


class Recorder:
    """Every response body the tests saw, to prove no secret is ever in one."""

    def __init__(self, app: ServedApp) -> None:
        self.app = app
        self.bodies: list[str] = []

    def __call__(self, method: str, path: str, key: str | None = None,
                 **kwargs: Any) -> requests.Response:
        """app.request, recorded."""
        response = self.app.request(method, path, key=key, **kwargs)
        self.bodies.append(response.text)
        return response


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory CONVERTER_LOCAL_CONNECTOR_ROOTS allows."""
    return tmp_path_factory.mktemp("connector-root")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, roots: Path) -> Iterator[ServedApp]:
    """A served app that allows local connectors under roots and loopback S3 endpoints."""
    served = ServedApp(tmp_path_factory.mktemp("served-connectors"), workers=1, env={
        "CONVERTER_LOCAL_CONNECTOR_ROOTS": str(roots),
        "CONVERTER_WEBHOOK_ALLOW": "127.0.0.0/8",
        "CONVERTER_LOG_LEVEL": "DEBUG",
    })
    served.start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def call(app: ServedApp) -> Recorder:
    """Recorded requests to app."""
    return Recorder(app)


def _local(call: Recorder, roots: Path, name: str = "drop") -> dict[str, Any]:
    folder = roots / f"{name}-{secrets.token_hex(3)}"
    folder.mkdir()
    response = call("POST", "/v1/connectors", json={"provider": "local", "name": name,
                                                     "config": {"path": str(folder)}})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_local_connector_lifecycle(call: Recorder, roots: Path) -> None:
    """Create, get, list, patch, delete: 404 after."""
    made = _local(call, roots, "lifecycle")
    assert made["id"].startswith("conn_") and made["provider"] == "local"
    assert made["credentials"] == {} and made["config"]["path"].startswith(str(roots))
    got = call("GET", f"/v1/connectors/{made['id']}")
    assert got.status_code == 200 and got.json() == made
    listed = call("GET", "/v1/connectors", params={"limit": 100}).json()
    assert made["id"] in [c["id"] for c in listed["data"]]
    patched = call("PATCH", f"/v1/connectors/{made['id']}", json={"name": "renamed"})
    assert patched.status_code == 200 and patched.json()["name"] == "renamed"
    assert call("DELETE", f"/v1/connectors/{made['id']}").status_code == 204
    gone = call("GET", f"/v1/connectors/{made['id']}")
    assert gone.status_code == 404 and error_of(gone)["type"] == "not_found"


def test_a_connector_an_automation_uses_is_409_until_the_automation_goes(
        call: Recorder, roots: Path) -> None:
    """Deleting a connector in use names the automations; it stays, and so do they."""
    inbox, outbox = _local(call, roots, "inbox"), _local(call, roots, "outbox")
    made = call("POST", "/v1/automations", json={
        "source_connector_id": inbox["id"], "formats": ["pdf"],
        "destination_connector_id": outbox["id"]})
    assert made.status_code == 201, made.text
    automation_id = made.json()["id"]
    for connector in (inbox, outbox):
        refused = call("DELETE", f"/v1/connectors/{connector['id']}")
        assert refused.status_code == 409, refused.text
        error = error_of(refused)
        assert error["type"] == "conflict" and error["field"] == "connector_id"
        assert error["automations"] == [automation_id] and automation_id in error["message"]
        assert call("GET", f"/v1/connectors/{connector['id']}").status_code == 200
    assert call("GET", f"/v1/automations/{automation_id}").status_code == 200
    assert call("DELETE", f"/v1/automations/{automation_id}").status_code == 204
    for connector in (inbox, outbox):
        assert call("DELETE", f"/v1/connectors/{connector['id']}").status_code == 204


def test_creates_with_an_idempotency_key_are_replayed(call: Recorder, roots: Path) -> None:
    """A retried POST with its key answers the first record, marked replayed; 409 if changed."""
    folder = roots / f"idem-{secrets.token_hex(3)}"
    folder.mkdir()
    body = {"provider": "local", "name": "idem", "config": {"path": str(folder)}}
    headers = {"Idempotency-Key": f"conn-{secrets.token_hex(4)}"}
    first = call("POST", "/v1/connectors", json=body, headers=headers)
    again = call("POST", "/v1/connectors", json=body, headers=headers)
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    changed = call("POST", "/v1/connectors", json={**body, "name": "other"}, headers=headers)
    assert changed.status_code == 409
    assert error_of(changed)["type"] == "idempotency_key_in_use"
    outbox = _local(call, roots, "idem-out")
    automation = {"source_connector_id": first.json()["id"], "formats": ["pdf"],
                  "destination_connector_id": outbox["id"]}
    headers = {"Idempotency-Key": f"aut-{secrets.token_hex(4)}"}
    made = call("POST", "/v1/automations", json=automation, headers=headers)
    replayed = call("POST", "/v1/automations", json=automation, headers=headers)
    assert made.status_code == replayed.status_code == 201, (made.text, replayed.text)
    assert replayed.json()["id"] == made.json()["id"]
    assert replayed.headers["Idempotent-Replayed"] == "true"
    listed = call("GET", "/v1/automations", params={"limit": 100}).json()["data"]
    assert [a["id"] for a in listed].count(made.json()["id"]) == 1
    assert sum(a["source_connector_id"] == first.json()["id"] for a in listed) == 1
    refused = call("POST", "/v1/automations", json={**automation, "formats": ["png"]},
                   headers=headers)
    assert refused.status_code == 409
    assert error_of(refused)["type"] == "idempotency_key_in_use"
    assert call("DELETE", f"/v1/automations/{made.json()['id']}").status_code == 204


@pytest.mark.parametrize(("body", "field"), [
    ({"provider": "ftp", "path": "/x"}, "provider"),
    ({"provider": "local", "config": {"path": "/etc"}}, "config.path"),
    ({"provider": "local", "config": {"path": "relative"}}, "config.path"),
    ({"provider": "local"}, "config.path"),
    ({"provider": "s3", "bucket": "Bad_Name"}, "config.bucket"),
    ({"provider": "s3", "bucket": "ok-bucket", "access_key_id": "AKIAONLYHALFOFAPAIR"},
     "credentials.secret_access_key"),
    ({"provider": "s3", "bucket": "ok-bucket", "endpoint_url": "http://169.254.169.254"},
     "config.endpoint_url"),
    ({"provider": "s3", "bucket": "ok-bucket", "colour": "blue"}, "colour"),
])
def test_bad_connectors_are_400_naming_the_field(call: Recorder, body: dict[str, Any],
                                                 field: str) -> None:
    """Each refusal names the field at fault."""
    response = call("POST", "/v1/connectors", json=body)
    assert response.status_code == 400, response.text
    assert error_of(response)["field"] == field


def test_s3_credentials_are_masked_and_never_returned(call: Recorder, app: ServedApp,
                                                      moto_endpoint: str) -> None:
    """The response says set + last 4; no response and no log line holds a secret."""
    key_id = "AKIA" + secrets.token_hex(8).upper()
    secret = "sk" + secrets.token_urlsafe(30)
    made = call("POST", "/v1/connectors", json={
        "provider": "s3", "name": "bucket", "bucket": BUCKET, "prefix": "exports/",
        "region": "us-east-1", "endpoint_url": moto_endpoint,
        "access_key_id": key_id, "secret_access_key": secret})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["config"] == {"bucket": BUCKET, "prefix": "exports", "region": "us-east-1",
                              "endpoint_url": moto_endpoint}
    assert body["credentials"] == {"access_key_id": {"set": True, "last4": key_id[-4:]},
                                   "secret_access_key": {"set": True, "last4": secret[-4:]}}
    conn = body["id"]
    assert call("POST", f"/v1/connectors/{conn}/test").status_code == 200
    assert call("GET", f"/v1/connectors/{conn}/browse").status_code == 200
    new_secret = "sk" + secrets.token_urlsafe(30)
    patched = call("PATCH", f"/v1/connectors/{conn}",
                   json={"credentials": {"secret_access_key": new_secret}})
    assert patched.json()["credentials"]["secret_access_key"]["last4"] == new_secret[-4:]
    assert patched.json()["credentials"]["access_key_id"]["last4"] == key_id[-4:]
    assert call("POST", f"/v1/connectors/{conn}/test").status_code == 200
    call("GET", f"/v1/connectors/{conn}")
    call("GET", "/v1/connectors")
    for value in (key_id, secret, new_secret):
        assert all(value not in text for text in call.bodies), "a secret reached a response"
        assert value not in app.log(), "a secret reached the logs"
    assert "converter.http" in app.log() or "duration_ms" in app.log()  # logs were written
    stored = (app.data_dir / "converter.db").read_bytes()
    assert secret.encode() not in stored and new_secret.encode() not in stored


def test_wrong_s3_credentials_fail_the_test_with_the_reason(
        call: Recorder, moto_authenticated: AuthenticatedS3) -> None:
    """Right keys pass; a wrong secret is 400 connector_failed quoting S3's reason."""
    good = call("POST", "/v1/connectors", json={
        "provider": "s3", "bucket": moto_authenticated.bucket,
        "endpoint_url": moto_authenticated.url,
        "access_key_id": moto_authenticated.access_key_id,
        "secret_access_key": moto_authenticated.secret_access_key}).json()
    ok = call("POST", f"/v1/connectors/{good['id']}/test")
    assert ok.status_code == 200 and ok.json()["ok"] is True
    wrong = "wrong" + secrets.token_urlsafe(20)
    call("PATCH", f"/v1/connectors/{good['id']}",
         json={"credentials": {"secret_access_key": wrong}})
    failed = call("POST", f"/v1/connectors/{good['id']}/test")
    assert failed.status_code == 400
    error = error_of(failed)
    assert error["type"] == "connector_failed" and "SignatureDoesNotMatch" in error["message"]
    unknown = call("POST", "/v1/connectors", json={
        "provider": "s3", "bucket": moto_authenticated.bucket,
        "endpoint_url": moto_authenticated.url, "access_key_id": "AKIAWRONGWRONGWRONG1",
        "secret_access_key": wrong}).json()
    refused = call("POST", f"/v1/connectors/{unknown['id']}/test")
    assert refused.status_code == 400 and "InvalidAccessKeyId" in error_of(refused)["message"]
    assert all(wrong not in text for text in call.bodies)


def test_unreachable_endpoint_fails_the_test(call: Recorder) -> None:
    """Nothing listening: the test is a 400 that says so, marked retryable."""
    from tests.support.served import free_port

    made = call("POST", "/v1/connectors", json={
        "provider": "s3", "bucket": "some-bucket",
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "access_key_id": "AKIAUNREACHABLE00001", "secret_access_key": "x" * 30}).json()
    failed = call("POST", f"/v1/connectors/{made['id']}/test")
    assert failed.status_code == 400
    error = error_of(failed)
    assert error["type"] == "connector_failed" and error["retryable"] is True


def test_local_test_and_browse_pages(call: Recorder, roots: Path) -> None:
    """test leaves the folder as it was; browse pages through folders and files."""
    made = _local(call, roots, "browse")
    folder = Path(made["config"]["path"])
    assert call("POST", f"/v1/connectors/{made['id']}/test").status_code == 200
    assert list(folder.iterdir()) == []
    (folder / "in" / "sub").mkdir(parents=True)
    for name in ("a.docx", "b.xlsx"):
        (folder / "in" / name).write_bytes(b"x" * 10)
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(5):
        params = {"path": "in", "limit": 1, **({"cursor": cursor} if cursor else {})}
        page = call("GET", f"/v1/connectors/{made['id']}/browse", params=params)
        assert page.status_code == 200, page.text
        seen += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [(e["path"], e["type"], e["size_bytes"]) for e in seen] == [
        ("in/a.docx", "file", 10), ("in/b.xlsx", "file", 10), ("in/sub", "folder", None)]
    root = call("GET", f"/v1/connectors/{made['id']}/browse").json()
    assert [e["name"] for e in root["data"]] == ["in"]


@pytest.mark.parametrize("path", ["../etc", "/etc", "a\\b", "in/\x01"])
def test_browse_refuses_bad_paths(call: Recorder, roots: Path, path: str) -> None:
    """A path leaving the root is 400 naming path."""
    made = _local(call, roots, "badpath")
    response = call("GET", f"/v1/connectors/{made['id']}/browse", params={"path": path})
    assert response.status_code == 400 and error_of(response)["field"] == "path"


def test_connectors_belong_to_their_workspace(call: Recorder, app: ServedApp,
                                              roots: Path) -> None:
    """Another workspace's key sees 404 everywhere; a colleague can use it."""
    made = _local(call, roots, "private")
    stranger = app.create_key("elsewhere", "eve")
    colleague = app.create_key("default", "colleague")  # the bootstrap key's workspace
    assert call("GET", f"/v1/connectors/{made['id']}", key=colleague).status_code == 200
    for method, suffix in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("POST", "/test"),
                           ("GET", "/browse")):
        response = call(method, f"/v1/connectors/{made['id']}{suffix}", key=stranger,
                        json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, suffix, response.text)
    assert made["id"] not in [c["id"] for c in call("GET", "/v1/connectors",
                                                    key=stranger).json()["data"]]
