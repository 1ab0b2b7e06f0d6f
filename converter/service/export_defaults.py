"""A workspace's default export destination: where exports without one are delivered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from converter.connectors.delivery import validate_on_conflict
from converter.connectors.paths import normalize_subpath
from converter.db.engine import utcnow
from converter.db.schema import export_defaults
from converter.errors import InvalidRequest, NotFound
from converter.service.principal import Principal
from converter.service.runs import iso

_FIELDS = ("destination_connector_id", "destination_subpath", "on_conflict")


@dataclass(frozen=True)
class Destination:
    """Where an export goes: a connector, a subpath under its root, the collision policy."""

    connector_id: str | None
    subpath: str
    on_conflict: str


class DefaultsStore:
    """Reads and writes export_defaults rows."""

    def __init__(self, db: Engine, connector_exists: Any) -> None:
        self.db = db
        self.connector_exists = connector_exists

    def get(self, workspace: str) -> Destination | None:
        """The workspace's default, or None when it has none."""
        with self.db.connect() as conn:
            row = conn.execute(select(export_defaults).where(
                export_defaults.c.workspace == workspace)).first()
        if row is None:
            return None
        return Destination(row.connector_id, row.subpath, row.on_conflict)

    def render(self, principal: Principal) -> dict[str, Any]:
        """The public JSON of the caller's workspace default (nulls when unset)."""
        with self.db.connect() as conn:
            row = conn.execute(select(export_defaults).where(
                export_defaults.c.workspace == principal.workspace)).first()
        return {"workspace": principal.workspace,
                "destination_connector_id": row.connector_id if row else None,
                "destination_subpath": row.subpath if row else "",
                "on_conflict": row.on_conflict if row else "rename",
                "updated_at": iso(row.updated_at) if row else None}

    def put(self, principal: Principal, body: Any) -> dict[str, Any]:
        """Replace the workspace's default; a null connector clears it."""
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object with "
                                 "destination_connector_id and destination_subpath")
        unknown = sorted(set(body) - set(_FIELDS))
        if unknown:
            raise InvalidRequest(f"Unknown field {unknown[0]!r}; accepted fields: "
                                 f"{', '.join(_FIELDS)}", field=unknown[0])
        if "destination_connector_id" not in body:
            raise InvalidRequest("destination_connector_id is required (null clears the "
                                 "default)", field="destination_connector_id")
        for name in ("destination_subpath", "on_conflict"):
            if name in body and body[name] is None:
                raise InvalidRequest(f"{name} must not be null; leave it out for the default",
                                     field=name)
        connector_id = body["destination_connector_id"]
        if connector_id is not None and (not isinstance(connector_id, str)
                                         or not self.connector_exists(principal.workspace,
                                                                      connector_id)):
            raise NotFound(f"No connector {connector_id!r} in this workspace",
                           field="destination_connector_id")
        subpath = normalize_subpath(body.get("destination_subpath"))
        on_conflict = validate_on_conflict(body.get("on_conflict"))
        values = {"connector_id": connector_id, "subpath": subpath,
                  "on_conflict": on_conflict, "updated_at": utcnow()}
        mine = export_defaults.c.workspace == principal.workspace
        if connector_id is None:
            with self.db.begin() as conn:
                conn.execute(delete(export_defaults).where(mine))
            return self.render(principal)
        try:
            with self.db.begin() as conn:
                if conn.execute(update(export_defaults).where(mine)
                                .values(**values)).rowcount == 0:
                    conn.execute(insert(export_defaults).values(
                        workspace=principal.workspace, **values))
        except IntegrityError:
            # Another key of the workspace inserted it first: last writer wins, as an update.
            with self.db.begin() as conn:
                conn.execute(update(export_defaults).where(mine).values(**values))
        return self.render(principal)
