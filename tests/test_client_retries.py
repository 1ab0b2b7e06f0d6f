"""The client's retries and Idempotency-Keys, against small real HTTP servers that misbehave."""

from __future__ import annotations

import io
import os
import time
import uuid

import pytest

from converter.client import (
    Client,
    InvalidRequest,
    Overloaded,
    RateLimitExceeded,
    RetryPolicy,
    ServiceUnreachable,
    UpstreamError,
)
from tests.support.scripted import HangUpServer, Reply, ScriptedServer
from tests.support.served import free_port

RUN = {"run_id": "run_1", "status": "pending", "status_url": "x"}


def _is_uuid4(value: str) -> bool:
    return uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value


def test_503_and_429_are_retried_after_retry_after_with_one_idempotency_key() -> None:
    """Two refusals with Retry-After: 1, then 202: three requests, ~2 s apart, one key."""
    script = [Reply(503, {"error": {"type": "overloaded", "message": "busy"}},
                    {"Retry-After": "1"}),
              Reply(429, {"error": {"type": "rate_limit_exceeded", "message": "slow down"}},
                    {"Retry-After": "1"}),
              Reply(202, RUN)]
    with ScriptedServer(script) as server, Client(server.url, "sk_live_test") as client:
        started = time.monotonic()
        assert client.create_run("file_1", "pdf") == RUN
        elapsed = time.monotonic() - started
    assert len(server.seen) == 3
    gaps = [b.at - a.at for a, b in zip(server.seen, server.seen[1:], strict=False)]
    assert all(gap >= 0.95 for gap in gaps), gaps  # waited as Retry-After said
    assert elapsed < 5
    keys = {s.headers["Idempotency-Key"] for s in server.seen}
    assert len(keys) == 1 and _is_uuid4(keys.pop())
    assert {s.headers["X-API-Key"] for s in server.seen} == {"sk_live_test"}


def test_507_insufficient_storage_is_retried() -> None:
    """The disk guard's 507 is retryable (space frees up): retried after Retry-After."""
    script = [Reply(507, {"error": {"type": "insufficient_storage", "message": "disk full",
                                    "retryable": True}}, {"Retry-After": "1"}),
              Reply(202, RUN)]
    with ScriptedServer(script) as server, Client(server.url, "sk_live_test") as client:
        assert client.create_run("file_1", "pdf") == RUN
    assert [s.at for s in server.seen][1] - server.seen[0].at >= 0.95
    assert len({s.headers["Idempotency-Key"] for s in server.seen}) == 1


def test_each_creating_post_gets_its_own_key_and_gets_do_not() -> None:
    """A new UUID4 per call; a caller-given key is sent as is; GETs carry none."""
    with ScriptedServer([Reply(202, RUN)]) as server, Client(server.url, "k") as client:
        client.create_run("file_1", "pdf")
        client.create_run("file_1", "pdf")
        client.create_run("file_1", "pdf", idempotency_key="mine-1")
        client.export_run("run_1", "pdf")
        client.upload(b"hello", filename="a.txt")
        client.get_run("run_1")
    keys = [s.headers.get("Idempotency-Key") for s in server.seen]
    assert keys[2] == "mine-1" and keys[5] is None
    generated = [keys[i] for i in (0, 1, 3, 4)]
    assert all(k and _is_uuid4(k) for k in generated) and len(set(generated)) == 4


def test_the_cap_on_attempts_ends_with_the_typed_error() -> None:
    """Always 503: max_attempts requests, then Overloaded with the server's request_id."""
    reply = Reply(503, {"error": {"type": "overloaded", "message": "busy", "request_id": "req_1",
                                  "retryable": True, "retry_after": 0}},
                  {"Retry-After": "0"})
    policy = RetryPolicy(max_attempts=3, max_wait=10)
    with ScriptedServer([reply]) as server, Client(server.url, "k", retry=policy) as client:
        with pytest.raises(Overloaded) as caught:
            client.get_file("file_1")
    assert len(server.seen) == 3
    error = caught.value
    assert (error.status, error.type, error.request_id) == (503, "overloaded", "req_1")
    assert error.details == {"retryable": True, "retry_after": 0} and error.retry_after == 0


def test_a_retry_after_beyond_the_wait_cap_is_not_slept() -> None:
    """Retry-After 120 with max_wait 5: one request, at once, and the caller sees when."""
    reply = Reply(429, {"error": {"type": "rate_limit_exceeded", "message": "budget"}},
                  {"Retry-After": "120"})
    policy = RetryPolicy(max_attempts=5, max_wait=5)
    with ScriptedServer([reply]) as server, Client(server.url, "k", retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitExceeded) as caught:
            client.create_run("file_1", "pdf")
    assert time.monotonic() - started < 1 and len(server.seen) == 1
    assert caught.value.retry_after == 120


def test_502_without_retry_after_backs_off_then_succeeds() -> None:
    """An engine failure is retried after a backoff; a 400 is never retried."""
    script = [Reply(502, {"error": {"type": "upstream_error", "message": "crashed"}}),
              Reply(200, {"id": "file_1"})]
    policy = RetryPolicy(backoff=0.2)
    with ScriptedServer(script) as server, Client(server.url, "k", retry=policy) as client:
        assert client.get_file("file_1") == {"id": "file_1"}
    assert len(server.seen) == 2 and server.seen[1].at - server.seen[0].at >= 0.1

    bad = Reply(400, {"error": {"type": "invalid_request", "message": "format is required",
                                "field": "format", "valid_targets": ["pdf"]}})
    with ScriptedServer([bad]) as server, Client(server.url, "k") as client:
        with pytest.raises(InvalidRequest) as caught:
            client.convert("file_1", "")
    assert len(server.seen) == 1
    assert caught.value.details == {"field": "format", "valid_targets": ["pdf"]}

    always = Reply(502, {"error": {"type": "upstream_error", "message": "crashed"}})
    policy = RetryPolicy(max_attempts=2, backoff=0.05)
    with ScriptedServer([always]) as server, Client(server.url, "k", retry=policy) as client:
        with pytest.raises(UpstreamError):
            client.get_file("file_1")
    assert len(server.seen) == 2


def test_uploads_are_sent_whole_again_on_a_retry() -> None:
    """A streamed upload is rewound: the second attempt carries the same complete body."""
    document = os.urandom(300_000)
    script = [Reply(503, {"error": {"type": "overloaded", "message": "busy"}},
                    {"Retry-After": "0"}),
              Reply(201, {"id": "file_1"})]
    with ScriptedServer(script) as server, Client(server.url, "k") as client:
        assert client.upload(io.BytesIO(document), filename="r.bin")["id"] == "file_1"
    first, second = server.seen
    assert first.body == second.body and document in second.body
    assert b'filename="r.bin"' in second.body
    assert second.headers["Content-Type"].startswith("multipart/form-data; boundary=")


def test_connection_errors_are_retried_up_to_the_cap() -> None:
    """A server that hangs up: max_attempts connections, then ServiceUnreachable."""
    policy = RetryPolicy(max_attempts=3, backoff=0.05)
    with HangUpServer() as server, Client(server.url, "k", retry=policy) as client:
        with pytest.raises(ServiceUnreachable):
            client.create_run("file_1", "pdf")
        assert server.connections == 3


def test_a_closed_port_is_service_unreachable() -> None:
    """Nothing listening: ServiceUnreachable naming the address, after the backoffs."""
    url = f"http://127.0.0.1:{free_port()}"
    policy = RetryPolicy(max_attempts=3, backoff=0.2)
    with Client(url, "k", retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(ServiceUnreachable, match="127.0.0.1") as caught:
            client.get_file("file_1")
    assert time.monotonic() - started >= 0.2  # two backoffs of at least 0.1 s each
    assert "3 attempt" in str(caught.value)
