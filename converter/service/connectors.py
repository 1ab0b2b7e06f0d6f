"""Connectors of a workspace: create, list, fetch, update, delete, test and browse.

A connector belongs to its workspace: every key of the workspace may use and
manage it, no key of another workspace can see it (404). Credentials are sealed
before they reach the database and never leave this module in clear except to
build a provider; what is rendered says only whether each is set, and its
last 4 characters.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, exists, insert, or_, select, update

from converter.connectors import registry
from converter.connectors.base import Entry, Provider
from converter.connectors.crypto import CredentialBox
from converter.connectors.paths import normalize_subpath
from converter.db.engine import next_seq, utcnow
from converter.db.schema import automations, connectors, export_defaults
from converter.errors import (
    Conflict,
    ConnectorFailed,
    ConnectorUnavailable,
    InvalidRequest,
    NotFound,
)
from converter.service.idempotency import IdempotencyStore, request_hash
from converter.service.pagination import decode_cursor, encode_cursor
from converter.service.principal import Principal
from converter.service.runs import iso

_TOP_LEVEL = ("name", "provider", "config", "credentials")
MAX_NAME = 200


@dataclass(frozen=True)
class Connector:
    """A stored connector, credentials still sealed."""

    id: str
    workspace: str
    name: str
    provider: str
    config: dict[str, Any]
    sealed: str | None
    hints: dict[str, str]


def _hint(value: str) -> str:
    # Short secrets would be given away whole by their last 4 characters.
    return value[-4:] if len(value) >= 12 else ""


def _split(body: Any, provider: str, partial: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config, credentials) from a body: nested objects, or their fields at the top level."""
    shape = registry.spec(provider)
    allowed = (*_TOP_LEVEL, *shape.config, *shape.credentials)
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidRequest(f"Unknown field {unknown[0]!r}; accepted fields: "
                             f"{', '.join(allowed)}", field=unknown[0],
                             valid_values=list(allowed))
    parts: list[dict[str, Any]] = []
    for name in ("config", "credentials"):
        nested = body.get(name) or {}
        if not isinstance(nested, dict):
            raise InvalidRequest(f"{name} must be a JSON object", field=name)
        parts.append(dict(nested))
    config, credentials = parts
    for field in shape.config:
        if field in body:
            config[field] = body[field]
    for field in shape.credentials:
        if field in body:
            credentials[field] = body[field]
    if not partial:
        config = {k: v for k, v in config.items() if v is not None}
        credentials = {k: v for k, v in credentials.items() if v is not None}
    return config, credentials


def _name(raw: Any, fallback: str) -> str:
    if raw is None:
        return fallback
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_NAME:
        raise InvalidRequest(f"name must be a non-empty string of at most {MAX_NAME} "
                             "characters", field="name")
    return raw.strip()


class ConnectorService:
    """Stores connectors and opens their providers."""

    def __init__(self, db: Engine, box: CredentialBox, settings: registry.Settings) -> None:
        self.db = db
        self.idempotency = IdempotencyStore(db)
        self.box = box
        self.settings = settings

    # ------------------------------------------------------------------ writes
    def create(self, principal: Principal, body: Any, idempotency_key: str | None = None,
               ) -> tuple[dict[str, Any], bool]:
        """Validate and store a new connector; returns it rendered, and whether replayed."""
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object with provider and its "
                                 "fields")
        provider = body.get("provider")
        registry.spec(provider)
        config, credentials = _split(body, str(provider), partial=False)
        config, creds = registry.validate(str(provider), config, credentials, self.settings)
        fallback = f"{provider}:{config.get('bucket') or config.get('path')}"[:MAX_NAME]
        now = utcnow()
        row = {"id": "conn_" + secrets.token_hex(12), "workspace": principal.workspace,
               "name": _name(body.get("name"), fallback), "provider": str(provider),
               "config": json.dumps(config, sort_keys=True),
               "credentials": self.box.seal(creds) if creds else None,
               "credential_hints": json.dumps({k: _hint(v) for k, v in creds.items()}),
               "created_by": principal.user_id, "created_at": now, "updated_at": now,
               "seq": next_seq()}

        def write(conn: Connection) -> tuple[dict[str, Any], str]:
            conn.execute(insert(connectors).values(**row))
            stored = conn.execute(select(connectors).where(connectors.c.id == row["id"])).one()
            return self.render(stored), str(row["id"])

        return self.idempotency.create_once(
            principal.key_id, idempotency_key, request_hash("POST", "/v1/connectors", body),
            201, write)

    def update(self, principal: Principal, connector_id: str, body: Any) -> dict[str, Any]:
        """Change the name, config fields or credentials (null removes an optional one)."""
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        row = self._row(principal.workspace, connector_id)
        if "provider" in body and body["provider"] != row.provider:
            raise InvalidRequest(f"provider cannot change (this connector is {row.provider}); "
                                 "create a new connector instead", field="provider",
                                 valid_values=[row.provider])
        stored = self._load(row)
        changes, new_credentials = _split(body, row.provider, partial=True)
        config = {**stored.config, **changes}
        credentials = {**self.box.open(stored.sealed), **new_credentials} if (
            new_credentials or stored.sealed) else {}
        config = {k: v for k, v in config.items() if v is not None}
        credentials = {k: v for k, v in credentials.items() if v is not None}
        config, creds = registry.validate(row.provider, config, credentials, self.settings)
        with self.db.begin() as conn:
            conn.execute(update(connectors).where(connectors.c.id == row.id).values(
                name=_name(body.get("name"), row.name),
                config=json.dumps(config, sort_keys=True),
                credentials=self.box.seal(creds) if creds else None,
                credential_hints=json.dumps({k: _hint(v) for k, v in creds.items()}),
                updated_at=utcnow()))
        return self.render(self._row(principal.workspace, row.id))

    def delete(self, principal: Principal, connector_id: str) -> None:
        """Remove a connector, and the workspace's export default if it pointed here.

        A connector an automation reads from or delivers to is refused with 409: deleting
        it would leave the automation failing on every listing, unseen.
        """
        row = self._row(principal.workspace, connector_id)
        used_by = or_(automations.c.source_connector_id == row.id,
                      automations.c.destination_connector_id == row.id)
        with self.db.begin() as conn:
            # On PostgreSQL the row lock orders this delete against an automation being
            # created with the connector (it holds the row FOR SHARE, see hold()), and the
            # check below then reads what that creation committed. On SQLite the single
            # DELETE ... NOT EXISTS statement is atomic under the write lock.
            conn.execute(select(connectors.c.id).where(connectors.c.id == row.id)
                         .with_for_update())
            deleted = conn.execute(delete(connectors).where(
                connectors.c.id == row.id, ~exists().where(used_by))).rowcount
            if not deleted:
                users = sorted(conn.execute(select(automations.c.id).where(used_by))
                               .scalars().all())
                if users:
                    raise Conflict(
                        f"connector {row.id} is used by automation(s) {', '.join(users)}: "
                        "delete them, or point them at another connector, first",
                        field="connector_id", automations=users)
                raise NotFound(f"No connector {connector_id!r} in this workspace",
                               field="connector_id")
            conn.execute(update(export_defaults).where(
                export_defaults.c.workspace == principal.workspace,
                export_defaults.c.connector_id == row.id).values(connector_id=None))

    # ------------------------------------------------------------------ reads
    def _row(self, workspace: str, connector_id: str, field: str = "connector_id"
             ) -> Row[Any]:
        with self.db.connect() as conn:
            row = conn.execute(select(connectors).where(
                connectors.c.id == connector_id, connectors.c.workspace == workspace)).first()
        if row is None:
            raise NotFound(f"No connector {connector_id!r} in this workspace", field=field)
        return row

    def _load(self, row: Row[Any]) -> Connector:
        return Connector(id=row.id, workspace=row.workspace, name=row.name,
                         provider=row.provider, config=json.loads(row.config),
                         sealed=row.credentials, hints=json.loads(row.credential_hints))

    def get(self, principal: Principal, connector_id: str) -> dict[str, Any]:
        """One connector of the caller's workspace, rendered."""
        return self.render(self._row(principal.workspace, connector_id))

    def list(self, principal: Principal, limit: int, cursor: str | None,
             ) -> tuple[list[dict[str, Any]], str | None]:
        """The workspace's connectors, newest first."""
        query = select(connectors).where(connectors.c.workspace == principal.workspace)
        if cursor:
            query = query.where(connectors.c.seq < decode_cursor(cursor))
        with self.db.connect() as conn:
            rows = conn.execute(query.order_by(connectors.c.seq.desc()).limit(limit + 1)).all()
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].seq) if len(rows) > limit else None
        return [self.render(r) for r in page], next_cursor

    def render(self, row: Row[Any]) -> dict[str, Any]:
        """The public JSON of a connector: never a credential, only whether it is set."""
        stored = self._load(row)
        shape = registry.spec(stored.provider)
        return {
            "id": stored.id, "name": stored.name, "provider": stored.provider,
            "config": {name: stored.config.get(name) for name in shape.config},
            "credentials": {name: {"set": name in stored.hints,
                                   "last4": stored.hints.get(name) or None}
                            for name in shape.credentials},
            "created_at": iso(row.created_at), "updated_at": iso(row.updated_at),
        }

    # ------------------------------------------------------------------ providers
    def provider(self, workspace: str, connector_id: str, field: str = "connector_id"
                 ) -> Provider:
        """A live provider for a connector of workspace (exports and automations use this)."""
        stored = self._load(self._row(workspace, connector_id, field))
        return registry.open_provider(stored.provider, stored.config,
                                      self.box.open(stored.sealed), self.settings)

    def exists(self, workspace: str, connector_id: str) -> bool:
        """Whether workspace has this connector."""
        try:
            self._row(workspace, connector_id)
        except NotFound:
            return False
        return True

    def hold(self, conn: Connection, workspace: str, connector_ids: Collection[str]) -> bool:
        """Whether workspace has all these connectors, kept from deletion until conn commits."""
        wanted: set[str] = set(connector_ids)
        found = conn.execute(select(connectors.c.id).where(
            connectors.c.workspace == workspace, connectors.c.id.in_(wanted))
            .with_for_update(read=True)).scalars().all()
        return set(found) == wanted

    def test(self, principal: Principal, connector_id: str) -> dict[str, Any]:
        """Write and delete a probe; any failure is a 400 quoting the provider's reason."""
        provider = self.provider(principal.workspace, connector_id)
        try:
            provider.check()
        except ConnectorUnavailable as exc:
            # The caller asked whether the connector works: an unreachable one does not.
            raise ConnectorFailed(exc.message, retryable=True) from exc
        return {"id": connector_id, "ok": True, "checked_at": iso(utcnow())}

    def browse(self, principal: Principal, connector_id: str, path: str | None,
               cursor: str | None, limit: int) -> dict[str, Any]:
        """One page of the folders and files at path."""
        folder = normalize_subpath(path, "path")
        provider = self.provider(principal.workspace, connector_id)
        entries, next_cursor = provider.list(folder, cursor, limit)
        return {"path": folder, "data": [_entry(e) for e in entries],
                "next_cursor": next_cursor}


def _entry(entry: Entry) -> dict[str, Any]:
    return {"path": entry.path, "name": entry.path.rsplit("/", 1)[-1],
            "type": "folder" if entry.is_dir else "file", "size_bytes": entry.size,
            "modified_at": iso(entry.modified), "etag": entry.etag}
