"""An automation's history: its events, newest first, a page at a time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select

from converter.db.schema import automation_events
from converter.errors import InvalidRequest
from converter.service.automation_claims import EVENT_KINDS
from converter.service.automations import iso
from converter.service.pagination import decode_cursor, encode_cursor

events = automation_events


def render(row: Any) -> dict[str, Any]:
    """The public JSON of one event."""
    return {"kind": row.kind, "path": row.path, "version": row.version, "format": row.format,
            "destination": row.destination, "reason": row.reason, "at": iso(row.at)}


def page(db: Engine, automation_id: str, kind: str | None, limit: int,
         cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """One page of an automation's events (optionally of one kind) and the next cursor."""
    query = select(events).where(events.c.automation_id == automation_id)
    if kind:
        if kind not in EVENT_KINDS:
            raise InvalidRequest(f"kind must be one of {', '.join(EVENT_KINDS)}", field="kind",
                                 valid_values=list(EVENT_KINDS))
        query = query.where(events.c.kind == kind)
    if cursor:
        query = query.where(events.c.seq < decode_cursor(cursor))
    with db.connect() as conn:
        rows = conn.execute(query.order_by(events.c.seq.desc()).limit(limit + 1)).all()
    found = rows[:limit]
    next_cursor = encode_cursor(found[-1].seq) if len(rows) > limit else None
    return [render(r) for r in found], next_cursor
