"""UrlFetcher against real HTTP(S) servers on loopback addresses."""

from __future__ import annotations

import hashlib
import io
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from converter.errors import InvalidRequest, PayloadTooLarge, UpstreamError
from converter.service.url_fetch import UrlFetcher
from converter.service.webhooks import WebhookPolicy
from tests.support.origin import Origin, send

LOOPBACK = WebhookPolicy(("127.0.0.1/32",))
MIB = 1 << 20


@pytest.fixture
def origin() -> Iterator[Origin]:
    """An HTTP server on 127.0.0.1."""
    server = Origin()
    yield server
    server.close()


@pytest.fixture
def docx(corpus: Path) -> bytes:
    """A real document to serve."""
    return (corpus / "docx" / "SampleDoc.docx").read_bytes()


def _serve(origin: Origin, path: str, body: bytes, headers: dict[str, str] | None = None,
           ) -> None:
    origin.routes[path] = lambda h: send(h, body, headers=headers)


def test_allowed_address_is_fetched_with_content_and_digest(origin: Origin, docx: bytes) -> None:
    _serve(origin, "/files/My%20Report%20%C3%A9.docx", docx, {
        "Content-Type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
                        "; charset=binary"})
    out = io.BytesIO()
    got = UrlFetcher(LOOPBACK, timeout=5).fetch(
        f"{origin.url}/files/My%20Report%20%C3%A9.docx?X-Amz-Signature=ab%2Fc", out, 10 * MIB)
    assert out.getvalue() == docx
    assert got.size_bytes == len(docx)
    assert got.sha256 == hashlib.sha256(docx).hexdigest()
    assert got.filename == "My Report é.docx"
    assert got.content_type == ("application/vnd.openxmlformats-officedocument."
                                "wordprocessingml.document")
    # The query (a presigned signature) reaches the server untouched.
    assert origin.paths() == ["/files/My%20Report%20%C3%A9.docx?X-Amz-Signature=ab%2Fc"]


@pytest.mark.parametrize(("disposition", "expected"), [
    ('attachment; filename="Quarterly report.docx"', "Quarterly report.docx"),
    ("attachment; filename*=UTF-8''%C3%9Cbersicht%20%E2%82%AC.docx; filename=\"plain.docx\"",
     "Übersicht €.docx"),
    ("attachment; filename=\"plain.docx\"; filename*=UTF-8''%C3%9Cbersicht.docx",
     "Übersicht.docx"),
    ("attachment; filename*=iso-8859-1'de'%E4rger.docx", "ärger.docx"),
    ('attachment; filename="../../etc/pass\\"wd.docx"', 'pass"wd.docx'),
    ("inline; filename=bare-token.docx", "bare-token.docx"),
    ("attachment", "from-path.docx"),
])
def test_name_comes_from_content_disposition(origin: Origin, docx: bytes, disposition: str,
                                             expected: str) -> None:
    _serve(origin, "/x/from-path.docx", docx, {"Content-Disposition": disposition})
    got = UrlFetcher(LOOPBACK, timeout=5).fetch(f"{origin.url}/x/from-path.docx",
                                                io.BytesIO(), 10 * MIB)
    assert got.filename == expected


def test_non_ascii_paths_are_sent_percent_encoded(origin: Origin, docx: bytes) -> None:
    _serve(origin, "/dokument-%C3%BC.docx", docx)
    got = UrlFetcher(LOOPBACK, timeout=5).fetch(f"{origin.url}/dokument-ü.docx", io.BytesIO(),
                                                MIB)
    assert origin.paths() == ["/dokument-%C3%BC.docx"]
    assert got.filename == "dokument-ü.docx"


def test_name_falls_back_to_document_without_a_path(origin: Origin, docx: bytes) -> None:
    _serve(origin, "/", docx)
    assert UrlFetcher(LOOPBACK, timeout=5).fetch(origin.url, io.BytesIO(), MIB).filename == \
        "document"


def test_loopback_is_denied_without_the_allow_setting(origin: Origin, docx: bytes) -> None:
    _serve(origin, "/doc.docx", docx)
    with pytest.raises(InvalidRequest) as caught:
        UrlFetcher(WebhookPolicy(()), timeout=5).fetch(f"{origin.url}/doc.docx", io.BytesIO(),
                                                       MIB)
    assert "127.0.0.1 is a loopback address" in caught.value.message
    assert "CONVERTER_WEBHOOK_ALLOW" in caught.value.message
    assert caught.value.details["field"] == "url"
    assert origin.connections == 0


def test_localhost_name_is_denied_after_resolution(origin: Origin) -> None:
    with pytest.raises(InvalidRequest) as caught:
        UrlFetcher(WebhookPolicy(()), timeout=5).fetch(f"http://localhost:{origin.port}/",
                                                       io.BytesIO(), MIB)
    assert "localhost resolves to" in caught.value.message
    assert "loopback" in caught.value.message
    assert origin.connections == 0


def test_redirect_to_a_denied_address_is_refused(origin: Origin, docx: bytes) -> None:
    # 127.0.0.2 is loopback too on Linux, but outside the 127.0.0.1/32 allowance.
    denied = Origin(host="127.0.0.2")
    try:
        _serve(denied, "/secret.docx", docx)
        origin.routes["/go"] = lambda h: send(
            h, b"", 302, {"Location": f"{denied.url}/secret.docx"})
        with pytest.raises(InvalidRequest) as caught:
            UrlFetcher(LOOPBACK, timeout=5).fetch(f"{origin.url}/go", io.BytesIO(), MIB)
        assert "redirected to" in caught.value.message
        assert "127.0.0.2 is a loopback address" in caught.value.message
        assert denied.connections == 0
    finally:
        denied.close()


def _chain(origin: Origin, body: bytes, hops: int) -> None:
    """/hop/N redirects (relative) to /hop/N-1; /hop/0 serves body."""
    _serve(origin, "/hop/0", body)
    for n in range(1, hops + 1):
        origin.routes[f"/hop/{n}"] = (
            lambda h, n=n: send(h, b"moved", 301 + n % 3, {"Location": f"/hop/{n - 1}"}))


def test_three_redirects_are_followed(origin: Origin, docx: bytes) -> None:
    _chain(origin, docx, 4)
    out = io.BytesIO()
    got = UrlFetcher(LOOPBACK, timeout=5).fetch(f"{origin.url}/hop/3", out, MIB)
    assert out.getvalue() == docx
    assert got.filename == "0"  # the last segment of the final URL
    assert origin.paths() == ["/hop/3", "/hop/2", "/hop/1", "/hop/0"]


def test_four_redirects_are_refused(origin: Origin, docx: bytes) -> None:
    _chain(origin, docx, 4)
    with pytest.raises(UpstreamError) as caught:
        UrlFetcher(LOOPBACK, timeout=5).fetch(f"{origin.url}/hop/4", io.BytesIO(), MIB)
    assert "127.0.0.1 redirected more than 3 times" in caught.value.message
    assert origin.paths() == ["/hop/4", "/hop/3", "/hop/2", "/hop/1"]


def test_size_limit_stops_the_stream_early(origin: Origin) -> None:
    total = 64 * MIB
    outcome: dict[str, int | bool] = {"sent": 0, "cut": False}
    done = threading.Event()

    def endless(h: BaseHTTPRequestHandler) -> None:
        # No Content-Length: only counting while streaming can catch this body.
        h.send_response(200)
        h.end_headers()
        block = b"x" * 65536
        try:
            while int(outcome["sent"]) < total:
                h.wfile.write(block)
                outcome["sent"] = int(outcome["sent"]) + len(block)
        except (BrokenPipeError, ConnectionResetError):
            outcome["cut"] = True
        done.set()

    origin.routes["/big"] = endless
    out = io.BytesIO()
    with pytest.raises(PayloadTooLarge) as caught:
        UrlFetcher(LOOPBACK, timeout=5).fetch(f"{origin.url}/big", out, MIB)
    assert "1 MiB limit (CONVERTER_MAX_UPLOAD_MB)" in caught.value.message
    assert caught.value.details["field"] == "url"
    assert len(out.getvalue()) <= MIB
    assert done.wait(10)
    assert outcome["cut"] is True
    assert int(outcome["sent"]) < total


def test_declared_length_over_the_limit_is_refused_before_the_body(origin: Origin) -> None:
    _serve(origin, "/big", b"y" * (MIB + 1))
    out = io.BytesIO()
    with pytest.raises(PayloadTooLarge):
        UrlFetcher(LOOPBACK, timeout=5).fetch(f"{origin.url}/big", out, MIB)
    assert out.getvalue() == b""


def test_body_cut_short_of_its_length_is_an_upstream_error(origin: Origin) -> None:
    def short(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"z" * 10)

    origin.routes["/short"] = short
    with pytest.raises(UpstreamError) as caught:
        UrlFetcher(LOOPBACK, timeout=5).fetch(f"{origin.url}/short", io.BytesIO(), MIB)
    assert "after 10 of 1000 bytes" in caught.value.message


@pytest.mark.parametrize("where", ["before headers", "mid-body"])
def test_a_stalled_server_times_out(origin: Origin, where: str) -> None:
    def stall(h: BaseHTTPRequestHandler) -> None:
        if where == "mid-body":
            h.send_response(200)
            h.send_header("Content-Length", "100")
            h.end_headers()
            h.wfile.write(b"a" * 10)
        origin.release.wait(30)

    origin.routes["/stall"] = stall
    started = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        UrlFetcher(LOOPBACK, timeout=1).fetch(f"{origin.url}/stall", io.BytesIO(), MIB)
    assert time.monotonic() - started < 1 + 1.5
    assert "127.0.0.1" in caught.value.message
    assert "timed out" in caught.value.message


def test_a_trickling_server_hits_the_total_deadline(origin: Origin) -> None:
    def trickle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100000")
        h.end_headers()
        try:
            # Each byte comes well within the 1 s read timeout; only the total can stop it.
            while not origin.release.wait(0.1):
                h.wfile.write(b"t")
        except (BrokenPipeError, ConnectionResetError):
            pass

    origin.routes["/trickle"] = trickle
    started = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        UrlFetcher(LOOPBACK, timeout=1, total_timeout=2).fetch(f"{origin.url}/trickle",
                                                               io.BytesIO(), MIB)
    elapsed = time.monotonic() - started
    assert 2 <= elapsed < 2 + 1.5
    assert "127.0.0.1 did not finish within 2 s" in caught.value.message


def test_connection_refused_names_the_host() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(UpstreamError) as caught:
        UrlFetcher(LOOPBACK, timeout=5).fetch(f"http://127.0.0.1:{port}/doc", io.BytesIO(), MIB)
    assert f"127.0.0.1 port {port} (connection refused)" in caught.value.message
    assert caught.value.status == 502
    assert caught.value.type == "upstream_error"


def test_unresolvable_host_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError) as caught:
        UrlFetcher(LOOPBACK, timeout=3).fetch("http://no-such-host.invalid/doc.docx",
                                              io.BytesIO(), MIB)
    assert "no-such-host.invalid" in caught.value.message


def test_not_found_names_the_status(origin: Origin) -> None:
    with pytest.raises(UpstreamError) as caught:
        UrlFetcher(LOOPBACK, timeout=5).fetch(f"{origin.url}/missing.docx", io.BytesIO(), MIB)
    assert "127.0.0.1 answered HTTP 404" in caught.value.message
    assert caught.value.details["status"] == 404
    assert caught.value.details["retryable"] is False


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1/doc.docx",
    "file:///etc/passwd",
    "http://user:secret@127.0.0.1/doc.docx",
    "http:///doc.docx",
    "http://127.0.0.1:99999/doc.docx",
    "http://[::1/doc.docx",
    "http://127.0.0.1/doc.docx HTTP/1.1\r\nX-Injected: 1",
    "http://127.0.0.1/a b.docx",
    "not a url",
    "",
    "http://127.0.0.1/" + "a" * 9000,
])
def test_invalid_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        UrlFetcher(LOOPBACK, timeout=5).fetch(url, io.BytesIO(), MIB)
    assert caught.value.message.startswith("url")
    assert caught.value.details["field"] == "url"


# ------------------------------------------------------------------ https


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA and a leaf certificate for DNS name localhost, made by openssl."""
    folder = tmp_path_factory.mktemp("tls")
    paths = {name: folder / name for name in ("ca.key", "ca.pem", "leaf.key", "leaf.csr",
                                             "leaf.pem", "san.ext")}
    paths["san.ext"].write_text("subjectAltName=DNS:localhost\n")

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=converter test CA", "-keyout", paths["ca.key"], "-out", paths["ca.pem"])
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", paths["leaf.key"], "-out", paths["leaf.csr"])
    openssl("x509", "-req", "-in", paths["leaf.csr"], "-CA", paths["ca.pem"], "-CAkey",
            paths["ca.key"], "-CAcreateserial", "-days", "2", "-extfile", paths["san.ext"],
            "-out", paths["leaf.pem"])
    return paths


@pytest.fixture
def tls_origin(certificates: dict[str, Path]) -> Iterator[Origin]:
    """An HTTPS server on 127.0.0.1 presenting the localhost certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates["leaf.pem"], certificates["leaf.key"])
    server = Origin(tls=context)
    yield server
    server.close()


def test_https_verifies_the_certificate_and_sends_sni(tls_origin: Origin, docx: bytes,
                                                      certificates: dict[str, Path]) -> None:
    _serve(tls_origin, "/secure.docx", docx)
    trusting = ssl.create_default_context(cafile=str(certificates["ca.pem"]))
    policy = WebhookPolicy(("127.0.0.1/32", "::1/128"))
    out = io.BytesIO()
    got = UrlFetcher(policy, timeout=5, tls=trusting).fetch(
        f"https://localhost:{tls_origin.port}/secure.docx", out, MIB)
    assert out.getvalue() == docx and got.filename == "secure.docx"
    assert tls_origin.server_names == ["localhost"]
    assert tls_origin.requests[0][1]["Host"] == f"localhost:{tls_origin.port}"


def test_https_refuses_an_untrusted_certificate(tls_origin: Origin, docx: bytes) -> None:
    _serve(tls_origin, "/secure.docx", docx)
    policy = WebhookPolicy(("127.0.0.1/32", "::1/128"))
    with pytest.raises(UpstreamError) as caught:
        UrlFetcher(policy, timeout=5).fetch(f"https://localhost:{tls_origin.port}/secure.docx",
                                            io.BytesIO(), MIB)
    assert "certificate of localhost is not valid" in caught.value.message
    assert tls_origin.requests == []


def test_https_refuses_a_certificate_for_another_name(tls_origin: Origin, docx: bytes,
                                                      certificates: dict[str, Path]) -> None:
    _serve(tls_origin, "/secure.docx", docx)
    trusting = ssl.create_default_context(cafile=str(certificates["ca.pem"]))
    with pytest.raises(UpstreamError) as caught:
        UrlFetcher(LOOPBACK, timeout=5, tls=trusting).fetch(f"{tls_origin.url}/secure.docx",
                                                            io.BytesIO(), MIB)
    assert "certificate of 127.0.0.1 is not valid" in caught.value.message
    assert tls_origin.requests == []
