"""A directory as a connector Provider, for poller tests until the connector layer lands."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from converter.connectors.base import Delivered, Entry, Provider
from converter.errors import NotFound


class DirProvider:
    """Files under root; writes are a temporary name then os.replace."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _entry(self, path: Path) -> Entry:
        st = path.stat()
        return Entry(path=path.relative_to(self.root).as_posix(), is_dir=False,
                     size=st.st_size, modified=datetime.fromtimestamp(st.st_mtime, UTC))

    def check(self) -> None:
        """Nothing to prove for a directory."""

    def list(self, path: str, cursor: str | None, limit: int) -> tuple[list[Entry], str | None]:
        """Not used by the poller."""
        raise NotImplementedError

    def walk(self, path: str) -> Iterator[Entry]:
        """Every file under path."""
        base = self.root / path
        for found in sorted(base.rglob("*")) if base.exists() else []:
            if found.is_file() and ".tmp-" not in found.name:
                yield self._entry(found)

    def stat(self, path: str) -> Entry | None:
        """The file at path, or None."""
        target = self.root / path
        return self._entry(target) if target.is_file() else None

    def download(self, path: str, target: Path) -> None:
        """Copy the file at path to target."""
        shutil.copyfile(self.root / path, target)

    def upload(self, source: Path, path: str, overwrite: bool) -> Delivered:
        """Write atomically at path."""
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return Delivered(path=path, size_bytes=target.stat().st_size, sha256="")

    def delete(self, path: str) -> None:
        """Remove the file at path."""
        (self.root / path).unlink(missing_ok=True)

    def move(self, path: str, new_path: str) -> None:
        """Move path to new_path."""
        target = self.root / new_path
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.root / path, target)


@dataclass
class DirConnectors:
    """Connector ids mapped to directories (the Connectors protocol of automations)."""

    workspace: str
    roots: dict[str, Path] = field(default_factory=dict)

    def provider(self, workspace: str, connector_id: str, field: str) -> Provider:
        """The directory of a connector of this workspace."""
        if workspace != self.workspace or connector_id not in self.roots:
            raise NotFound(f"No connector {connector_id!r} in this workspace", field=field)
        return DirProvider(self.roots[connector_id])
