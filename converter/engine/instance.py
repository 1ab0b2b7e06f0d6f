"""One engine instance: a LibreOffice process and the bridge that drives it.

An instance knows how to start, answer, convert and die. Policies (when to
restart, where to retry) belong to the pool and its supervisor.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.util
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import IO

from converter.engine.allocator import with_preload
from converter.engine.client import BridgeClient, EngineCallTimeout, EngineGone
from converter.engine.ipc_sockets import bound_pipes, remove_pipes
from converter.engine.ports import PortReservation
from converter.engine.profile import PROXY_ENV, write_profile
from converter.errors import EngineStartError

logger = logging.getLogger("converter.engine")
bridge_logger = logging.getLogger("converter.engine.bridge")

_RESTART_REQUESTED = 81  # soffice's exit code after it initialised a new profile
_PR_SET_PDEATHSIG = 1
FONTS_CONF = Path(__file__).resolve().with_name("fonts.conf")


def forward_output(stream: IO[bytes], instance: str, tail: deque[str]) -> None:
    """Re-log a bridge's output lines ("LEVEL message") through this process's logging."""
    with stream:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            tail.append(line)
            name, _, message = line.partition(" ")
            level = logging.getLevelName(name)
            if not isinstance(level, int):  # a traceback line or stray output
                level, message = logging.WARNING, line
            bridge_logger.log(level, "%s", message, extra={"instance": instance})


class State(enum.Enum):
    """Where an instance is in its life."""

    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DRAINING = "draining"  # finishing its conversion, then restarting
    DEAD = "dead"


def find_soffice(configured: str) -> str:
    """Locate soffice.bin (the real binary, not the shell wrapper)."""
    candidates = [configured] if configured else []
    candidates += ["/usr/lib/libreoffice/program/soffice.bin"]
    wrapper = shutil.which("soffice")
    if wrapper:
        candidates.append(str(Path(wrapper).resolve().with_name("soffice.bin")))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise EngineStartError(
        "LibreOffice's soffice.bin was not found; install libreoffice-core or set "
        "CONVERTER_SOFFICE to its path"
    )


def find_engine_python(configured: str) -> str:
    """A Python that can import uno: this one if it can, else Debian's."""
    if configured:
        return configured
    if importlib.util.find_spec("uno") is not None:
        return sys.executable
    return "/usr/bin/python3"


def die_with_parent() -> None:
    """Between fork and exec: ask the kernel to kill this child when its parent thread dies."""
    # Runs in the child between fork and exec: if the service is killed -9, the
    # kernel kills LibreOffice too, so no orphan keeps running.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Spawner:
    """One long-lived thread that starts every child process.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the
    process; starting children from short-lived restart threads would kill them
    as soon as those threads finish.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], None], Future[None]]] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="engine-spawner", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                job()
            except BaseException as exc:  # handed to the caller, not lost in this thread
                future.set_exception(exc)
            else:
                future.set_result(None)

    def run(self, job: Callable[[], None]) -> None:
        """Run job on the spawner thread and wait for it."""
        if threading.current_thread() is self._thread:
            job()
            return
        future: Future[None] = Future()
        self._jobs.put((job, future))
        future.result()


class Instance:
    """One LibreOffice + bridge pair with its own ports and its own fresh profile."""

    def __init__(self, index: int, root: Path, scratch_root: Path, template: Path,
                 soffice: str, python: str, spawner: Spawner,
                 preload: str | None = None) -> None:
        self.index = index
        self.preload = preload  # a malloc to load into soffice.bin (engine/allocator.py)
        self.spawner = spawner
        self.root = root
        self.scratch_root = scratch_root
        self.template = template
        self.soffice_path = soffice
        self.python = python
        self.state = State.DEAD
        self.soffice: subprocess.Popen[bytes] | None = None
        self.bridge: subprocess.Popen[bytes] | None = None
        self.client: BridgeClient | None = None
        self.uno_port = 0
        self.rpc_port = 0
        self._ports: list[PortReservation] = []  # held until both listen (engine/ports.py)
        self.conversions = 0
        self.generation = 0
        self.drain_reason = ""
        self.lock = threading.Lock()
        self.bridge_tail: deque[str] = deque(maxlen=5)
        self.warmed: dict[str, str] = {}  # sample format -> import filter, from warm-up
        # This start's private temp directory, under the scratch root so a service killed
        # before it could clean up has it removed with the scratch root at its next start.
        self.tmp_dir = scratch_root / f"{self.name}-tmp"
        # LibreOffice's IPC socket files, unlinked when the instance ends (see ipc_sockets).
        self.pipes: set[Path] = set()

    @property
    def name(self) -> str:
        """Short label used in logs and metrics."""
        return f"engine-{self.index}"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVERTER_")}
        env.update(PROXY_ENV)
        env["HOME"] = str(self.root)
        # A private temp directory: LibreOffice keeps working files there, and a sibling
        # instance starting up must not be able to disturb (or read) them.
        env["TMPDIR"] = str(self.tmp_dir)
        env["SAL_USE_VCLPLUGIN"] = "svp"
        # Noto fonts for Arabic, Hebrew, Devanagari and Thai ahead of DejaVu (see the file);
        # an operator's own FONTCONFIG_FILE wins.
        env.setdefault("FONTCONFIG_FILE", str(FONTS_CONF))
        repo_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [repo_root, env.get("PYTHONPATH")]))
        return env

    def _spawn_soffice(self, profile: Path) -> subprocess.Popen[bytes]:
        accept = f"socket,host=127.0.0.1,port={self.uno_port},tcpNoDelay=1;urp;"
        cmd = [self.soffice_path, "--headless", "--invisible", "--nocrashreport",
               "--nodefault", "--nologo", "--nofirststartwizard", "--norestore",
               "--nolockcheck", f"-env:UserInstallation={profile.as_uri()}", f"--accept={accept}"]
        # The malloc goes into soffice.bin only, not the bridge (see engine/allocator.py).
        env = with_preload(self._env(), self.preload)
        return subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=die_with_parent)

    def spawn(self) -> None:
        """Start both processes from the spawner thread (see Spawner)."""
        self.spawner.run(self._spawn)

    def _spawn(self) -> None:
        self.kill()
        profile = self.root / "profile"
        shutil.rmtree(profile, ignore_errors=True)
        if self.template.exists():
            shutil.copytree(self.template, profile, symlinks=True)
        write_profile(profile)
        self.tmp_dir = self.scratch_root / f"{self.name}-tmp-{self.generation + 1}"
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir(parents=True)
        self._ports = [PortReservation(), PortReservation()]
        self.uno_port, self.rpc_port = (reserved.port for reserved in self._ports)
        self.soffice = self._spawn_soffice(profile)
        self.bridge = subprocess.Popen(
            [self.python, "-m", "converter.engine.bridge", "--uno-port", str(self.uno_port),
             "--rpc-port", str(self.rpc_port), "--scratch-root", str(self.scratch_root),
             "--warmup-dir", str(self.root / "warmup")],
            env=self._env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
        # The bridge runs under LibreOffice's Python; its lines join this process's logs
        # so they get the same format (and the same destination) as everything else.
        self.bridge_tail.clear()
        assert self.bridge.stdout is not None
        threading.Thread(target=forward_output, name=f"{self.name}-bridge-log", daemon=True,
                         args=(self.bridge.stdout, self.name, self.bridge_tail)).start()
        self.client = BridgeClient(self.rpc_port)
        self.generation += 1
        self.conversions = 0
        self.warmed = {}
        self.state = State.STARTING

    def wait_ready(self, timeout: float) -> None:
        """Wait until the bridge answers and LibreOffice is warmed up."""
        deadline = time.monotonic() + timeout
        while True:
            if self.soffice is not None and self.soffice.poll() == _RESTART_REQUESTED:
                # First start on a new profile: LibreOffice asks to be restarted.
                self.spawner.run(self._respawn_soffice)
            elif self.soffice is not None and self.soffice.poll() is not None:
                raise EngineStartError(
                    f"{self.name}: soffice exited with {self.soffice.returncode}")
            if self.bridge is not None and self.bridge.poll() is not None:
                raise EngineStartError(
                    f"{self.name}: bridge exited with {self.bridge.returncode} (is "
                    f"CONVERTER_ENGINE_PYTHON able to import uno?): "
                    f"{' | '.join(self.bridge_tail) or 'no output'}")
            if time.monotonic() > deadline:
                raise EngineStartError(f"{self.name}: not ready after {timeout:.0f}s")
            try:
                assert self.client is not None
                self.client.ping(timeout=1.0)
                # The bridge answers only once it is connected to LibreOffice: both listen.
                self._release_ports()
                self._note_pipes()
                break
            except (EngineGone, EngineCallTimeout):
                time.sleep(0.05)
        assert self.client is not None
        # Before the pool marks this instance idle (and /readyz counts it): the first
        # real conversion must not pay for loading LibreOffice's import filters.
        self.warmed = self.client.warmup(timeout=max(5.0, deadline - time.monotonic()))

    def _respawn_soffice(self) -> None:
        profile = self.root / "profile"
        self.soffice = self._spawn_soffice(profile)

    def _note_pipes(self) -> None:
        # LibreOffice binds its IPC socket before it accepts UNO connections, so once the
        # bridge answers the file exists; it is read now because a killed process has
        # no /proc entry left to read it from.
        if self.soffice is not None and self.soffice.poll() is None:
            self.pipes |= bound_pipes(self.soffice.pid)

    def alive(self) -> bool:
        """Both processes are running."""
        return (self.soffice is not None and self.soffice.poll() is None
                and self.bridge is not None and self.bridge.poll() is None)

    def rss_mb(self) -> float:
        """Resident memory of LibreOffice in MiB (0 if it is not running)."""
        if self.soffice is None or self.soffice.poll() is not None:
            return 0.0
        try:
            with open(f"/proc/{self.soffice.pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            return 0.0
        return 0.0

    def soffice_pid(self) -> int | None:
        """PID of the running LibreOffice, if any."""
        if self.soffice is not None and self.soffice.poll() is None:
            return self.soffice.pid
        return None

    def _release_ports(self) -> None:
        for reserved in self._ports:
            reserved.release()
        self._ports = []

    def kill(self) -> None:
        """Kill both processes and their children at once, then remove what they leave behind."""
        self._release_ports()
        self._note_pipes()
        for proc in (self.bridge, self.soffice):
            if proc is None:
                continue
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                logger.error("%s: pid %d did not die after SIGKILL", self.name, proc.pid)
        self.soffice = self.bridge = None
        self.state = State.DEAD
        # Only after both are dead: a live LibreOffice would still be using them.
        remove_pipes(self.pipes)
        self.pipes.clear()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
