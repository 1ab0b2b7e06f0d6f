"""Import a document from a URL (a presigned S3 link, a file server) into a caller's file.

Security: the fetch is a request the service makes on a client's behalf, so every hop is
vetted like a webhook: the host is resolved, each address checked with
``WebhookPolicy.denial`` (loopback, private, link-local... are refused unless
CONVERTER_WEBHOOK_ALLOW covers them), and the connection goes to the address just checked, so
a DNS answer that changes in between (rebinding) cannot reach a denied host. Redirects are
followed by hand, at most ``max_redirects`` of them, and each target is vetted the same way.
HTTPS keeps certificate verification and SNI against the URL's host name while the TCP
connection is pinned to the vetted address.

Resources: the body is streamed to the caller's file in chunks and counted, so an answer
larger than the limit stops the transfer without ever being held in memory. Every socket
operation waits at most ``timeout`` seconds, and a watchdog shuts the socket when the
whole fetch (DNS, every hop, the body) outlives ``total_timeout``, so a server that trickles
one byte at a time cannot hold a worker for ever.
"""

from __future__ import annotations

import hashlib
import http.client
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote, unquote, urljoin, urlsplit

from converter import cpu_gate
from converter.errors import InvalidRequest, PayloadTooLarge, UpstreamError
from converter.service.intake import safe_filename
from converter.service.webhooks import WebhookPolicy

_FIELD = "url"
# Presigned URLs carry long signatures and session tokens; 2048 is too short for STS ones.
MAX_URL_LENGTH = 8192
_CHUNK = 64 * 1024
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_HEADERS = {"User-Agent": "converter-fetch/1", "Accept": "*/*",
            # Stored bytes must be the document itself, not a compressed transfer of it.
            "Accept-Encoding": "identity", "Connection": "close"}
_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_EXT_FILENAME = re.compile(r"(?:^|;)\s*filename\*\s*=\s*([^;]*)", re.IGNORECASE)
_FILENAME = re.compile(r'(?:^|;)\s*filename\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.IGNORECASE)


@dataclass(frozen=True)
class Fetched:
    """What a fetch wrote to the caller's file."""

    filename: str
    size_bytes: int
    sha256: str
    content_type: str | None


@dataclass(frozen=True)
class _Hop:
    """One vetted URL: where to connect and what to ask for."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA) form, for the Host header, SNI and certificate checks
    port: int
    target: str  # path and query
    addresses: tuple[str, ...]


class _TimedOut(Exception):
    """The total deadline passed (internal; becomes an UpstreamError naming the host)."""


class _Deadline:
    """The fetch's total time budget; shuts the socket in use when it runs out."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def left(self) -> float:
        """Seconds left; raises _TimedOut when none are."""
        left = self.end - time.monotonic()
        if left <= 0 or self.expired:
            raise _TimedOut
        return left

    def check(self) -> None:
        """Raise _TimedOut once the deadline has passed.

        Called after every socket error and at the end of a body: a socket the watchdog shut
        reads as an error or as EOF, and a close-delimited body cut that way must not pass
        for a complete one.
        """
        if self.expired or time.monotonic() >= self.end:
            raise _TimedOut

    def watch(self, sock: socket.socket) -> None:
        """Make sock the one to shut when the deadline passes."""
        with self._lock:
            self._sock = sock
        if self.expired:
            _shut(sock)

    def cancel(self) -> None:
        """The fetch is over: stop the watchdog."""
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._sock
        if sock is not None:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # socket.socket.shutdown, not SSLSocket.shutdown: the TLS object must stay intact for
    # the thread blocked in recv, which then fails at once instead of waiting out a timeout.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _PinnedConnection(http.client.HTTPConnection):
    """HTTP(S) to one vetted address, with Host, SNI and the certificate naming the URL's host."""

    def __init__(self, hop: _Hop, address: str, timeout: float, deadline: _Deadline,
                 tls: ssl.SSLContext | None) -> None:
        super().__init__(hop.host, hop.port, timeout=timeout)
        self.op_timeout = timeout
        self.address = address
        self.deadline = deadline
        self.tls = tls
        # Kept apart from self.sock, which http.client drops once a response will close.
        self.pinned: socket.socket | None = None

    def connect(self) -> None:
        """Connect to the vetted address instead of resolving the host again."""
        sock = socket.create_connection((self.address, self.port),
                                        min(self.op_timeout, self.deadline.left()))
        self.sock = self.pinned = sock  # set at once, so close() cleans up a failed handshake
        self.deadline.watch(sock)
        if self.tls is not None:
            # Handshake after watch(): the watchdog must be able to interrupt it too.
            sock = self.tls.wrap_socket(sock, server_hostname=self.host,
                                        do_handshake_on_connect=False)
            self.sock = self.pinned = sock
            self.deadline.watch(sock)
            sock.settimeout(min(self.op_timeout, self.deadline.left()))
            sock.do_handshake()


class UrlFetcher:
    """Downloads a URL into a binary file under the webhook address policy."""

    def __init__(self, policy: WebhookPolicy, timeout: float, max_redirects: int = 3,
                 total_timeout: float | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.policy = policy
        self.timeout = timeout
        self.max_redirects = max_redirects
        # A stall is caught by the per-operation timeout; the total only bounds a trickle,
        # so by default it leaves room for a large file on a slow but steady link.
        self.total_timeout = total_timeout if total_timeout is not None else 10 * timeout
        self.tls = tls or ssl.create_default_context()

    def fetch(self, url: str, out: BinaryIO, max_bytes: int) -> Fetched:
        """Stream url's body into out (at most max_bytes) and describe what was written."""
        deadline = _Deadline(self.total_timeout)
        try:
            with cpu_gate.released():  # a remote server's pace, up to the total timeout
                return self._fetch(url, out, max_bytes, deadline)
        except _TimedOut:
            host = _host_of(url)
            raise UpstreamError(f"url: {host} did not finish within {self.total_timeout:g} s",
                                field=_FIELD) from None
        finally:
            deadline.cancel()

    def _fetch(self, url: str, out: BinaryIO, max_bytes: int, deadline: _Deadline) -> Fetched:
        current, redirected = url, False
        for _hop in range(self.max_redirects + 1):
            hop = self._vet(current, redirected, deadline)
            conn, response = self._request(hop, deadline)
            try:
                location = response.getheader("Location")
                if response.status in _REDIRECTS and location:
                    current, redirected = urljoin(hop.url, location.strip()), True
                    continue
                if not 200 <= response.status < 300:
                    raise UpstreamError(
                        f"url: {hop.host} answered HTTP {response.status} {response.reason}"[:300],
                        retryable=response.status >= 500 or response.status in (408, 429),
                        field=_FIELD, status=response.status)
                size, digest = self._stream(hop, conn, response, out, max_bytes, deadline)
                return Fetched(filename=_filename(response.getheader("Content-Disposition"),
                                                  hop.url),
                               size_bytes=size, sha256=digest,
                               content_type=_media_type(response.getheader("Content-Type")))
            finally:
                # The response holds the socket's file too: both must go to close it.
                response.close()
                conn.close()
        raise UpstreamError(f"url: {_host_of(url)} redirected more than {self.max_redirects} "
                            "times", field=_FIELD, retryable=False)

    def _vet(self, url: str, redirected: bool, deadline: _Deadline) -> _Hop:
        """Parse and resolve url and check every address; InvalidRequest if refused."""
        said = f"url: redirected to {url[:200]}, which" if redirected else "url"
        if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
            raise InvalidRequest(f"{said} must be an http(s) URL of at most {MAX_URL_LENGTH} "
                                 "characters", field=_FIELD)
        if _CONTROL.search(url):
            # They could split the request line (header injection); real URLs encode them.
            raise InvalidRequest(f"{said} must not contain spaces or control characters",
                                 field=_FIELD)
        try:
            parts = urlsplit(url)
            port = parts.port
            host = (parts.hostname or "").encode("idna").decode("ascii")
        except (ValueError, UnicodeError):
            raise InvalidRequest(f"{said} is not a valid URL", field=_FIELD) from None
        if parts.scheme not in ("http", "https") or not host:
            raise InvalidRequest(f"{said} must start with http:// or https:// and name a host",
                                 field=_FIELD)
        if parts.username is not None or parts.password is not None:
            raise InvalidRequest(f"{said} must not contain credentials", field=_FIELD)
        port = port or (443 if parts.scheme == "https" else 80)
        addresses = _resolve(host, port, deadline)
        for address in addresses:
            reason = self.policy.denial(address)
            if reason:
                where = address if address == host else f"{host} resolves to {address},"
                article = "an" if reason[0] in "aeiou" else "a"
                lead = f"url: redirected to {url[:200]}, and" if redirected else "url:"
                raise InvalidRequest(
                    f"{lead} {where} is {article} {reason} address, which the service may not "
                    "fetch from (operators can allow it with CONVERTER_WEBHOOK_ALLOW)",
                    field=_FIELD)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # The request line is ASCII: send other characters percent-encoded, as browsers do.
        target = _NON_ASCII.sub(lambda m: quote(m.group()), target)
        return _Hop(url=url, scheme=parts.scheme, host=host, port=port, target=target,
                    addresses=addresses)

    def _request(self, hop: _Hop, deadline: _Deadline,
                 ) -> tuple[_PinnedConnection, http.client.HTTPResponse]:
        """GET hop.target from the first vetted address that accepts a connection."""
        failure = "no address"
        tls = self.tls if hop.scheme == "https" else None
        for address in hop.addresses:
            conn = _PinnedConnection(hop, address, self.timeout, deadline, tls)
            try:
                conn.request("GET", hop.target, headers=_HEADERS)
                return conn, conn.getresponse()
            except ssl.SSLCertVerificationError as exc:
                conn.close()
                raise UpstreamError(f"url: the certificate of {hop.host} is not valid "
                                    f"({exc.verify_message})", field=_FIELD,
                                    retryable=False) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                deadline.check()
                failure = _describe(exc)
        raise UpstreamError(f"url: could not fetch from {hop.host} port {hop.port} ({failure})",
                            field=_FIELD)

    def _stream(self, hop: _Hop, conn: _PinnedConnection, response: http.client.HTTPResponse,
                out: BinaryIO, max_bytes: int, deadline: _Deadline) -> tuple[int, str]:
        """Copy the body to out in chunks, stopping as soon as it passes max_bytes."""
        declared = response.getheader("Content-Length", "")
        if declared.strip().isdigit() and int(declared) > max_bytes:
            raise _too_large(max_bytes)
        sha = hashlib.sha256()
        size = 0
        while True:
            if conn.pinned is not None:
                conn.pinned.settimeout(min(self.timeout, deadline.left()))
            try:
                # read1 returns what one recv brought, so the deadline is checked per chunk.
                chunk = response.read1(_CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                deadline.check()
                raise UpstreamError(f"url: the transfer from {hop.host} failed after {size} "
                                    f"bytes ({_describe(exc)})", field=_FIELD) from None
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(max_bytes)
            sha.update(chunk)
            out.write(chunk)  # the caller's file: its errors are the caller's, not upstream's
        deadline.check()
        # http.client reports a body cut short of its Content-Length as a quiet end.
        if response.length:
            raise UpstreamError(f"url: {hop.host} closed the connection after {size} of "
                                f"{size + response.length} bytes", field=_FIELD)
        return size, sha.hexdigest()


def _resolve(host: str, port: int, deadline: _Deadline) -> tuple[str, ...]:
    """Addresses of host, within the deadline (getaddrinfo itself has no timeout)."""
    found: list[tuple[str, ...] | BaseException] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            found.append(tuple(dict.fromkeys(str(info[4][0]) for info in infos)))
        except (OSError, UnicodeError) as exc:
            found.append(exc)
        done.set()

    # A daemon thread, abandoned if the resolver hangs: it ends with the resolver's own timeout.
    threading.Thread(target=lookup, name="url-fetch-dns", daemon=True).start()
    if not done.wait(deadline.left()):
        raise _TimedOut
    result = found[0]
    if isinstance(result, BaseException) or not result:
        raise UpstreamError(f"url: cannot resolve host {host}", field=_FIELD)
    return result


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"url: the document is larger than the {max_bytes // 2**20} MiB limit "
                           "(CONVERTER_MAX_UPLOAD_MB)", field=_FIELD, limit_bytes=max_bytes)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{exc.__class__.__name__}: {exc}"[:200]


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "the host"
    except ValueError:
        return "the host"


def _media_type(value: str | None) -> str | None:
    kind = (value or "").split(";", 1)[0].strip().lower()
    return kind[:127] or None


def _filename(disposition: str | None, url: str) -> str:
    """Content-Disposition's filename* (RFC 5987), then its filename, then the URL's last
    path segment; made safe either way."""
    if disposition:
        extended = _EXT_FILENAME.search(disposition)
        if extended:
            charset, _, rest = extended.group(1).strip().strip('"').partition("'")
            _, _, encoded = rest.partition("'")
            try:
                name = unquote(encoded, encoding=charset or "utf-8", errors="strict")
            except (LookupError, UnicodeDecodeError):
                name = ""
            if name:
                return safe_filename(name)
        plain = _FILENAME.search(disposition)
        if plain:
            value = plain.group(1).strip()
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            if value:
                return safe_filename(value)
    path = urlsplit(url).path
    return safe_filename(unquote(path.rsplit("/", 1)[-1], errors="replace"))
