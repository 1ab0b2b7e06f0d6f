"""The one place where errors become HTTP responses, all in one JSON shape."""

from __future__ import annotations

import logging
import re
import secrets
from typing import Any

from flask import Flask, Response, g, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from converter.db.outage import translate as translate_db_error
from converter.diskspace import full_disk, no_space
from converter.errors import ConverterError, PayloadTooLarge
from converter.storage import ObjectMissing, StorageError

logger = logging.getLogger("converter.api")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

_HTTP_TYPES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden",
               404: "not_found", 405: "method_not_allowed", 409: "conflict",
               413: "payload_too_large", 415: "invalid_request", 429: "rate_limit_exceeded"}


def request_id() -> str:
    """This request's id (client-supplied X-Request-ID if well-formed, else random)."""
    rid: str | None = getattr(g, "request_id", None)
    if rid is None:
        given = request.headers.get("X-Request-ID", "")
        rid = given if _REQUEST_ID.match(given) else "req_" + secrets.token_hex(8)
        g.request_id = rid
    return rid


def error_response(status: int, body: dict[str, Any],
                   headers: dict[str, str] | None = None) -> Response:
    """Build the JSON error envelope."""
    response = jsonify({"error": {**body, "request_id": request_id()}})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _converter_error(exc: ConverterError) -> Response:
    if exc.status >= 500:
        logger.warning("%s %s -> %d %s", request.method, request.path, exc.status, exc.message)
    return error_response(exc.status, exc.to_dict(), exc.headers)


def _drain_body(limit: int) -> None:
    # Reading the rest of a moderately oversized body lets the client receive the 413
    # instead of a reset connection; a body far beyond the limit is not worth reading.
    length = request.content_length or 0
    if 0 < length <= 4 * limit:
        stream = request.environ["wsgi.input"]
        remaining = length
        while remaining > 0 and (chunk := stream.read(min(remaining, 1 << 20))):
            remaining -= len(chunk)


def _too_large(_exc: RequestEntityTooLarge) -> Response:
    limit = (request.max_content_length or 0) - 1024 * 1024
    _drain_body(request.max_content_length or 0)
    return _converter_error(PayloadTooLarge(
        f"file is larger than the {max(limit, 0) // 2**20} MiB limit (CONVERTER_MAX_UPLOAD_MB)",
        field="file", limit_bytes=max(limit, 0)))


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    # Werkzeug's headers tell the client how to recover (Allow on a 405, which RFC 9110
    # requires); only its HTML Content-Type is replaced by the JSON envelope's.
    headers = {name: value for name, value in exc.get_headers()
               if name.lower() != "content-type"}
    return error_response(status, {"type": _HTTP_TYPES.get(status, "http_error"),
                                   "message": exc.description or exc.name}, headers)


def _storage_error(exc: StorageError) -> Response:
    logger.error("storage failure on %s %s: %s", request.method, request.path, exc)
    if no_space(exc):
        return _converter_error(full_disk())
    return error_response(503, {"type": "storage_unavailable", "retryable": True,
                                "message": "Artifact storage is unavailable; retry shortly"},
                          {"Retry-After": "5"})


def _object_missing(exc: ObjectMissing) -> Response:
    logger.error("stored object missing on %s %s: %s", request.method, request.path, exc)
    return error_response(404, {"type": "not_found",
                                "message": "The stored document is missing; upload it again"})


def _database_error(exc: SQLAlchemyError) -> Response:
    translated = translate_db_error(exc)
    if translated is None:
        return _unexpected(exc)
    logger.error("database failure on %s %s: %s", request.method, request.path,
                 str(exc).splitlines()[0])
    return _converter_error(translated)


def _unexpected(exc: Exception) -> Response:
    if no_space(exc):
        logger.error("out of disk space on %s %s: %s", request.method, request.path, exc)
        return _converter_error(full_disk())
    logger.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, {"type": "internal_error",
                                "message": "Internal error; quote the request_id when reporting"})


def _stamp(response: Response) -> Response:
    response.headers["X-Request-ID"] = request_id()
    for name, value in (getattr(g, "ratelimit_headers", None) or {}).items():
        response.headers.setdefault(name, value)
    return response


def init_app(app: Flask) -> None:
    """Register the handlers on app."""
    app.register_error_handler(ConverterError, _converter_error)
    app.register_error_handler(RequestEntityTooLarge, _too_large)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ObjectMissing, _object_missing)
    app.register_error_handler(StorageError, _storage_error)
    app.register_error_handler(SQLAlchemyError, _database_error)
    app.register_error_handler(Exception, _unexpected)
    app.after_request(_stamp)
