"""Async conversion runs: create (idempotent, budgeted), fetch, list, and re-export.

A run is a row in ``runs``; the 202 is returned only after that row (and the
Idempotency-Key's stored response) committed, so an accepted run is never lost.
The run workers (run_worker.py) execute it; this module only reads and writes
rows and renders them. Runs carry the workspace, owner and scope of their file,
so they are visible to exactly the keys that can see the file.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, Engine, Row, Select, func, insert, select

from converter import metrics
from converter.db.engine import as_utc, next_seq, utcnow
from converter.db.schema import artifacts, files, runs
from converter.errors import Conflict, InvalidRequest, NotFound, RateLimitExceeded
from converter.matrix import ExportPlan, Matrix
from converter.service import webhooks
from converter.service.conversion import Artifact, ConversionService, tenant_of
from converter.service.files import FileRecord, FileService, metadata_of
from converter.service.idempotency import (
    REPLAYED_HEADER,
    IdempotencyStore,
    lock_api_key,
    request_hash,
)
from converter.service.pagination import decode_cursor, encode_cursor
from converter.service.principal import Principal
from converter.service.ratelimit import Budget, headers
from converter.service.webhook_signing import SecretStore
from converter.service.webhooks import Notice, WebhookPolicy

STATUSES = ("pending", "running", "completed", "failed")
# A destination makes the run deliver its output when complete (an attached export).
DESTINATION_FIELDS = ("destination_connector_id", "destination_subpath", "on_conflict")
_CREATE_FIELDS = ("file_id", "format", "options", "webhook_url", *DESTINATION_FIELDS)
_EXPORT_FIELDS = ("format", "options", *DESTINATION_FIELDS)
_FILE_COLUMNS = ("id", "workspace", "owner", "scope", "filename", "format", "size_bytes",
                 "sha256", "storage_key", "created_at")
_METADATA_COLUMNS = ("encrypted", "pages", "sheets", "title", "author", "metadata_unknown")
_ARTIFACT_COLUMNS = ("format", "media_type", "storage_key", "size_bytes", "source_id",
                     "produced_by")


@dataclass(frozen=True)
class Accepted:
    """A POST's answer: status, JSON body, extra headers, and whether it was replayed."""

    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    replayed: bool = False


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a Z, as every timestamp in the API."""
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def _object(body: Any, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object with {what}")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidRequest(f"Unknown field {unknown[0]!r}; accepted fields: "
                             f"{', '.join(allowed)}", field=unknown[0])
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise InvalidRequest("options must be a JSON object", field="options")
    target = body.get("format")
    if target is not None and not isinstance(target, str):
        raise InvalidRequest("format must be a string such as \"pdf\"", field="format")
    return body


def refuse_password(plan: ExportPlan) -> None:
    """Runs are stored and executed later; a password is never stored, so runs take none."""
    if plan.password:
        raise InvalidRequest(
            "options.password is accepted only by synchronous conversions "
            "(POST /v1/files/{id}/convert or POST /v1/convert): runs are stored, and a "
            "password never is", field="options.password")


def file_record(row: Any) -> FileRecord:
    """The FileRecord of a row selected with ``file_columns()``."""
    meta = SimpleNamespace(**{name: getattr(row, f"m_{name}") for name in _METADATA_COLUMNS})
    return FileRecord(**{name: getattr(row, f"f_{name}") for name in _FILE_COLUMNS
                         if name != "created_at"},
                      created_at=as_utc(row.f_created_at) or utcnow(), **metadata_of(meta))


def file_columns() -> list[Any]:
    """The files columns, labelled f_<name>, for joins that build a FileRecord."""
    return [*(files.c[name].label(f"f_{name}") for name in _FILE_COLUMNS),
            *(files.c[name].label(f"m_{name}") for name in _METADATA_COLUMNS)]


class RunService:
    """Creates and renders runs; the workers execute them."""

    def __init__(self, db: Engine, files_service: FileService, conversions: ConversionService,
                 matrix: Matrix, policy: WebhookPolicy, idempotency: IdempotencyStore,
                 secrets_store: SecretStore, runs_per_window: int, window_seconds: int,
                 webhook_base_url: str) -> None:
        self.db = db
        self.files = files_service
        self.conversions = conversions
        self.matrix = matrix
        self.policy = policy
        self.idempotency = idempotency
        self.secrets = secrets_store
        self.limit = runs_per_window
        self.window = window_seconds
        self.webhook_base_url = webhook_base_url
        self.on_created: list[Callable[[], None]] = []
        # The ExportService (set by wiring): runs with a destination attach an export.
        self.exports: Any = None

    def _destination(self, principal: Principal, request: dict[str, Any]) -> Any:
        if self.exports is None or not any(request.get(f) is not None
                                           for f in DESTINATION_FIELDS):
            return None
        return self.exports.destination(principal, request, use_defaults=False)

    # ------------------------------------------------------------------ create
    def create(self, principal: Principal, body: Any, idempotency_key: str | None,
               base_url: str) -> Accepted:
        """Validate and store a pending run (or replay the Idempotency-Key's first answer)."""
        request = _object(body, _CREATE_FIELDS, "file_id and format")
        file_id = request.get("file_id")
        if not isinstance(file_id, str) or not file_id:
            raise InvalidRequest("file_id is required: the id of an uploaded file",
                                 field="file_id")
        digest = request_hash("POST", "/v1/runs", request)
        if idempotency_key:
            replay = self.idempotency.peek(principal.key_id, idempotency_key, digest)
            if replay is not None:
                return Accepted(replay.status_code, replay.body, _REPLAYED, True)
        record = self.files.get(principal, file_id)
        plan = self.matrix.plan(record.format, request.get("format") or "",
                                request.get("options"))
        refuse_password(plan)
        webhook_url = request.get("webhook_url")
        if webhook_url is not None:
            if not isinstance(webhook_url, str):
                raise InvalidRequest("webhook_url must be a string", field="webhook_url")
            self.policy.check(webhook_url)
        destination = self._destination(principal, request)
        run_id = "run_" + secrets.token_hex(12)
        response = {"run_id": run_id, "status": "pending",
                    "status_url": f"{base_url.rstrip('/')}/v1/runs/{run_id}"}
        if destination is not None:
            response["export_id"] = "exp_" + secrets.token_hex(12)
        with self.db.begin() as conn:
            lock_api_key(conn, principal.key_id)
            replay = None
            if idempotency_key:
                replay = self.idempotency.lookup(conn, principal.key_id, idempotency_key,
                                                 digest)
            if replay is None:
                budget = self._charge(conn, principal.key_id)
                conn.execute(insert(runs).values(
                    id=run_id, api_key_id=principal.key_id, workspace=record.workspace,
                    owner=record.owner, scope=record.scope, file_id=record.id,
                    source_id=record.id, format=plan.target,
                    options=json.dumps(plan.options, sort_keys=True), status="pending",
                    webhook_url=webhook_url, attempts=0, created_at=utcnow(), seq=next_seq()))
                if destination is not None:
                    self.exports.attach_to_run(conn, principal, response["export_id"], run_id,
                                               plan.target, record.scope, destination)
                if idempotency_key:
                    self.idempotency.remember(conn, principal.key_id, idempotency_key, digest,
                                              202, response, subject_id=run_id)
        if replay is not None:
            # A concurrent request with this key committed first: answer as it did.
            return Accepted(replay.status_code, replay.body, _REPLAYED, True)
        metrics.RUNS.labels(status="pending").inc()
        self.idempotency.purge_expired()
        for callback in self.on_created:
            callback()
        return Accepted(202, response, {**headers(budget), "Location": response["status_url"]})

    def _charge(self, conn: Connection, key_id: str) -> Budget:
        """Count this run against the key's budget; failed runs give theirs back."""
        now = utcnow()
        count, oldest = conn.execute(
            select(func.count(), func.min(runs.c.created_at))
            .where(runs.c.api_key_id == key_id, runs.c.status != "failed",
                   runs.c.created_at > now - timedelta(seconds=self.window))).one()
        oldest = as_utc(oldest)
        reset = self.window if oldest is None else max(
            1, math.ceil((oldest + timedelta(seconds=self.window) - now).total_seconds()))
        if count >= self.limit:
            error = RateLimitExceeded(
                f"This key created {count} runs in the last {self.window}s, its limit "
                f"(CONVERTER_RUNS_PER_HOUR={self.limit}); retry in {reset}s. Failed runs do "
                "not count", retry_after=reset)
            error.headers.update(headers(Budget(self.limit, 0, reset)))
            raise error
        return Budget(self.limit, self.limit - count - 1, reset)

    # ------------------------------------------------------------------ read
    def _select(self) -> Select[Any]:
        return (select(runs, *file_columns(),
                       *[artifacts.c[n].label(f"a_{n}") for n in _ARTIFACT_COLUMNS])
                .select_from(runs.join(files, files.c.id == runs.c.file_id)
                             .outerjoin(artifacts, artifacts.c.id == runs.c.artifact_id)))

    def _row(self, principal: Principal, run_id: str) -> Row[Any]:
        with self.db.connect() as conn:
            row = conn.execute(self._select().where(runs.c.id == run_id,
                                                    principal.visible(runs))).first()
        if row is None:
            raise NotFound(f"No run {run_id!r} is visible to this key", field="run_id")
        return row

    def get(self, principal: Principal, run_id: str, base_url: str) -> dict[str, Any]:
        """One visible run as JSON (with a fresh signed download_url once completed)."""
        row = self._row(principal, run_id)
        with self.db.connect() as conn:
            deliveries = webhooks.view(conn, [row.id])
        return self.render(row, deliveries, base_url)

    def list(self, principal: Principal, status: str | None, file_id: str | None, limit: int,
             cursor: str | None, base_url: str) -> tuple[list[dict[str, Any]], str | None]:
        """Visible runs, newest first, optionally by status and file; returns (page, cursor)."""
        query = self._select().where(principal.visible(runs))
        if status:
            if status not in STATUSES:
                raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}",
                                     field="status", valid_values=list(STATUSES))
            query = query.where(runs.c.status == status)
        if file_id:
            query = query.where(runs.c.file_id == file_id)
        if cursor:
            query = query.where(runs.c.seq < decode_cursor(cursor))
        query = query.order_by(runs.c.seq.desc()).limit(limit + 1)
        with self.db.connect() as conn:
            rows = conn.execute(query).all()
            page = rows[:limit]
            deliveries = webhooks.view(conn, [r.id for r in page if r.webhook_url])
        next_cursor = encode_cursor(page[-1].seq) if len(rows) > limit else None
        return [self.render(r, deliveries, base_url) for r in page], next_cursor

    def render(self, row: Any, deliveries: dict[str, dict[str, Any]],
               base_url: str) -> dict[str, Any]:
        """The public JSON of a run row selected by _select()."""
        out: dict[str, Any] = {
            "id": row.id, "status": row.status, "file_id": row.file_id, "format": row.format,
            "options": json.loads(row.options), "created_at": iso(row.created_at),
            "started_at": iso(row.started_at), "completed_at": iso(row.completed_at),
            "error": row.error, "download_url": None, "expires_at": None, "size_bytes": None,
            "attempts": row.attempts, "webhook": None,
        }
        artifact = _artifact(row)
        if row.status == "completed" and artifact is not None:
            name = self.conversions.download_name(file_record(row), artifact.format,
                                                  artifact.media_type)
            link = self.conversions.link(artifact, name, base_url)
            out.update(download_url=link.url, expires_at=iso(link.expires_at),
                       size_bytes=artifact.size_bytes)
        if row.webhook_url:
            found = deliveries.get(row.id, {"deliveries": [], "next_attempt_at": None})
            out["webhook"] = {
                "url": row.webhook_url,
                "deliveries": [{**d, "at": iso(d["at"])} for d in found["deliveries"]],
                "next_attempt_at": iso(found["next_attempt_at"]),
            }
        return out

    def notice(self, run_id: str) -> Notice | None:
        """What the webhook dispatcher sends for a finished run (None if it is gone)."""
        with self.db.connect() as conn:
            row = conn.execute(self._select().where(runs.c.id == run_id)).first()
            if row is None or not row.webhook_url or row.status not in ("completed", "failed"):
                return None
            deliveries = webhooks.view(conn, [row.id])
        body = self.render(row, deliveries, self.webhook_base_url)
        return Notice(workspace=row.workspace, url=row.webhook_url,
                      event=f"run.{row.status}", body=body)

    def webhook_secret(self, workspace: str) -> str:
        """The workspace's webhook signing secret (created on first use)."""
        return self.secrets.get(workspace)

    # ------------------------------------------------------------------ export
    def export(self, principal: Principal, run_id: str, body: Any,
               idempotency_key: str | None, base_url: str) -> Accepted:
        """Convert a completed run's output to another format (cached like any conversion)."""
        request = _object(body, _EXPORT_FIELDS, "format")
        if self._destination(principal, request) is not None:
            # Delivered to a connector: an export processed in the background (202).
            return self.exports.create(  # type: ignore[no-any-return]
                principal, {**request, "run_id": run_id}, idempotency_key, base_url,
                path=f"/v1/runs/{run_id}/export", use_defaults=False)
        digest = request_hash("POST", f"/v1/runs/{run_id}/export", request)
        if idempotency_key:
            replay = self.idempotency.peek(principal.key_id, idempotency_key, digest)
            if replay is not None:
                return Accepted(replay.status_code, replay.body, _REPLAYED, True)
        row = self._row(principal, run_id)
        if row.status != "completed":
            raise Conflict(f"Run {run_id} is {row.status}; its output can be exported once the "
                           "run has completed", status=row.status)
        artifact = self.conversions.artifact(row.artifact_id)
        if artifact.format not in self.matrix.sources:
            raise InvalidRequest(
                f"{artifact.format} is not a convertible source, so this run's output cannot be "
                f"re-exported; runs whose output is one of {', '.join(self.matrix.sources)} can",
                field="format", valid_targets=[])
        plan = self.matrix.plan(artifact.format, request.get("format") or "",
                                request.get("options"))
        refuse_password(plan)
        record = file_record(row)
        deadline = time.monotonic() + self.conversions.timeout
        # An export answers an HTTP request: synchronous work, ahead of queued runs.
        result = self.conversions.produce(record, artifact.id, artifact.storage_key, plan,
                                          deadline, tenant_of(principal))
        name = self.conversions.download_name(record, plan.target,
                                              result.artifact.media_type)
        link = self.conversions.link(result.artifact, name, base_url)
        response = {"run_id": run_id, "file_id": row.file_id, "format": plan.target,
                    "options": plan.options, "download_url": link.url,
                    "expires_at": iso(link.expires_at),
                    "size_bytes": result.artifact.size_bytes, "cached": result.cached}
        if not idempotency_key:
            return Accepted(200, response)
        with self.db.begin() as conn:
            lock_api_key(conn, principal.key_id)
            replay = self.idempotency.lookup(conn, principal.key_id, idempotency_key, digest)
            if replay is None:
                self.idempotency.remember(conn, principal.key_id, idempotency_key, digest, 200,
                                          response, subject_id=run_id)
        if replay is not None:
            return Accepted(replay.status_code, replay.body, _REPLAYED, True)
        return Accepted(200, response)


_REPLAYED = {REPLAYED_HEADER: "true"}


def _artifact(row: Any) -> Artifact | None:
    if row.artifact_id is None or row.a_storage_key is None:
        return None
    return Artifact(id=row.artifact_id, file_id=row.file_id, source_id=row.a_source_id,
                    format=row.a_format, media_type=row.a_media_type,
                    storage_key=row.a_storage_key, size_bytes=row.a_size_bytes,
                    produced_by=row.a_produced_by or "libreoffice")
