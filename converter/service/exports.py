"""Exports: a run's output or a file, converted and delivered to a connector (and downloadable).

An export is a row in ``exports``, stored (with its Idempotency-Key's answer)
before ``202`` is returned; the export workers (export_worker.py) convert and
deliver it. A run's output exports as it is when the format is the run's own,
otherwise it is converted again through the cache like any re-export. An export
of a run that has not finished waits for it, which is how a run created with a
destination delivers its output once complete.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, insert, select

from converter.connectors.delivery import validate_on_conflict
from converter.connectors.paths import normalize_subpath
from converter.db.engine import next_seq, utcnow
from converter.db.schema import artifacts, exports, files, runs
from converter.errors import Conflict, InvalidRequest, NotFound
from converter.matrix import Matrix
from converter.service.artifact_index import file_artifact
from converter.service.connectors import ConnectorService
from converter.service.conversion import ConversionService
from converter.service.export_defaults import DefaultsStore, Destination
from converter.service.files import FileService
from converter.service.idempotency import (
    REPLAYED_HEADER,
    IdempotencyStore,
    lock_api_key,
    request_hash,
)
from converter.service.pagination import decode_cursor, encode_cursor
from converter.service.principal import Principal
from converter.service.runs import Accepted, iso, refuse_password

STATUSES = ("pending", "processing", "completed", "failed")
BUNDLES = ("none", "zip")
DESTINATION_FIELDS = ("destination_connector_id", "destination_subpath", "on_conflict")
_FIELDS = ("run_id", "file_id", "run_ids", "bundle", "format", "options",
           *DESTINATION_FIELDS)
MAX_RUN_IDS = 100
_REPLAYED = {REPLAYED_HEADER: "true"}


@dataclass(frozen=True)
class Source:
    """One thing an export converts: a run's output or a stored file."""

    kind: str  # "run_id" or "file_id"
    id: str
    format: str  # what it is (the run's output format, the file's format)
    workspace: str
    scope: str


def _source_ids(body: dict[str, Any]) -> list[tuple[str, str]]:
    given = [name for name in ("run_id", "file_id", "run_ids") if body.get(name) is not None]
    if len(given) != 1:
        raise InvalidRequest("give exactly one source: run_id, file_id or run_ids",
                             field="run_id", valid_values=["run_id", "file_id", "run_ids"])
    name = given[0]
    if name == "run_ids":
        ids = body["run_ids"]
        if (not isinstance(ids, list) or not ids or len(ids) > MAX_RUN_IDS
                or not all(isinstance(i, str) and i for i in ids)):
            raise InvalidRequest(f"run_ids must be a list of 1 to {MAX_RUN_IDS} run ids",
                                 field="run_ids")
        if len(set(ids)) != len(ids):
            raise InvalidRequest("run_ids lists a run twice", field="run_ids")
        return [("run_id", i) for i in ids]
    value = body[name]
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"{name} must be a non-empty string", field=name)
    return [(name, value)]


def check_body(body: Any, allowed: tuple[str, ...] = _FIELDS) -> dict[str, Any]:
    """The body as a dict with only allowed fields; InvalidRequest naming the first other."""
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object with a source (run_id, "
                             "file_id or run_ids) and format")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidRequest(f"Unknown field {unknown[0]!r}; accepted fields: "
                             f"{', '.join(allowed)}", field=unknown[0])
    nulls = sorted(name for name, value in body.items() if value is None)
    if nulls:
        raise InvalidRequest(f"{nulls[0]} must not be null; leave it out instead",
                             field=nulls[0])
    if body.get("options") is not None and not isinstance(body["options"], dict):
        raise InvalidRequest("options must be a JSON object", field="options")
    if body.get("format") is not None and not isinstance(body["format"], str):
        raise InvalidRequest("format must be a string such as \"pdf\"", field="format")
    return body


class ExportService:
    """Creates, renders and lists exports; the export workers process them."""

    def __init__(self, db: Engine, files_service: FileService, conversions: ConversionService,
                 matrix: Matrix, connectors: ConnectorService, idempotency: IdempotencyStore,
                 defaults: DefaultsStore) -> None:
        self.db = db
        self.files = files_service
        self.conversions = conversions
        self.matrix = matrix
        self.connectors = connectors
        self.idempotency = idempotency
        self.defaults = defaults
        self.on_created: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ create
    def destination(self, principal: Principal, body: dict[str, Any],
                    use_defaults: bool) -> Destination | None:
        """The validated destination of a request, else the workspace default (if asked)."""
        connector_id = body.get("destination_connector_id")
        if connector_id is None:
            if body.get("destination_subpath") is not None:
                if not use_defaults or self.defaults.get(principal.workspace) is None:
                    raise InvalidRequest("destination_subpath needs a "
                                         "destination_connector_id (or a workspace default "
                                         "set with PUT /v1/export-defaults)",
                                         field="destination_connector_id")
            found = self.defaults.get(principal.workspace) if use_defaults else None
            if found is None or found.connector_id is None:
                validate_on_conflict(body.get("on_conflict"))
                return None
            subpath = body.get("destination_subpath")
            return Destination(found.connector_id,
                               found.subpath if subpath is None else
                               normalize_subpath(subpath),
                               validate_on_conflict(body.get("on_conflict") or
                                                    found.on_conflict))
        if not isinstance(connector_id, str) or not self.connectors.exists(
                principal.workspace, connector_id):
            raise NotFound(f"No connector {connector_id!r} in this workspace",
                           field="destination_connector_id")
        return Destination(connector_id, normalize_subpath(body.get("destination_subpath")),
                           validate_on_conflict(body.get("on_conflict")))

    def _resolve(self, principal: Principal, kind: str, ident: str) -> Source:
        if kind == "file_id":
            record = self.files.get(principal, ident)
            return Source(kind, record.id, record.format, record.workspace, record.scope)
        with self.db.connect() as conn:
            row = conn.execute(select(runs.c.id, runs.c.status, runs.c.format,
                                      runs.c.workspace, runs.c.scope)
                               .where(runs.c.id == ident, principal.visible(runs))).first()
        if row is None:
            raise NotFound(f"No run {ident!r} is visible to this key", field="run_id")
        if row.status == "failed":
            raise Conflict(f"Run {ident} failed, so it has no output to export",
                           status=row.status)
        return Source(kind, row.id, row.format, row.workspace, row.scope)

    def _target(self, sources: list[Source], body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The export's format and normalised options, checked against every source.

        Runs exported without a format deliver their own outputs as they are ("").
        """
        target = body.get("format") or ""
        options = body.get("options") or {}
        if not target:
            if not all(s.kind == "run_id" for s in sources):
                raise InvalidRequest("format is required to export a file", field="format")
            if options:
                raise InvalidRequest("options need a format to convert to", field="options")
            return "", {}
        normalised: dict[str, Any] = {}
        for source in sources:
            if source.kind == "run_id" and target == source.format:
                if options:
                    raise InvalidRequest(f"options apply to a conversion; run {source.id}'s "
                                         f"output is already {target}", field="options")
                continue
            plan = self.matrix.plan(source.format, target, options)
            refuse_password(plan)
            normalised = plan.options
        return target, normalised

    def create(self, principal: Principal, body: Any, idempotency_key: str | None,
               base_url: str, path: str = "/v1/exports", use_defaults: bool = True,
               ) -> Accepted:
        """Validate and store a pending export (or replay the Idempotency-Key's answer)."""
        request = check_body(body)
        digest = request_hash("POST", path, request)
        if idempotency_key:
            replay = self.idempotency.peek(principal.key_id, idempotency_key, digest)
            if replay is not None:
                return Accepted(replay.status_code, replay.body, _REPLAYED, True)
        ids = _source_ids(request)
        bundle = request.get("bundle") or "none"
        if bundle not in BUNDLES:
            raise InvalidRequest(f"bundle must be one of {', '.join(BUNDLES)}", field="bundle",
                                 valid_values=list(BUNDLES))
        if bundle == "zip" and "run_ids" not in request:
            raise InvalidRequest("bundle=zip bundles several runs: give run_ids",
                                 field="bundle")
        sources = [self._resolve(principal, kind, ident) for kind, ident in ids]
        target, options = self._target(sources, request)
        destination = self.destination(principal, request, use_defaults)
        export_id = "exp_" + secrets.token_hex(12)
        with self.db.begin() as conn:
            lock_api_key(conn, principal.key_id)
            replay = None
            if idempotency_key:
                replay = self.idempotency.lookup(conn, principal.key_id, idempotency_key,
                                                 digest)
            if replay is None:
                self.insert(conn, principal, export_id, sources, bundle, target, options,
                            destination)
                response = self.render(self._row(conn, principal, export_id), base_url)
                if idempotency_key:
                    self.idempotency.remember(conn, principal.key_id, idempotency_key, digest,
                                              202, response, subject_id=export_id)
        if replay is not None:
            return Accepted(replay.status_code, replay.body, _REPLAYED, True)
        self.wake()
        return Accepted(202, response, {"Location": response["status_url"]})

    def insert(self, conn: Connection, principal: Principal, export_id: str,
               sources: list[Source], bundle: str, target: str, options: dict[str, Any],
               destination: Destination | None) -> None:
        """Write a pending export row in the caller's transaction."""
        shared = all(s.scope == "workspace" for s in sources)
        conn.execute(insert(exports).values(
            id=export_id, api_key_id=principal.key_id, workspace=principal.workspace,
            owner=principal.user_id, scope="workspace" if shared else "personal",
            sources=json.dumps([{s.kind: s.id} for s in sources]), bundle=bundle,
            format=target, options=json.dumps(options, sort_keys=True),
            connector_id=destination.connector_id if destination else None,
            subpath=destination.subpath if destination else "",
            on_conflict=destination.on_conflict if destination else "rename",
            status="pending", attempts=0, created_at=utcnow(), seq=next_seq()))

    def attach_to_run(self, conn: Connection, principal: Principal, export_id: str,
                      run_id: str, target: str, scope: str, destination: Destination) -> None:
        """The export that delivers a new run's output once it completes (same transaction)."""
        source = Source("run_id", run_id, target, principal.workspace, scope)
        self.insert(conn, principal, export_id, [source], "none", target, {}, destination)

    def wake(self) -> None:
        """Tell this process's export workers there is work."""
        for callback in self.on_created:
            callback()

    # ------------------------------------------------------------------ read
    def _row(self, conn: Connection, principal: Principal, export_id: str) -> Row[Any]:
        row = conn.execute(select(exports).where(exports.c.id == export_id,
                                                 principal.visible(exports))).first()
        if row is None:
            raise NotFound(f"No export {export_id!r} is visible to this key",
                           field="export_id")
        return row

    def get(self, principal: Principal, export_id: str, base_url: str) -> dict[str, Any]:
        """One visible export as JSON (fresh signed download URLs once completed)."""
        with self.db.connect() as conn:
            return self.render(self._row(conn, principal, export_id), base_url)

    def list(self, principal: Principal, status: str | None, limit: int, cursor: str | None,
             base_url: str) -> tuple[list[dict[str, Any]], str | None]:
        """Visible exports, newest first, optionally by status."""
        query = select(exports).where(principal.visible(exports))
        if status:
            if status not in STATUSES:
                raise InvalidRequest(f"status must be one of {', '.join(STATUSES)}",
                                     field="status", valid_values=list(STATUSES))
            query = query.where(exports.c.status == status)
        if cursor:
            query = query.where(exports.c.seq < decode_cursor(cursor))
        with self.db.connect() as conn:
            rows = conn.execute(query.order_by(exports.c.seq.desc()).limit(limit + 1)).all()
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].seq) if len(rows) > limit else None
        return [self.render(r, base_url) for r in page], next_cursor

    def render(self, row: Any, base_url: str) -> dict[str, Any]:
        """The public JSON of an export row."""
        sources = json.loads(row.sources)
        multiple = len(sources) > 1 or row.bundle == "zip"
        result = json.loads(row.result) if row.result else {}
        items = [self._item(item, base_url) for item in result.get("items", [])]
        main = self._item(result["bundle"], base_url) if result.get("bundle") else (
            items[0] if len(items) == 1 else None)
        out: dict[str, Any] = {
            "id": row.id, "status": row.status,
            "status_url": f"{base_url.rstrip('/')}/v1/exports/{row.id}",
            "run_id": None if multiple else sources[0].get("run_id"),
            "file_id": None if multiple else sources[0].get("file_id"),
            "run_ids": [s["run_id"] for s in sources] if multiple else None,
            "bundle": row.bundle, "format": row.format or None, "options": json.loads(row.options),
            "destination_connector_id": row.connector_id,
            "destination_subpath": row.subpath if row.connector_id else None,
            "on_conflict": row.on_conflict, "error": row.error, "attempts": row.attempts,
            "created_at": iso(row.created_at), "started_at": iso(row.started_at),
            "completed_at": iso(row.completed_at),
            "download_url": None, "expires_at": None, "size_bytes": None, "sha256": None,
            "delivery": None, "items": items if multiple else [],
        }
        if main is not None:
            out.update({k: main[k] for k in ("download_url", "expires_at", "size_bytes",
                                             "sha256", "delivery")})
        return out

    def _item(self, item: dict[str, Any], base_url: str) -> dict[str, Any]:
        link = self._link(item.get("artifact_id"), item.get("filename", ""), base_url)
        return {"run_id": item.get("run_id"), "file_id": item.get("file_id"),
                "filename": item.get("filename"),
                "download_url": link[0] if link else None,
                "expires_at": link[1] if link else None,
                "size_bytes": item.get("size_bytes"), "sha256": item.get("sha256"),
                "delivery": item.get("delivery")}

    def _link(self, artifact_id: str | None, filename: str,
              base_url: str) -> tuple[str, str | None] | None:
        if not artifact_id:
            return None
        with self.db.connect() as conn:
            row = conn.execute(select(artifacts).join(files, files.c.id == artifacts.c.file_id)
                               .where(artifacts.c.id == artifact_id)).first()
        if row is None:
            return None  # its file was deleted since: the delivered copy is what remains
        link = self.conversions.link(file_artifact(row), filename, base_url)
        return link.url, iso(link.expires_at)
