"""Exceptions of the Python client: one class per API error type, plus transport failures.

The API answers every error as ``{"error": {"type", "message", "request_id", ...}}``;
``from_response`` turns that into the class named by ``type`` (falling back on the
HTTP status), so callers can ``except NotFound`` instead of parsing bodies.
"""

from __future__ import annotations

from typing import Any

import requests


class ClientError(Exception):
    """Base of everything the client raises."""


class ServiceUnreachable(ClientError):
    """No HTTP answer: connection refused, DNS failure or a timeout, after every retry."""


class ApiError(ClientError):
    """The service answered with an error status; carries its error envelope."""

    type_name = "error"

    def __init__(self, status: int, error_type: str, message: str, request_id: str | None,
                 details: dict[str, Any] | None = None, retry_after: float | None = None,
                 ) -> None:
        super().__init__(
            f"{status} {error_type}: {message} (request_id {request_id or 'unknown'})")
        self.status = status
        self.type = error_type
        self.message = message
        self.request_id = request_id
        self.details = details or {}
        self.retry_after = retry_after


class InvalidRequest(ApiError):
    """400: a missing, empty or invalid field; ``details`` names it and its valid values."""

    type_name = "invalid_request"


class PasswordRequired(InvalidRequest):
    """400: the source is encrypted; send its password as options.password."""

    type_name = "password_required"


class PasswordIncorrect(InvalidRequest):
    """400: options.password does not open the encrypted source."""

    type_name = "password_incorrect"


class ConnectorFailed(InvalidRequest):
    """400: a connector's provider refused (bad credentials, no bucket, no right to write)."""

    type_name = "connector_failed"


class Unauthorized(ApiError):
    """401: missing, invalid or revoked API key."""

    type_name = "unauthorized"


class Forbidden(ApiError):
    """403: a tampered or expired download link."""

    type_name = "forbidden"


class NotFound(ApiError):
    """404: the file or run does not exist or is not visible to this key."""

    type_name = "not_found"


class MethodNotAllowed(ApiError):
    """405: the route exists but not with this method (for example a server without it)."""

    type_name = "method_not_allowed"


class Conflict(ApiError):
    """409: the object is not in a state that allows this (export of an unfinished run)."""

    type_name = "conflict"


class IdempotencyKeyInUse(Conflict):
    """409: an Idempotency-Key was reused with a different request body."""

    type_name = "idempotency_key_in_use"


class DestinationExists(Conflict):
    """409: the export's name is taken at the destination and on_conflict is fail."""

    type_name = "destination_exists"


class PayloadTooLarge(ApiError):
    """413: the upload is larger than the server's CONVERTER_MAX_UPLOAD_MB."""

    type_name = "payload_too_large"


class UnprocessableDocument(ApiError):
    """422: LibreOffice cannot open the document (corrupt, encrypted, a zip bomb...)."""

    type_name = "unprocessable_document"


class RateLimitExceeded(ApiError):
    """429: over the key's budget; ``retry_after`` says when to try again."""

    type_name = "rate_limit_exceeded"


class ServerError(ApiError):
    """5xx: the service failed; subclasses say how."""

    type_name = "internal_error"


class UpstreamError(ServerError):
    """502: the engine failed or timed out mid-conversion; a retry usually succeeds."""

    type_name = "upstream_error"


class ConnectorUnavailable(UpstreamError):
    """502: a connector's provider could not be reached; a retry may succeed."""

    type_name = "connector_unavailable"


class Overloaded(ServerError):
    """503: every engine instance is busy and the queue is full."""

    type_name = "overloaded"


class StorageUnavailable(ServerError):
    """503: the artifact storage cannot be reached."""

    type_name = "storage_unavailable"


class Unavailable(ServerError):
    """503: the service's database cannot be reached; retry after ``retry_after``."""

    type_name = "unavailable"


class InsufficientStorage(ServerError):
    """507: the service's disk is (nearly) full; nothing was stored, retry later."""

    type_name = "insufficient_storage"


class RunFailed(ClientError):
    """A run ended with status ``failed``; ``run`` is its last JSON."""

    def __init__(self, run: dict[str, Any]) -> None:
        super().__init__(f"run {run.get('id')} failed: {run.get('error') or 'no error given'}")
        self.run = run


class ExportFailed(ClientError):
    """An export ended with status ``failed``; ``export`` is its last JSON."""

    def __init__(self, export: dict[str, Any]) -> None:
        super().__init__(f"export {export.get('id')} failed: "
                         f"{export.get('error') or 'no error given'}")
        self.export = export


class WaitTimeout(ClientError):
    """A run did not finish within the wait's timeout; ``run`` is its last JSON."""

    def __init__(self, run: dict[str, Any], timeout: float) -> None:
        super().__init__(f"run {run.get('id')} still {run.get('status')} after {timeout:g}s")
        self.run = run


def _subclasses(cls: type[ApiError]) -> list[type[ApiError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


BY_TYPE: dict[str, type[ApiError]] = {c.type_name: c for c in _subclasses(ApiError)}
_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound,
    405: MethodNotAllowed, 409: Conflict, 413: PayloadTooLarge, 422: UnprocessableDocument,
    429: RateLimitExceeded, 502: UpstreamError, 503: Overloaded, 507: InsufficientStorage,
}


def retry_after(response: requests.Response) -> float | None:
    """The Retry-After header in seconds (the delta-seconds form), or None."""
    raw = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None  # an HTTP date: rare from this service; fall back on backoff


def from_response(response: requests.Response) -> ApiError:
    """The typed exception for an error response (any body, even a proxy's HTML)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    envelope = body.get("error") if isinstance(body, dict) else None
    if not isinstance(envelope, dict):
        envelope = {"message": (response.text or response.reason or "")[:300]}
    type_ = str(envelope.get("type") or "")
    cls = BY_TYPE.get(type_) or _BY_STATUS.get(response.status_code) or (
        ServerError if response.status_code >= 500 else ApiError)
    details = {k: v for k, v in envelope.items() if k not in ("type", "message", "request_id")}
    return cls(response.status_code, type_ or cls.type_name,
               str(envelope.get("message") or response.reason or "error"),
               envelope.get("request_id") or response.headers.get("X-Request-Id"),
               details, retry_after(response))
