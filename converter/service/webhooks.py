"""Webhooks: where a run may call back, how the call is signed, and its delivery with retries.

Security: a webhook URL is a request the service makes on a client's behalf, so
its host is resolved and every address checked against a deny list (loopback,
link-local, private, reserved, multicast) unless an operator CIDR in
CONVERTER_WEBHOOK_ALLOW covers it. The check runs when the run is created and
again at each delivery, and the connection goes to the address just checked, so
a DNS answer that changes in between (rebinding) cannot redirect it. Redirects
are never followed.

Signature: Standard Webhooks headers from ``webhook_signing``; retries of one
run's message keep its ``webhook-id``.

Deliveries live in ``webhook_deliveries``, one row per attempt; a row with
``next_attempt_at`` set is due then, so pending deliveries survive restarts.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, insert, select, update

from converter import metrics
from converter.db.engine import utcnow
from converter.db.schema import webhook_deliveries
from converter.errors import ConfigError, InvalidRequest
from converter.service.webhook_signing import SecretStore, signed_headers

logger = logging.getLogger("converter.webhooks")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_FIELD = "webhook_url"


@dataclass(frozen=True)
class Target:
    """A checked webhook URL and the addresses it may be delivered to."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


class WebhookPolicy:
    """Decides which webhook URLs and addresses are allowed."""

    def __init__(self, allow: tuple[str, ...]) -> None:
        self.allow: list[IPNetwork] = []
        for cidr in allow:
            try:
                self.allow.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                raise ConfigError(f"CONVERTER_WEBHOOK_ALLOW: {cidr!r} is not a CIDR such as "
                                  "10.0.0.0/8 or 127.0.0.1/32") from None

    def denial(self, address: str) -> str | None:
        """Why an address is refused, or None when it is allowed."""
        ip: IPAddress = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self.allow):
            return None
        for reason, flag in (("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
                             ("unspecified", ip.is_unspecified), ("multicast", ip.is_multicast),
                             ("private", ip.is_private), ("reserved", ip.is_reserved)):
            if flag:
                return reason
        return None if ip.is_global else "not globally routable"

    def check(self, url: str) -> Target:
        """Parse, resolve and vet a webhook URL; InvalidRequest naming webhook_url if refused."""
        if not isinstance(url, str) or not url or len(url) > 2048:
            raise InvalidRequest("webhook_url must be an http(s) URL of at most 2048 characters",
                                 field=_FIELD)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise InvalidRequest("webhook_url is not a valid URL", field=_FIELD) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidRequest("webhook_url must start with http:// or https:// and name a host",
                                 field=_FIELD)
        if parts.username is not None or parts.password is not None:
            raise InvalidRequest("webhook_url must not contain credentials", field=_FIELD)
        host = parts.hostname
        port = port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise InvalidRequest(f"webhook_url: cannot resolve host {host!r}",
                                 field=_FIELD) from None
        addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            reason = self.denial(address)
            if reason:
                raise InvalidRequest(
                    f"webhook_url: {host} resolves to {address}, a {reason} address, which "
                    "webhooks may not target (operators can allow it with "
                    "CONVERTER_WEBHOOK_ALLOW)", field=_FIELD)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return Target(url=url, scheme=parts.scheme, host=host, port=port, path=path,
                      addresses=addresses)


def schedule(conn: Connection, run_id: str) -> None:
    """Queue the first delivery of a finished run (in the transaction that finished it)."""
    now = utcnow()
    conn.execute(insert(webhook_deliveries).values(
        run_id=run_id, attempt=1, status_code=None, error=None, delivered=False, at=now,
        next_attempt_at=now))


@dataclass(frozen=True)
class Notice:
    """What to deliver for one run: built by the run service when the delivery is due."""

    workspace: str
    url: str
    event: str
    body: dict[str, Any]


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP to a vetted address, with Host still naming the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        """Connect to the checked address instead of resolving the host again."""
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a vetted address; the certificate is still checked against the host name."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        """Connect to the checked address and do TLS with SNI for the host."""
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def post(target: Target, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST body to the first vetted address of target; return the HTTP status."""
    kind = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
    conn = kind(target.host, target.port, target.addresses[0], timeout)
    try:
        conn.request("POST", target.path, body=body, headers=headers)
        response = conn.getresponse()
        response.read(65536)
        return int(response.status)
    finally:
        conn.close()


class WebhookDispatcher:
    """A background thread that delivers due webhooks and schedules retries."""

    def __init__(self, db: Engine, policy: WebhookPolicy, secrets_store: SecretStore,
                 render: Callable[[str], Notice | None], timeout: float, max_attempts: int,
                 backoff: float, poll: float = 1.0) -> None:
        self.db = db
        self.policy = policy
        self.secrets = secrets_store
        self.render = render
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.poll = poll
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start delivering in the background."""
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A delivery was scheduled: look now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the delivery in progress (undelivered rows stay due in the database)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.deliver_due()
            except Exception:  # the loop must outlive a database hiccup
                logger.exception("webhook dispatcher failed; retrying")
                done = 0
            if not done:
                self._wake.wait(self.poll)
                self._wake.clear()

    def deliver_due(self, limit: int = 20) -> int:
        """Attempt every due delivery this process can claim; return how many it attempted."""
        now = utcnow()
        with self.db.connect() as conn:
            due = conn.execute(
                select(webhook_deliveries.c.id, webhook_deliveries.c.run_id,
                       webhook_deliveries.c.attempt)
                .where(webhook_deliveries.c.next_attempt_at.is_not(None),
                       webhook_deliveries.c.next_attempt_at <= now)
                .order_by(webhook_deliveries.c.next_attempt_at).limit(limit)).all()
        attempted = 0
        for row in due:
            if self._stop.is_set():
                break
            if self._claim(row.id):
                self._attempt(row.id, row.run_id, row.attempt)
                attempted += 1
        return attempted

    def _claim(self, delivery_id: int) -> bool:
        # Pushing next_attempt_at past the attempt's duration both claims the row
        # (a concurrent claimer's condition no longer matches) and, should this
        # process die mid-attempt, makes the row due again later.
        now = utcnow()
        with self.db.begin() as conn:
            result = conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == delivery_id,
                       webhook_deliveries.c.next_attempt_at.is_not(None),
                       webhook_deliveries.c.next_attempt_at <= now)
                .values(next_attempt_at=now + timedelta(seconds=self.timeout + 30)))
        return result.rowcount == 1

    def _attempt(self, delivery_id: int, run_id: str, attempt: int) -> None:
        notice = self.render(run_id)
        if notice is None:
            self._record(delivery_id, run_id, attempt, None, "the run no longer exists", False)
            return
        status: int | None = None
        error: str | None = None
        retryable = True
        try:
            target = self.policy.check(notice.url)
            body = json.dumps(notice.body, separators=(",", ":")).encode("utf-8")
            # One message per run: retries keep its id, so receivers can deduplicate.
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "converter-webhooks/1",
                **signed_headers(self.secrets.get(notice.workspace), f"msg_{run_id}", body),
                "Converter-Event": notice.event,
                "Converter-Delivery": f"dlv_{delivery_id}",
            }
            status = post(target, body, headers, self.timeout)
            if not 200 <= status < 300:
                error = f"the endpoint answered HTTP {status}"
        except InvalidRequest as exc:
            error, retryable = exc.message, False
        except (OSError, http.client.HTTPException) as exc:
            error = f"delivery failed: {exc.__class__.__name__}: {exc}"[:500]
        self._record(delivery_id, run_id, attempt, status, error, retryable)

    def _record(self, delivery_id: int, run_id: str, attempt: int, status: int | None,
                error: str | None, retryable: bool) -> None:
        now = utcnow()
        delivered = error is None
        will_retry = not delivered and retryable and attempt < self.max_attempts
        metrics.WEBHOOK_DELIVERIES.labels(
            outcome="delivered" if delivered else "retry" if will_retry else "failed").inc()
        with self.db.begin() as conn:
            conn.execute(update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
                         .values(status_code=status, error=error, delivered=delivered, at=now,
                                 next_attempt_at=None))
            if will_retry:
                delay = self.backoff * 2 ** (attempt - 1)
                conn.execute(insert(webhook_deliveries).values(
                    run_id=run_id, attempt=attempt + 1, status_code=None, error=None,
                    delivered=False, at=now, next_attempt_at=now + timedelta(seconds=delay)))
        if not delivered:
            logger.warning("webhook for %s attempt %d failed: %s", run_id, attempt, error)


def view(conn: Connection, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Per run: its attempts so far and when the next one is due (for the run's JSON)."""
    out: dict[str, dict[str, Any]] = {}
    if not run_ids:
        return out
    rows = conn.execute(select(webhook_deliveries)
                        .where(webhook_deliveries.c.run_id.in_(run_ids))
                        .order_by(webhook_deliveries.c.attempt)).all()
    for row in rows:
        entry = out.setdefault(row.run_id, {"deliveries": [], "next_attempt_at": None})
        if row.next_attempt_at is not None:
            entry["next_attempt_at"] = row.next_attempt_at
            continue
        entry["deliveries"].append({"attempt": row.attempt, "status_code": row.status_code,
                                    "error": row.error, "delivered": bool(row.delivered),
                                    "at": row.at})
    return out
