"""A data directory the process cannot write stops `converter serve` with a message that
names the directory and the fix, instead of SQLite's "unable to open database file"."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.served import CONVERTER, REPO

NOBODY = 65534


def _serve(data_dir: Path, as_user: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "CONVERTER_DATA_DIR": str(data_dir), "CONVERTER_PORT": "1",
           "CONVERTER_WORKERS": "1"}
    return subprocess.run([*(as_user or []), CONVERTER, "serve"], env=env, capture_output=True,
                          text=True, timeout=60, cwd=REPO)


@pytest.fixture
def unwritable_dir() -> Iterator[tuple[Path, list[str], int]]:
    """A directory this test's `converter serve` cannot write, and how to run it.

    As root (CI, containers) permission bits do not stop the process, so the server runs as
    nobody via setpriv against a root-owned directory, as in a container whose bind mount
    is owned by the host's root. Otherwise the directory is made read-only for this user.
    """
    # Not under tmp_path: pytest makes that 0700, so nobody could not even reach it.
    parent = Path(tempfile.mkdtemp(prefix="converter-datadir-"))
    try:
        if os.geteuid() == 0:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.fail("setpriv (util-linux) is missing: it runs the server as nobody")
            parent.chmod(0o755)
            yield parent, [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}",
                           "--clear-groups"], NOBODY
        else:
            parent.chmod(0o555)
            yield parent, [], os.getuid()
    finally:
        parent.chmod(0o755)
        shutil.rmtree(parent)


def test_converter_can_run_as_the_other_user(unwritable_dir: tuple[Path, list[str], int],
                                             ) -> None:
    """The failures below are about the directory, not about running the program at all."""
    _parent, as_user, _uid = unwritable_dir
    done = subprocess.run([*as_user, CONVERTER, "--help"], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("sub", ["", "data"], ids=["existing", "to-create"])
def test_unwritable_data_dir_names_the_directory_and_the_fix(
        unwritable_dir: tuple[Path, list[str], int], sub: str) -> None:
    """Exit 2 naming CONVERTER_DATA_DIR, the path, the uid and chown / podman's :U."""
    parent, as_user, uid = unwritable_dir
    data_dir = parent / sub if sub else parent
    done = _serve(data_dir, as_user)
    assert done.returncode == 2, (done.returncode, done.stderr)
    message = done.stderr
    assert f"CONVERTER_DATA_DIR={data_dir} is not writable" in message, message
    assert f"uid {uid}" in message and f"chown -R {uid}:" in message, message
    assert ":U" in message, message
    assert "unable to open database file" not in message
    assert not (parent / "converter.db").exists()


def test_a_file_in_place_of_the_data_dir(tmp_path: Path) -> None:
    """A regular file where the directory should be: said so, exit 2."""
    in_the_way = tmp_path / "data"
    in_the_way.write_text("not a directory")
    done = _serve(in_the_way)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert f"CONVERTER_DATA_DIR={in_the_way} is not a directory" in done.stderr, done.stderr


def test_keys_create_checks_the_data_dir_too(tmp_path: Path) -> None:
    """`converter keys create` opens the same database, so it gives the same message."""
    in_the_way = tmp_path / "data"
    in_the_way.write_text("")
    done = subprocess.run([CONVERTER, "keys", "create", "--workspace", "w", "--user", "u"],
                          env={"PATH": "/usr/bin:/bin", "CONVERTER_DATA_DIR": str(in_the_way)},
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert done.returncode == 2
    assert f"CONVERTER_DATA_DIR={in_the_way} is not a directory" in done.stderr, done.stderr


def test_a_writable_data_dir_is_created(tmp_path: Path) -> None:
    """The check creates a missing directory and leaves nothing behind in it."""
    from converter.datadir import prepare

    target = tmp_path / "a" / "b"
    prepare(target)
    assert target.is_dir() and list(target.iterdir()) == []
