"""Connector ids mapped to real local providers: the automations' Connectors, in-process.

The served tests create connectors through /v1/connectors; tests that drive the
poller's steps directly use this map to the same LocalProvider instead.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection

from converter.connectors.base import Provider
from converter.connectors.local import LocalProvider
from converter.errors import NotFound


@dataclass
class LocalConnectors:
    """Connectors of one workspace, each a directory under root."""

    workspace: str
    root: Path
    folders: dict[str, Path] = field(default_factory=dict)

    def provider(self, workspace: str, connector_id: str) -> Provider:
        """The LocalProvider of a connector of this workspace; NotFound otherwise."""
        if not self.exists(workspace, connector_id):
            raise NotFound(f"No connector {connector_id!r} in this workspace",
                           field="connector_id")
        return LocalProvider(str(self.folders[connector_id]), (str(self.root),))

    def exists(self, workspace: str, connector_id: str) -> bool:
        """Whether this workspace has the connector."""
        return workspace == self.workspace and connector_id in self.folders

    def hold(self, _conn: Connection, workspace: str, connector_ids: Collection[str]) -> bool:
        """Whether this workspace has all the connectors (nothing here deletes them)."""
        return all(self.exists(workspace, connector_id) for connector_id in connector_ids)
