"""A PostgreSQL cluster a test owns: made with initdb, on a free port, stopped and killed at will.

Outage tests stop the database under a running service; they must never touch the
shared server on 5432, so each gets its own cluster from Debian's postgresql binaries,
run as the postgres user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from converter.engine.ports import PortReservation

BIN = Path(os.environ.get("CONVERTER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
USER = "postgres"


class PgCluster:
    """One cluster in directory root, listening on 127.0.0.1:port only."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.data = root / "data"
        # Held for this object's life, so a restart after an outage test's stop finds its
        # port still free (engine/ports.py); PostgreSQL binds with SO_REUSEADDR.
        self._port = None if port else PortReservation()
        self.port = port or self._port.port  # type: ignore[union-attr]
        self.log = root / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's postgres database."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/postgres"

    def init(self) -> PgCluster:
        """initdb (trust auth on loopback; fsync off: a test cluster need not survive a crash)."""
        self.root.mkdir(parents=True, exist_ok=True)
        owner = pwd.getpwnam(USER)
        os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._as_postgres(BIN / "initdb", "-D", self.data, "-U", USER, "--auth=trust",
                          "--no-sync", "-E", "UTF8")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.root}'\nfsync = off\n"
                       "max_connections = 200\n")
        return self

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until it accepts connections."""
        self._as_postgres(BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-w",
                          "-t", str(int(timeout)), "start")
        self.wait_ready(timeout)

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop (fast: disconnects every client, as an operator's restart does)."""
        self._as_postgres(BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster and its children: the database vanishes mid-conversation."""
        pid = self.pid()
        if pid is None:
            return
        doomed = [pid, *_children(pid)]  # before the kill: orphans no longer name their parent
        for victim in doomed:
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while any(_alive(v) for v in doomed) and time.monotonic() < deadline:
            time.sleep(0.05)
        # Stale lock files would make the next start refuse to run (a crash leaves them).
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        (self.root / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)
        (self.root / f".s.PGSQL.{self.port}").unlink(missing_ok=True)

    def running(self) -> bool:
        """Whether the server accepts connections now."""
        return self._accepting()

    def pid(self) -> int | None:
        """The postmaster's pid, if the cluster has one running."""
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until a connection succeeds."""
        deadline = time.monotonic() + timeout
        while not self._accepting():
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} did not start:\n"
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)

    def _accepting(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _as_postgres(self, *args: object) -> None:
        cmd = ["runuser", "-u", USER, "--", *(str(a) for a in args)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n"
                               f"{done.stdout}\n{done.stderr}")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The parent pid is the 2nd field after the parenthesised command name.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


@contextmanager
def owned_cluster() -> Iterator[PgCluster]:
    """A started cluster of its own, killed and removed afterwards; fails loudly without tools."""
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: a test-owned PostgreSQL cluster needs root (runuser to "
                    "the postgres user)")
    if not (BIN / "initdb").exists():
        pytest.fail(f"initdb not found in {BIN}: install Debian's postgresql package "
                    "(or set CONVERTER_TEST_PG_BIN)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        pytest.fail("no postgres user: install Debian's postgresql package")
    # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="converter-pg-"))
    try:
        cluster = PgCluster(root).init()
        cluster.start()
        yield cluster
    finally:
        if (root / "data" / "postmaster.pid").exists():
            PgCluster(root).kill()
        shutil.rmtree(root, ignore_errors=True)
