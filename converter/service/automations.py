"""Automations (watched folders): create, list, fetch, change and delete their definitions.

An automation belongs to a workspace, as connectors do: every key of the workspace
sees and manages it, and both its connectors must be of that workspace. The poller
(automation_poller.py) does the watching; this module only validates and stores.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, delete, insert, select, update

from converter.connectors.base import Provider
from converter.connectors.paths import normalize_subpath
from converter.db.engine import as_utc, next_seq, utcnow
from converter.db.schema import automations
from converter.errors import InvalidRequest, NotFound
from converter.matrix import Matrix
from converter.service.idempotency import IdempotencyStore, request_hash
from converter.service.pagination import decode_cursor, encode_cursor
from converter.service.principal import Principal

FIELDS = ("source_connector_id", "source_path", "formats", "options",
          "destination_connector_id", "destination_subpath", "enabled", "after")
AFTER_CHOICES = ("keep", "delete", "move:<path>")
MAX_FORMATS = 8


class Connectors(Protocol):
    """What automations need from the connector layer."""

    def provider(self, workspace: str, connector_id: str) -> Provider:
        """The provider behind a connector of workspace; NotFound otherwise."""
        ...

    def exists(self, workspace: str, connector_id: str) -> bool:
        """Whether workspace has this connector."""
        ...

    def hold(self, conn: Connection, workspace: str, connector_ids: Collection[str]) -> bool:
        """Whether workspace has all these connectors, kept from deletion until conn commits."""
        ...


@dataclass(frozen=True)
class Automation:
    """One stored automation."""

    id: str
    workspace: str
    api_key_id: str
    source_connector_id: str
    source_path: str
    formats: tuple[str, ...]
    options: dict[str, Any]
    destination_connector_id: str
    destination_subpath: str
    enabled: bool
    after: str
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        """The JSON shape clients see."""
        return {"id": self.id, "source_connector_id": self.source_connector_id,
                "source_path": self.source_path, "formats": list(self.formats),
                "options": self.options,
                "destination_connector_id": self.destination_connector_id,
                "destination_subpath": self.destination_subpath, "enabled": self.enabled,
                "after": self.after, "created_at": iso(self.created_at),
                "updated_at": iso(self.updated_at)}


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with a Z, as every timestamp in the API."""
    value = as_utc(value)
    return value.isoformat().replace("+00:00", "Z") if value else None


def automation_of(row: Any) -> Automation:
    """The Automation of an automations row."""
    return Automation(
        id=row.id, workspace=row.workspace, api_key_id=row.api_key_id,
        source_connector_id=row.source_connector_id, source_path=row.source_path,
        formats=tuple(json.loads(row.formats)), options=json.loads(row.options),
        destination_connector_id=row.destination_connector_id,
        destination_subpath=row.destination_subpath, enabled=bool(row.enabled),
        after=row.after, created_at=as_utc(row.created_at) or utcnow(),
        updated_at=as_utc(row.updated_at) or utcnow())


def check_after(raw: Any) -> str:
    """keep (the default), delete, or move:<path> with a valid subpath."""
    if raw is None:
        return "keep"
    if isinstance(raw, str) and raw in ("keep", "delete"):
        return raw
    if isinstance(raw, str) and raw.startswith("move:"):
        target = normalize_subpath(raw[len("move:"):], "after")
        if not target:
            raise InvalidRequest("after: move:<path> needs a path to move sources under, "
                                 "such as move:done", field="after",
                                 valid_values=list(AFTER_CHOICES))
        return f"move:{target}"
    raise InvalidRequest(f"after must be one of {', '.join(AFTER_CHOICES)}; got {raw!r}",
                         field="after", valid_values=list(AFTER_CHOICES))


class AutomationService:
    """Validates and stores automations, scoped to the caller's workspace."""

    def __init__(self, db: Engine, matrix: Matrix, connectors: Connectors) -> None:
        self.db = db
        self.matrix = matrix
        self.connectors = connectors
        self.idempotency = IdempotencyStore(db)
        self.targets = sorted({t for s in matrix.sources.values() for t in s.targets})

    # ------------------------------------------------------------------ validation
    def _formats(self, raw: Any) -> list[str]:
        if not isinstance(raw, list) or not raw or not all(isinstance(f, str) for f in raw):
            raise InvalidRequest(
                "formats must be a non-empty list of target formats, such as [\"pdf\"]; "
                f"valid targets: {', '.join(self.targets)}", field="formats",
                valid_values=self.targets)
        out: list[str] = []
        for name in raw:
            target = name.strip().lower().lstrip(".")
            if target not in self.targets:
                raise InvalidRequest(f"formats: {name!r} is not a target of the conversion "
                                     f"matrix; valid targets: {', '.join(self.targets)}",
                                     field="formats", valid_values=self.targets)
            if target not in out:
                out.append(target)
        if len(out) > MAX_FORMATS:
            raise InvalidRequest(f"formats may name at most {MAX_FORMATS} targets",
                                 field="formats")
        return out

    def _options(self, raw: Any, formats: list[str]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            raise InvalidRequest("options must be a JSON object", field="options")
        if "password" in raw:
            raise InvalidRequest("options.password is not accepted: automations are stored, "
                                 "and a password never is", field="options.password")
        for target in formats:
            # Options are checked against one source of each family that makes target:
            # the source's format is only known once a file arrives.
            families: dict[str, str] = {}
            for name, spec in self.matrix.sources.items():
                if target in spec.targets:
                    families.setdefault(spec.family, name)
            errors: list[InvalidRequest] = []
            for source in families.values():
                try:
                    self.matrix.plan(source, target, raw)
                except InvalidRequest as exc:
                    errors.append(exc)
            if len(errors) == len(families):
                first = errors[0]
                raise InvalidRequest(f"options: {first.message}", **{
                    **first.details, "field": first.details.get("field", "options")})
        return dict(raw)

    def _connector(self, workspace: str, raw: Any, field: str) -> str:
        if not isinstance(raw, str) or not raw:
            raise InvalidRequest(f"{field} is required: the id of a connector of this "
                                 "workspace", field=field)
        if not self.connectors.exists(workspace, raw):
            raise NotFound(f"{field}: no connector {raw!r} in this workspace", field=field)
        return raw

    def _hold_connectors(self, conn: Connection, workspace: str, values: dict[str, Any]
                         ) -> None:
        # Checked again inside the write: a connector deleted since _validated looked
        # would otherwise leave this automation pointing at nothing.
        for field in ("source_connector_id", "destination_connector_id"):
            if not self.connectors.hold(conn, workspace, [values[field]]):
                raise NotFound(f"{field}: no connector {values[field]!r} in this workspace",
                               field=field)

    def _validated(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        formats = self._formats(body.get("formats"))
        enabled = body.get("enabled", True)
        if not isinstance(enabled, bool):
            raise InvalidRequest("enabled must be true or false", field="enabled")
        values = {
            "source_connector_id": self._connector(principal.workspace,
                                                   body.get("source_connector_id"),
                                                   "source_connector_id"),
            "source_path": normalize_subpath(body.get("source_path"), "source_path"),
            "formats": json.dumps(formats),
            "options": json.dumps(self._options(body.get("options"), formats),
                                  sort_keys=True),
            "destination_connector_id": self._connector(
                principal.workspace, body.get("destination_connector_id"),
                "destination_connector_id"),
            "destination_subpath": normalize_subpath(body.get("destination_subpath"),
                                                 "destination_subpath"),
            "enabled": enabled,
            "after": check_after(body.get("after")),
        }
        _refuse_loops(values)
        return values

    # ------------------------------------------------------------------ operations
    def create(self, principal: Principal, body: Any, idempotency_key: str | None = None,
               ) -> tuple[dict[str, Any], bool]:
        """Validate and store a new automation; returns it public, and whether replayed."""
        values = self._validated(principal, _object(body))
        now = utcnow()
        automation_id = "aut_" + secrets.token_hex(12)

        def write(conn: Connection) -> tuple[dict[str, Any], str]:
            conn.execute(insert(automations).values(
                id=automation_id, workspace=principal.workspace, created_by=principal.user_id,
                api_key_id=principal.key_id, created_at=now, updated_at=now, seq=next_seq(),
                **values))
            self._hold_connectors(conn, principal.workspace, values)
            row = conn.execute(select(automations).where(automations.c.id == automation_id))
            return automation_of(row.one()).public(), automation_id

        return self.idempotency.create_once(
            principal.key_id, idempotency_key, request_hash("POST", "/v1/automations", body),
            201, write)

    def get(self, principal: Principal, automation_id: str) -> Automation:
        """An automation of the caller's workspace, or NotFound."""
        with self.db.connect() as conn:
            row = conn.execute(select(automations).where(
                automations.c.id == automation_id,
                automations.c.workspace == principal.workspace)).first()
        if row is None:
            raise NotFound(f"No automation {automation_id!r} in this workspace",
                           field="automation_id")
        return automation_of(row)

    def list(self, principal: Principal, limit: int, cursor: str | None,
             ) -> tuple[list[Automation], str | None]:
        """The workspace's automations, newest first; returns (page, next_cursor)."""
        query = select(automations).where(automations.c.workspace == principal.workspace)
        if cursor:
            query = query.where(automations.c.seq < decode_cursor(cursor))
        with self.db.connect() as conn:
            rows = conn.execute(query.order_by(automations.c.seq.desc())
                                .limit(limit + 1)).all()
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].seq) if len(rows) > limit else None
        return [automation_of(r) for r in page], next_cursor

    def update(self, principal: Principal, automation_id: str, body: Any) -> Automation:
        """Change some fields; the others keep their values (validated as on create)."""
        changes = _object(body)
        current = self.get(principal, automation_id).public()
        values = self._validated(principal, {**{k: current[k] for k in FIELDS}, **changes})
        with self.db.begin() as conn:
            conn.execute(update(automations).where(
                automations.c.id == automation_id,
                automations.c.workspace == principal.workspace).values(
                updated_at=utcnow(), **values))
            self._hold_connectors(conn, principal.workspace, values)
        return self.get(principal, automation_id)

    def delete(self, principal: Principal, automation_id: str) -> None:
        """Remove an automation with its claims and history; files already delivered stay."""
        self.get(principal, automation_id)
        with self.db.begin() as conn:
            conn.execute(delete(automations).where(
                automations.c.id == automation_id,
                automations.c.workspace == principal.workspace))


def _inside(path: str, folder: str) -> bool:
    return not folder or path == folder or path.startswith(folder + "/")


def _refuse_loops(values: dict[str, Any]) -> None:
    """What lands in the watched folder is converted: outputs and moved sources must not."""
    source = values["source_path"]
    moved = values["after"][len("move:"):] if values["after"].startswith("move:") else None
    if moved is not None and _inside(moved, source):
        raise InvalidRequest(f"after: move:{moved} is inside source_path {source!r}, so moved "
                             "files would be seen again; move them outside it", field="after")
    same = values["source_connector_id"] == values["destination_connector_id"]
    if same and _inside(values["destination_subpath"], source):
        raise InvalidRequest(
            f"destination_subpath {values['destination_subpath']!r} is inside source_path "
            f"{source!r} on the same connector, so outputs would be seen as new files; "
            "deliver them outside it", field="destination_subpath")


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidRequest("request body must be a JSON object with source_connector_id, "
                             "formats and destination_connector_id")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidRequest(f"Unknown field {unknown[0]!r}; accepted fields: "
                             f"{', '.join(FIELDS)}", field=unknown[0])
    return body
