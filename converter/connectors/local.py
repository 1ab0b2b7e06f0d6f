"""The ``local`` provider: a directory on this machine, under an operator-approved root.

The operator lists the directories connectors may use in
CONVERTER_LOCAL_CONNECTOR_ROOTS; a connector's ``path`` must lie under one of
them, and every path it is asked for is resolved (symlinks included) and must
stay inside the connector's directory, so neither ``..`` nor a planted symlink
can reach the rest of the machine. Writes go to a temporary name in the target
directory, then ``os.replace`` (or ``os.link`` when nothing may be overwritten),
so a reader never sees half a file and a failure leaves nothing behind.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from converter.connectors.base import Delivered, Entry
from converter.errors import ConnectorFailed, ConnectorUnavailable, DestinationExists

TEMP_MARK = ".converter-tmp-"
PROBE_MARK = ".converter-probe-"
ROOTS_SETTING = "CONVERTER_LOCAL_CONNECTOR_ROOTS"
_CHUNK = 1 << 20
# Errors that a retry will not cure: the connector itself is wrong.
_PERMANENT = frozenset({errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EROFS,
                        errno.ENOENT, errno.ENAMETOOLONG, errno.EINVAL, errno.ELOOP})


def check_root(path: str, allowed: tuple[str, ...]) -> Path:
    """The resolved directory for a connector's path; ConnectorFailed unless it is allowed."""
    if not allowed:
        raise ConnectorFailed(
            f"local connectors are disabled on this service: the operator must list the "
            f"directories they may use in {ROOTS_SETTING}", field="path")
    if not isinstance(path, str) or not path or not os.path.isabs(path):
        raise ConnectorFailed("path must be an absolute directory path, under one of "
                              f"{', '.join(allowed)}", field="path", valid_values=list(allowed))
    resolved = Path(path).resolve()
    for root in allowed:
        if resolved.is_relative_to(Path(root).resolve()):
            return resolved
    raise ConnectorFailed(f"path {path!r} is not under any directory of {ROOTS_SETTING} "
                          f"({', '.join(allowed)})", field="path", valid_values=list(allowed))


def _fail(action: str, where: str, exc: OSError) -> Exception:
    reason = f"{action} {where!r} failed: {exc.strerror or exc}"
    if exc.errno in _PERMANENT:
        return ConnectorFailed(reason)
    return ConnectorUnavailable(reason)


def _encode(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode("utf-8")).decode("ascii").rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ConnectorFailed("cursor is invalid; pass the next_cursor of a previous page",
                              field="cursor") from None


def _temp_name(token: str, name: str) -> str:
    return f"{TEMP_MARK}{token}-{name}"[:250]


def _hidden(name: str) -> bool:
    return name.startswith((TEMP_MARK, PROBE_MARK)) or TEMP_MARK in name


class LocalProvider:
    """A directory under CONVERTER_LOCAL_CONNECTOR_ROOTS."""

    def __init__(self, path: str, allowed: tuple[str, ...]) -> None:
        self.root = check_root(path, allowed)

    def __repr__(self) -> str:
        return f"LocalProvider({str(self.root)!r})"

    def _resolve(self, rel: str) -> Path:
        target = (self.root / rel).resolve() if rel else self.root
        if not target.is_relative_to(self.root):
            raise ConnectorFailed(f"{rel!r} leads outside the connector's directory "
                                  "(through a symlink)", field="path")
        return target

    def _entry(self, rel: str, path: Path) -> Entry:
        info = path.stat()
        is_dir = path.is_dir()
        return Entry(path=rel, is_dir=is_dir, size=None if is_dir else info.st_size,
                     modified=datetime.fromtimestamp(info.st_mtime, UTC))

    def check(self) -> None:
        """Write a probe file in the directory, then delete it."""
        if not self.root.is_dir():
            raise ConnectorFailed(f"directory {str(self.root)!r} does not exist", field="path")
        probe = self.root / f"{PROBE_MARK}{secrets.token_hex(8)}"
        try:
            probe.write_bytes(b"converter connector test\n")
        except OSError as exc:
            raise _fail("writing a probe file in", str(self.root), exc) from exc
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def list(self, path: str, cursor: str | None, limit: int) -> tuple[list[Entry], str | None]:
        """One page of the folder's entries, by name; the cursor is the last name seen."""
        folder = self._resolve(path)
        after = _decode(cursor) if cursor else None
        try:
            names = sorted(n for n in os.listdir(folder) if not _hidden(n))
        except OSError as exc:
            raise _fail("listing", path or "/", exc) from exc
        if after is not None:
            names = [n for n in names if n > after]
        entries: list[Entry] = []
        for name in names:
            rel = f"{path}/{name}" if path else name
            with contextlib.suppress(OSError, ConnectorFailed):
                entries.append(self._entry(rel, self._resolve(rel)))
            if len(entries) == limit:
                break
        more = bool(entries) and entries[-1].path.rsplit("/", 1)[-1] != names[-1]
        return entries, _encode(entries[-1].path.rsplit("/", 1)[-1]) if more else None

    def walk(self, path: str) -> Iterator[Entry]:
        """Every file under path, recursively, never following a symlink out of the root."""
        top = self._resolve(path)
        for folder, dirs, names in os.walk(top):
            dirs[:] = sorted(d for d in dirs if not _hidden(d))
            for name in sorted(names):
                if _hidden(name):
                    continue
                full = Path(folder) / name
                rel = full.relative_to(self.root).as_posix()
                with contextlib.suppress(OSError, ConnectorFailed):
                    if self._resolve(rel).is_file():
                        yield self._entry(rel, full)

    def stat(self, path: str) -> Entry | None:
        """The file at path, or None."""
        target = self._resolve(path)
        try:
            return self._entry(path, target) if target.is_file() else None
        except OSError:
            return None

    def download(self, path: str, target: Path) -> None:
        """Copy the file at path to target."""
        try:
            shutil.copyfile(self._resolve(path), target)
        except OSError as exc:
            raise _fail("reading", path, exc) from exc

    def discard_partial(self, path: str) -> int:
        """Delete the temporary files of writes to path that were killed before the rename."""
        final = self._resolve(path)
        # Temp names are TEMP_MARK, 16 hex digits, "-" and the final name, cut at 250.
        tail = _temp_name("0" * 16, final.name)[len(TEMP_MARK) + 17:]
        removed = 0
        try:
            names = os.listdir(final.parent)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise _fail("listing", path, exc) from exc
        for name in names:
            if name.startswith(TEMP_MARK) and name[len(TEMP_MARK) + 17:] == tail:
                with contextlib.suppress(FileNotFoundError):
                    (final.parent / name).unlink()
                    removed += 1
        return removed

    def upload(self, source: Path, path: str, overwrite: bool) -> Delivered:
        """Copy source to a temporary name beside path, then rename it into place."""
        final = self._resolve(path)
        temp = final.with_name(_temp_name(secrets.token_hex(8), final.name))
        digest = hashlib.sha256()
        size = 0
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._resolve(path)  # again: mkdir may have met a symlinked folder
            with source.open("rb") as src, temp.open("xb") as dst:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
            if overwrite:
                os.replace(temp, final)
            else:
                # link() fails if final exists: no window in which another writer's file
                # could be replaced, unlike a check followed by a rename.
                try:
                    os.link(temp, final)
                except FileExistsError:
                    raise DestinationExists(f"{path!r} already exists at the destination",
                                            path=path) from None
        except OSError as exc:
            raise _fail("writing", path, exc) from exc
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()
        return Delivered(path=path, size_bytes=size, sha256=digest.hexdigest())

    def delete(self, path: str) -> None:
        """Remove the file at path (absent is fine)."""
        try:
            self._resolve(path).unlink(missing_ok=True)
        except OSError as exc:
            raise _fail("deleting", path, exc) from exc

    def move(self, path: str, new_path: str) -> None:
        """Rename the file at path to new_path, creating its folders."""
        source, target = self._resolve(path), self._resolve(new_path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, target)
        except OSError as exc:
            raise _fail("moving", path, exc) from exc
