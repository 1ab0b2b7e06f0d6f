"""Small statistics helpers and a sampler of LibreOffice resident memory."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path


def percentile(values: list[float], pct: float) -> float:
    """The pct-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: list[float]) -> float:
    """The median; NaN for no values."""
    return percentile(values, 50.0)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when either is missing or the denominator is 0."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def soffice_processes(program: str = "soffice.bin") -> dict[int, str]:
    """Every running process of program (soffice.bin unless told): pid -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if program in cmdline.split(" ", 1)[0] or (
                program == "soffice.bin" and program in cmdline):
            found[int(entry.name)] = cmdline
    return found


def soffice_pids(marker: str, program: str = "soffice.bin") -> list[int]:
    """PIDs of program's processes (soffice.bin unless told) whose command line has marker."""
    return [pid for pid, cmdline in soffice_processes(program).items() if marker in cmdline]


class RssSampler:
    """Polls the soffice.bin processes of one system under test for their peak memory.

    VmHWM is the kernel's own high-water mark of a process, so a poll that comes
    late still sees the peak reached so far; the sum of VmRSS over the processes
    alive at one poll gives the peak footprint of a pool.
    """

    def __init__(self, marker: str, interval: float = 0.05, program: str = "soffice.bin",
                 ) -> None:
        self.marker = marker
        self.program = program
        self.interval = interval
        self.peak_process_kib = 0
        self.peak_total_kib = 0
        self.processes_seen: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample now."""
        total = 0
        for pid in soffice_pids(self.marker, self.program):
            self.processes_seen.add(pid)
            self.peak_process_kib = max(self.peak_process_kib, _status_kib(pid, "VmHWM"))
            total += _status_kib(pid, "VmRSS")
        self.peak_total_kib = max(self.peak_total_kib, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> RssSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    @property
    def peak_process_mib(self) -> float:
        """Largest VmHWM of any one soffice.bin, in MiB."""
        return self.peak_process_kib / 1024

    @property
    def peak_total_mib(self) -> float:
        """Largest sum of VmRSS over the system's soffice.bin processes at one poll, in MiB."""
        return self.peak_total_kib / 1024


def _cpu_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, user+system CPU ticks so far), for every process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            rest = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            table[int(entry.name)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
        except (OSError, IndexError, ValueError):
            continue
    return table


def _ours(table: dict[int, tuple[int, int]], root: int) -> set[int]:
    """root and all its descendants."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _ticks) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


class BackgroundWatch:
    """Measures the CPU that processes outside this benchmark's process tree take.

    This machine is shared (other people's test suites start LibreOffice too); the
    report says how much of its two cores such work took while we measured.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.root = os.getpid()
        self.hz = os.sysconf("SC_CLK_TCK")
        self.cores = os.cpu_count() or 1
        self.foreign_ticks = 0
        self.elapsed = 0.0
        self.busiest = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _foreign_share(self, before: dict[int, tuple[int, int]],
                       after: dict[int, tuple[int, int]], seconds: float) -> tuple[int, float]:
        ours = _ours(after, self.root)
        # A process new since `before` counts with all its ticks: it started in between.
        ticks = max(0, sum(t - before.get(pid, (0, 0))[1] for pid, (_pp, t) in after.items()
                           if pid not in ours))
        return ticks, ticks / (seconds * self.hz * self.cores) if seconds > 0 else 0.0

    def wait_quiet(self, timeout: float, window: float = 5.0, threshold: float = 0.05,
                   log: Callable[[str], None] | None = None) -> bool:
        """Wait up to timeout seconds for a window in which others use < threshold of the CPU."""
        deadline = time.monotonic() + timeout
        said = False
        while time.monotonic() < deadline:
            before, started = _cpu_table(), time.monotonic()
            time.sleep(window)
            _ticks, share = self._foreign_share(before, _cpu_table(),
                                                time.monotonic() - started)
            if share < threshold:
                return True
            if log is not None and not said:
                log(f"other work takes {100 * share:.0f}% of the CPU; waiting for it to end...")
                said = True
        return False

    def _run(self) -> None:
        before, last = _cpu_table(), time.monotonic()
        while not self._stop.wait(self.interval):
            after, now = _cpu_table(), time.monotonic()
            ticks, share = self._foreign_share(before, after, now - last)
            self.foreign_ticks += ticks
            self.elapsed += now - last
            self.busiest = max(self.busiest, share)
            before, last = after, now

    def start(self) -> None:
        """Start watching in a daemon thread."""
        self._thread = threading.Thread(target=self._run, daemon=True, name="background")
        self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def share(self) -> float:
        """Average share of all cores used by other processes while watching."""
        return self.foreign_ticks / (self.elapsed * self.hz * self.cores) if self.elapsed else 0.0

    def summary(self) -> str:
        """One line for the report."""
        if not self.elapsed:
            return "not observed"
        return (f"processes outside the benchmark used {100 * self.share:.0f}% of the "
                f"{self.cores} cores on average during the run (busiest second: "
                f"{100 * self.busiest:.0f}%)")
