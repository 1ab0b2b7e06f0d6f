"""LocalStorage: each object is one file under a root directory (CONVERTER_DATA_DIR/objects)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from converter.storage.base import (
    TEMP_PREFIX,
    ObjectMissing,
    StorageError,
    StoredObject,
    validate_key,
    validate_prefix,
)

_CHUNK = 1024 * 1024
_DATA_DIR_HINT = "check CONVERTER_DATA_DIR"
# Errors that mean "nothing is stored under this key" rather than "the disk failed".
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


class LocalStorage:
    """Objects as files under root; content types are not stored (the database has them).

    Files are created with mode 0600 (tempfile.mkstemp's default): they are users'
    documents, and only this service needs to read them.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def put_file(self, key: str, path: Path, content_type: str) -> int:
        """Copy the file at path under key atomically; return the size."""
        target = self._path(key)
        # Opened before anything is written so a missing source is a plain FileNotFoundError.
        with path.open("rb") as source:
            chunks = iter(partial(source.read, _CHUNK), b"")
            return _write_atomic(target, chunks, make_parents=True, hint=_DATA_DIR_HINT)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> int:
        """Store data under key atomically; return the size."""
        target = self._path(key)
        return _write_atomic(target, (data,), make_parents=True, hint=_DATA_DIR_HINT)

    def get_bytes(self, key: str) -> bytes:
        """Return the object's bytes; raise ObjectMissing if there is none."""
        path = self._path(key)
        try:
            return path.read_bytes()
        except _MISSING:
            raise ObjectMissing(key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {key!r}: {exc} ({_DATA_DIR_HINT})") from exc

    def download_to(self, key: str, path: Path) -> None:
        """Copy the object to path atomically; raise ObjectMissing if there is none."""
        source_path = self._path(key)
        try:
            source = source_path.open("rb")
        except _MISSING:
            raise ObjectMissing(key) from None
        except OSError as exc:
            raise StorageError(f"cannot read {key!r}: {exc} ({_DATA_DIR_HINT})") from exc
        with source:
            chunks = iter(partial(source.read, _CHUNK), b"")
            _write_atomic(Path(path), chunks, make_parents=False, hint=f"writing {path}")

    def exists(self, key: str) -> bool:
        """Whether an object is stored under key."""
        return self._path(key).is_file()

    def size(self, key: str) -> int | None:
        """The object's size in bytes, or None if there is none."""
        try:
            st = self._path(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise StorageError(f"cannot stat {key!r}: {exc} ({_DATA_DIR_HINT})") from exc
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def delete(self, key: str) -> None:
        """Remove the object if it exists."""
        try:
            self._path(key).unlink()
        except _MISSING:
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete {key!r}: {exc} ({_DATA_DIR_HINT})") from exc

    def delete_prefix(self, prefix: str) -> int:
        """Remove every object whose key starts with prefix; return how many were removed."""
        validate_prefix(prefix)
        # Only the deepest directory that every matching key lives under needs walking.
        head = prefix.rpartition("/")[0]
        base = self.root.joinpath(*head.split("/")) if head else self.root
        if not base.is_dir():
            return 0

        def fail(exc: OSError) -> None:
            raise StorageError(f"cannot list {exc.filename}: {exc} ({_DATA_DIR_HINT})") from exc

        removed = 0
        for dirpath, _dirs, filenames in os.walk(base, topdown=False, onerror=fail):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            key_dir = "" if rel_dir == "." else rel_dir + "/"
            for name in filenames:
                # Temp files belong to writes in flight; removing one would fail that write.
                if name.startswith(TEMP_PREFIX) or not (key_dir + name).startswith(prefix):
                    continue
                try:
                    os.unlink(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue  # a concurrent delete got there first; it is not ours to count
                except OSError as exc:
                    raise StorageError(
                        f"cannot delete {key_dir + name!r}: {exc} ({_DATA_DIR_HINT})"
                    ) from exc
                removed += 1
            # Prune emptied directories so per-file directories do not pile up forever.
            if key_dir and key_dir.startswith(prefix):
                with contextlib.suppress(OSError):  # not empty: other objects or a write in flight
                    os.rmdir(dirpath)
        return removed

    def list_objects(self, prefix: str) -> Iterator[StoredObject]:
        """Every object whose key starts with prefix (temp files of writes in flight excluded)."""
        validate_prefix(prefix)
        head = prefix.rpartition("/")[0]
        base = self.root.joinpath(*head.split("/")) if head else self.root
        for dirpath, _dirs, filenames in os.walk(base):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            key_dir = "" if rel_dir == "." else rel_dir + "/"
            for name in filenames:
                key = key_dir + name
                if name.startswith(TEMP_PREFIX) or not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:
                    continue  # deleted while listing
                yield StoredObject(key, st.st_size,
                                   datetime.fromtimestamp(st.st_mtime, tz=UTC))

    def clear_partial_writes(self, older_than: datetime, dry_run: bool = False) -> int:
        """Delete temp files of writes a kill interrupted, begun before older_than."""
        cutoff = older_than.timestamp()
        removed = 0
        for dirpath, _dirs, filenames in os.walk(self.root):
            for name in filenames:
                if not name.startswith(TEMP_PREFIX):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    if os.stat(path).st_mtime >= cutoff:
                        continue  # a write in flight (or just finished and renamed away)
                    if not dry_run:
                        os.unlink(path)
                except FileNotFoundError:
                    continue  # renamed into place or removed meanwhile
                removed += 1
        return removed

    def local_path(self, key: str) -> Path | None:
        """The file the object is (or would be) stored in; it may not exist."""
        return self._path(key)

    def presigned_url(
        self, key: str, *, filename: str, content_type: str, expires_in: int
    ) -> str | None:
        """Always None: local files are served through the service's own signed URLs."""
        validate_key(key)
        return None

    def check(self) -> None:
        """Create the root if needed and prove it is writable with a throwaway file."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=TEMP_PREFIX + "check-", dir=self.root)
            try:
                os.write(fd, b"ok")
                os.fsync(fd)
            finally:
                os.close(fd)
                os.unlink(probe)
        except OSError as exc:
            raise StorageError(
                f"object directory {self.root} is not writable: {exc}; "
                "set CONVERTER_DATA_DIR to a writable directory"
            ) from exc

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))


def _write_atomic(target: Path, chunks: Iterable[bytes], *, make_parents: bool, hint: str) -> int:
    """Write chunks to a temp file beside target, fsync it, then rename it over target."""
    try:
        fd, tmp = _mkstemp(target.parent, make_parents)
    except OSError as exc:
        raise StorageError(f"cannot write {target}: {exc} ({hint})") from exc
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise StorageError(f"cannot write {target}: {exc} ({hint})") from exc
        raise
    _fsync_dir(target.parent)
    return size


def _mkstemp(directory: Path, make_parents: bool) -> tuple[int, str]:
    attempts = 3
    while True:
        if make_parents:
            directory.mkdir(parents=True, exist_ok=True)
        try:
            return tempfile.mkstemp(prefix=TEMP_PREFIX, dir=directory)
        except FileNotFoundError:
            # delete_prefix prunes empty directories and may remove the one we just
            # made before the temp file lands in it; making it again is enough.
            attempts -= 1
            if not make_parents or attempts == 0:
                raise


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable across a crash; best effort because some
    # filesystems refuse fsync on a directory, and the object is already visible.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
