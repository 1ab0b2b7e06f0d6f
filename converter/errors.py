"""One error tree for the whole service.

Every layer raises these; only ``converter.api.errors`` turns them into HTTP.
Nothing here imports Flask, so the service layer and the engine can use it.
"""

from __future__ import annotations

from typing import Any


class ConverterError(Exception):
    """Base of every error the service reports to a client."""

    status: int = 500
    type: str = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers: dict[str, str] = {}

    def to_dict(self) -> dict[str, Any]:
        """Return the public JSON body fields (without request_id)."""
        return {"type": self.type, "message": self.message, **self.details}


class InvalidRequest(ConverterError):
    """The request is malformed or asks for something that does not exist."""

    status = 400
    type = "invalid_request"


class PasswordRequired(InvalidRequest):
    """The source is encrypted and the request carries no password."""

    type = "password_required"


class PasswordIncorrect(InvalidRequest):
    """The password given does not open the encrypted source."""

    type = "password_incorrect"


class Unauthorized(ConverterError):
    """No API key, or one that does not match."""

    status = 401
    type = "unauthorized"

    def __init__(self, message: str = "Missing or invalid API key.") -> None:
        super().__init__(message)


class Forbidden(ConverterError):
    """The credential is understood but does not allow this (bad or expired URL token)."""

    status = 403
    type = "forbidden"


class NotFound(ConverterError):
    """The object does not exist or is not visible to this key."""

    status = 404
    type = "not_found"


class Conflict(ConverterError):
    """The object is not in a state that allows this operation."""

    status = 409
    type = "conflict"


class DestinationExists(Conflict):
    """An export's target already holds an object and on_conflict is "fail"."""

    type = "destination_exists"


class IdempotencyKeyInUse(ConverterError):
    """An Idempotency-Key was reused with a different request body."""

    status = 409
    type = "idempotency_key_in_use"


class PayloadTooLarge(ConverterError):
    """The upload is larger than CONVERTER_MAX_UPLOAD_MB."""

    status = 413
    type = "payload_too_large"


class UnprocessableDocument(ConverterError):
    """LibreOffice cannot open the document: corrupt, encrypted or not what it claims."""

    status = 422
    type = "unprocessable_document"


class RateLimitExceeded(ConverterError):
    """The key used up its budget for this endpoint."""

    status = 429
    type = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: int, **details: Any) -> None:
        super().__init__(message, retry_after=retry_after, **details)
        self.headers["Retry-After"] = str(retry_after)


class UpstreamError(ConverterError):
    """The engine failed while converting; a retry usually succeeds."""

    status = 502
    type = "upstream_error"

    def __init__(self, message: str, retryable: bool = True, **details: Any) -> None:
        super().__init__(message, retryable=retryable, **details)


class RetryLater(ConverterError):
    """A passing condition of the service itself: retryable, after Retry-After seconds."""

    status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, retryable=True, retry_after=retry_after)
        self.headers["Retry-After"] = str(retry_after)


class Overloaded(RetryLater):
    """The engine's wait queue is full; the client should back off."""

    type = "overloaded"


class Unavailable(RetryLater):
    """A dependency (the database) cannot be reached; the same request succeeds later."""

    type = "unavailable"

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message, retry_after)


class InsufficientStorage(RetryLater):
    """The data or scratch file system is (nearly) full; retry once space is freed."""

    status = 507
    type = "insufficient_storage"

    def __init__(self, message: str, retry_after: int = 30) -> None:
        super().__init__(message, retry_after)


class ConversionTimeout(UpstreamError):
    """The conversion outlived CONVERTER_CONVERSION_TIMEOUT; its instance was restarted."""

    type = "upstream_error"


class ConnectorFailed(InvalidRequest):
    """A connector's provider refused (bad credentials, no such bucket, no right to write)."""

    type = "connector_failed"


class ConnectorUnavailable(UpstreamError):
    """A connector's provider could not be reached or failed transiently: retryable."""

    type = "connector_unavailable"


class ConfigError(Exception):
    """Invalid operator configuration; the message names the variable to fix."""


class EngineStartError(Exception):
    """An engine instance could not be started; the message names the setting to check."""
