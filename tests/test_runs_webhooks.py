"""Webhooks: a real HTTP receiver, verified signatures, retries, and the address policy."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import insert, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from converter.db.engine import connect, next_seq, utcnow
from converter.db.schema import files, runs, workspace_secrets
from converter.errors import ConfigError
from converter.service import webhook_signing as signing
from converter.service import webhooks
from converter.service.webhook_signing import SecretStore
from converter.service.webhooks import Notice, WebhookDispatcher, WebhookPolicy
from tests.support.served import ServedApp, error_of, total
from tests.test_runs import create_run, fetch, wait_run


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """A local HTTP server that records webhook calls and answers per path as scripted."""

    def __init__(self) -> None:
        self.calls: list[Received] = []
        self.script: dict[str, list[int]] = {}
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                """Record the call and answer with the next scripted status."""
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.cond:
                    receiver.calls.append(Received(self.path, dict(self.headers.items()), body,
                                                   time.time()))
                    plan = receiver.script.get(self.path, [200])
                    status = plan.pop(0) if len(plan) > 1 else plan[0]
                    receiver.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                """Keep the test output quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        """The receiver's URL for path."""
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def wait_for(self, path: str, count: int, timeout: float = 60.0) -> list[Received]:
        """Block until path has received count calls; return them."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [c for c in self.calls if c.path == path]
                if len(got) >= count:
                    return got
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"{path}: {len(got)} of {count} webhook calls arrived"
                self.cond.wait(remaining)

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1."""
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    """A served app that may call loopback webhooks, with quick retries."""
    app = ServedApp(tmp_path_factory.mktemp("webhooks"), workers=1, env={
        "CONVERTER_WEBHOOK_ALLOW": "127.0.0.0/8",
        "CONVERTER_WEBHOOK_BACKOFF_SECONDS": "0.5",
        "CONVERTER_WEBHOOK_MAX_ATTEMPTS": "3",
    })
    app.start()
    yield app
    app.stop()


def secret_of(app: ServedApp, key: str | None = None) -> str:
    """The workspace's signing secret, as a receiver would fetch it."""
    response = app.request("GET", "/v1/webhooks/secret", key=key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["signature_header"] == "webhook-signature"
    secret: str = body["secret"]
    return secret


def check_signature(secret: str, call: Received) -> None:
    """Verify the way a receiver would: with the standardwebhooks library, not our code."""
    hook = Webhook(secret)
    assert hook.verify(call.body, call.headers) == json.loads(call.body)
    assert call.headers["webhook-signature"].startswith("v1,")
    assert abs(int(call.headers["webhook-timestamp"]) - call.at) < 60
    with pytest.raises(WebhookVerificationError):
        hook.verify(call.body + b" ", call.headers)
    with pytest.raises(WebhookVerificationError):
        hook.verify(call.body, {**call.headers, "webhook-id": "msg_other"})


def test_completed_run_is_posted_signed(hooked: ServedApp, receiver: Receiver,
                                        corpus: Path) -> None:
    """The run's JSON arrives once, signed with the workspace secret; the run shows it."""
    file_id = hooked.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    created = create_run(hooked, {"file_id": file_id, "format": "pdf",
                                  "webhook_url": receiver.url("/ok?src=test")})
    assert created.status_code == 202, created.text
    run_id = created.json()["run_id"]
    [call] = receiver.wait_for("/ok?src=test", 1)
    assert call.headers["Converter-Event"] == "run.completed"
    assert call.headers["Content-Type"] == "application/json"
    assert call.headers["Converter-Delivery"].startswith("dlv_")
    check_signature(secret_of(hooked), call)
    payload = json.loads(call.body)
    assert payload["id"] == run_id and payload["status"] == "completed"
    assert fetch(payload["download_url"]).startswith(b"%PDF-")

    run = wait_run(hooked, run_id)
    deadline = time.monotonic() + 10
    while not run["webhook"]["deliveries"] and time.monotonic() < deadline:
        time.sleep(0.1)
        run = wait_run(hooked, run_id)
    assert run["webhook"]["url"] == receiver.url("/ok?src=test")
    [delivery] = run["webhook"]["deliveries"]
    assert delivery["attempt"] == 1 and delivery["status_code"] == 200
    assert delivery["delivered"] is True and delivery["error"] is None and delivery["at"]
    assert run["webhook"]["next_attempt_at"] is None


def test_failing_endpoint_is_retried_with_backoff(hooked: ServedApp, receiver: Receiver,
                                                  corpus: Path) -> None:
    """500 then 200: two attempts, spaced by the backoff, both visible on the run."""
    receiver.script["/flaky"] = [500, 200]
    before = hooked.scrape()
    file_id = hooked.upload_ok(corpus / "odt/HelloWorld.odt")["id"]
    run_id = create_run(hooked, {"file_id": file_id, "format": "txt",
                                 "webhook_url": receiver.url("/flaky")}).json()["run_id"]
    first, second = receiver.wait_for("/flaky", 2)
    assert second.at - first.at >= 0.45
    assert first.headers["Converter-Delivery"] != second.headers["Converter-Delivery"]
    # One message, two attempts: the Standard Webhooks id is what receivers deduplicate on.
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == f"msg_{run_id}"
    secret = secret_of(hooked)
    check_signature(secret, first)
    check_signature(secret, second)
    deadline = time.monotonic() + 10
    while True:
        deliveries = wait_run(hooked, run_id)["webhook"]["deliveries"]
        if len(deliveries) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert [(d["attempt"], d["status_code"], d["delivered"]) for d in deliveries] == [
        (1, 500, False), (2, 200, True)]
    assert "HTTP 500" in deliveries[0]["error"]
    after = hooked.scrape()
    for outcome, count in (("retry", 1), ("delivered", 1), ("failed", 0)):
        assert (total(after, "converter_webhook_deliveries_total", outcome=outcome)
                - total(before, "converter_webhook_deliveries_total", outcome=outcome)) == count


def test_failed_run_is_posted_and_attempts_are_bounded(hooked: ServedApp, receiver: Receiver,
                                                       corpus: Path) -> None:
    """A failed run sends run.failed; an endpoint that never accepts gets max_attempts calls."""
    receiver.script["/down"] = [503]
    file_id = hooked.upload_ok(corpus / "bad/xlsx-corrupted.xlsx")["id"]
    run_id = create_run(hooked, {"file_id": file_id, "format": "pdf",
                                 "webhook_url": receiver.url("/down")}).json()["run_id"]
    calls = receiver.wait_for("/down", 3)
    assert all(c.headers["Converter-Event"] == "run.failed" for c in calls)
    payload = json.loads(calls[0].body)
    assert payload["status"] == "failed" and "cannot open" in payload["error"]
    time.sleep(2.5)  # the next attempt would be due after 2 s if there were one
    assert len(receiver.wait_for("/down", 3)) == 3
    webhook = wait_run(hooked, run_id)["webhook"]
    assert [(d["attempt"], d["status_code"], d["delivered"]) for d in webhook["deliveries"]] == [
        (1, 503, False), (2, 503, False), (3, 503, False)]
    assert webhook["next_attempt_at"] is None
    assert total(hooked.scrape(), "converter_webhook_deliveries_total", outcome="failed") >= 1


def test_secret_is_per_workspace_and_stable(hooked: ServedApp) -> None:
    """Keys of one workspace share a secret; another workspace has its own."""
    same = hooked.create_key("default", "someone")
    other = hooked.create_key("elsewhere", "someone")
    secret = secret_of(hooked)
    assert secret.startswith("whsec_") and len(secret) > 40
    assert secret_of(hooked, same) == secret == secret_of(hooked)
    assert secret_of(hooked, other) != secret
    assert requests.get(f"{hooked.url}/v1/webhooks/secret", timeout=10).status_code == 401


@pytest.mark.parametrize("url, words", [
    ("http://127.0.0.1:9/hook", "loopback"),
    ("http://localhost/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("ftp://example.org/hook", "http"),
    ("http://user:pw@127.0.0.1/hook", "credentials"),
    ("not a url", "http"),
])
def test_webhook_targets_are_vetted_by_default(service: ServedApp, corpus: Path, url: str,
                                               words: str) -> None:
    """Without CONVERTER_WEBHOOK_ALLOW, internal addresses are refused when the run is created."""
    file_id = service.upload_ok(corpus / "odt/HelloWorld.odt")["id"]
    response = create_run(service, {"file_id": file_id, "format": "txt", "webhook_url": url})
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["field"] == "webhook_url" and words in error["message"], error
    listed = service.request("GET", f"/v1/runs?file_id={file_id}").json()["data"]
    assert listed == []


def test_policy_rules_without_network() -> None:
    """Address classes, operator CIDRs, IPv4-mapped IPv6 and bad configuration."""
    policy = WebhookPolicy(())
    assert policy.denial("8.8.8.8") is None
    assert policy.denial("2606:4700::1111") is None
    for address, reason in (("127.0.0.1", "loopback"), ("::1", "loopback"),
                            ("10.0.0.1", "private"), ("172.16.5.4", "private"),
                            ("fc00::1", "private"), ("fe80::1", "link-local"),
                            ("169.254.1.1", "link-local"), ("224.0.0.1", "multicast"),
                            ("::ffff:10.0.0.1", "private"), ("100.64.0.1", "routable")):
        found = policy.denial(address)
        assert found is not None and reason in found, (address, found)
    allowing = WebhookPolicy(("10.0.0.0/8", "::1/128"))
    assert allowing.denial("10.9.9.9") is None and allowing.denial("::1") is None
    assert allowing.denial("192.168.0.1") == "private"
    with pytest.raises(ConfigError, match="CONVERTER_WEBHOOK_ALLOW"):
        WebhookPolicy(("10.0.0.0/33",))
    target = WebhookPolicy(("127.0.0.0/8",)).check("https://127.0.0.1:8443/a/b?c=d")
    assert (target.scheme, target.host, target.port, target.path, target.addresses) == (
        "https", "127.0.0.1", 8443, "/a/b?c=d", ("127.0.0.1",))
    secret = signing.new_secret()
    signed = signing.signed_headers(secret, "msg_1", b'{"a":1}')
    assert Webhook(secret).verify(b'{"a":1}', signed) == {"a": 1}
    stale = signing.signed_headers(secret, "msg_1", b"{}", now=time.time() - 3600)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(b"{}", stale)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.new_secret()).verify(b'{"a":1}', signed)
    with pytest.raises(ValueError, match="whsec_"):
        signing.sign("whsec_not-base64_!", "msg_1", 0, b"{}")


def test_due_deliveries_are_found_in_the_database(tmp_path: Path, receiver: Receiver) -> None:
    """A delivery scheduled by one process is sent by a dispatcher started later (restart)."""
    db = connect(f"sqlite:///{tmp_path / 'hooks.db'}")
    now = utcnow()
    with db.begin() as conn:
        conn.execute(insert(files).values(
            id="file_x", workspace="w", owner="u", scope="personal", filename="a.odt",
            format="odt", size_bytes=1, sha256="0" * 64, storage_key="originals/file_x",
            created_at=now, seq=next_seq()))
        conn.execute(insert(runs).values(
            id="run_x", api_key_id="key_x", workspace="w", owner="u", scope="personal",
            file_id="file_x", source_id="file_x", format="pdf", options="{}", status="failed",
            webhook_url=receiver.url("/later"), attempts=1, created_at=now, seq=next_seq()))
        webhooks.schedule(conn, "run_x")
    secrets_store = SecretStore(db)

    def render(run_id: str) -> Notice:
        return Notice("w", receiver.url("/later"), "run.failed", {"id": run_id})

    dispatcher = WebhookDispatcher(db, WebhookPolicy(("127.0.0.0/8",)), secrets_store, render,
                                   timeout=5, max_attempts=2, backoff=0.1)
    assert dispatcher.deliver_due() == 1
    [call] = receiver.wait_for("/later", 1)
    check_signature(secrets_store.get("w"), call)
    assert json.loads(call.body) == {"id": "run_x"}
    assert dispatcher.deliver_due() == 0
    with db.connect() as conn:
        view = webhooks.view(conn, ["run_x"])["run_x"]
    assert [(d["attempt"], d["delivered"]) for d in view["deliveries"]] == [(1, True)]
    db.dispose()


def test_secret_from_before_standard_webhooks_is_replaced(tmp_path: Path) -> None:
    """A stored URL-safe secret (the old form) is swapped once for a whsec_<base64> one."""
    db = connect(f"sqlite:///{tmp_path / 'secrets.db'}")
    with db.begin() as conn:
        conn.execute(insert(workspace_secrets).values(
            workspace="w", secret="whsec_" + "-_x" * 14, created_at=utcnow()))
    store = SecretStore(db)
    secret = store.get("w")
    assert len(signing.secret_bytes(secret) or b"") == 32
    assert store.get("w") == secret
    with db.connect() as conn:
        assert conn.execute(select(workspace_secrets.c.secret)).scalars().all() == [secret]
    Webhook(secret)  # the receiver library accepts it
    db.dispose()
