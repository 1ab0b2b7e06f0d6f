"""Who is calling: the identity an API key stands for, and what it may see."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Table, and_, or_


@dataclass(frozen=True)
class Principal:
    """A verified API key: the user it belongs to, in one workspace."""

    key_id: str
    workspace: str
    user_id: str

    def visible(self, table: Table) -> ColumnElement[bool]:
        """SQL condition for the rows this key may see: workspace rows and its own personal ones."""
        return and_(
            table.c.workspace == self.workspace,
            or_(table.c.scope == "workspace", table.c.owner == self.user_id),
        )
