"""Python client for the converter service (``from converter.client import Client``).

Built on requests; it needs neither Flask nor LibreOffice. See the README's
"Python client" section for a tour.
"""

from __future__ import annotations

from converter.client.api import Client, OneShot, new_idempotency_key
from converter.client.errors import (
    ApiError,
    ClientError,
    Conflict,
    ConnectorFailed,
    ConnectorUnavailable,
    DestinationExists,
    ExportFailed,
    Forbidden,
    IdempotencyKeyInUse,
    InsufficientStorage,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PasswordIncorrect,
    PasswordRequired,
    PayloadTooLarge,
    RateLimitExceeded,
    RunFailed,
    ServerError,
    ServiceUnreachable,
    StorageUnavailable,
    Unauthorized,
    Unavailable,
    UnprocessableDocument,
    UpstreamError,
    WaitTimeout,
)
from converter.client.transport import RetryPolicy

__all__ = [
    "ApiError", "Client", "ClientError", "Conflict", "ConnectorFailed",
    "ConnectorUnavailable", "DestinationExists", "ExportFailed", "Forbidden",
    "IdempotencyKeyInUse",
    "InsufficientStorage", "InvalidRequest", "MethodNotAllowed", "NotFound", "OneShot",
    "Overloaded", "PasswordIncorrect", "PasswordRequired", "PayloadTooLarge",
    "RateLimitExceeded", "RetryPolicy", "RunFailed", "ServerError", "ServiceUnreachable",
    "StorageUnavailable", "Unauthorized", "Unavailable", "UnprocessableDocument",
    "UpstreamError", "WaitTimeout", "new_idempotency_key",
]
