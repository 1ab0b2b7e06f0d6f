"""How many CPUs this process may use: its affinity mask and its cgroup CPU quota.

``os.cpu_count()`` counts the host's cores; in a container limited with ``--cpus`` that
would start one LibreOffice instance per host core, and they would all share the quota.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """CPUs usable by this process: affinity, capped by the cgroup quota; at least 1."""
    count = _affinity_count()
    quota = cgroup_cpu_limit(cgroup_root, proc_cgroup)
    if quota is not None:
        # A fractional quota (--cpus=1.5) still gives the extra instance real time; each
        # conversion is single-threaded, so rounding up is what uses the whole quota.
        count = min(count, math.ceil(quota))
    return max(1, count)


def _affinity_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cgroup_cpu_limit(cgroup_root: Path = CGROUP_ROOT,
                     proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota (in CPUs) on this process's cgroup and its ancestors, or None."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    if not lines:
        # No /proc/self/cgroup (unusual): look at the mount roots, a container's own view.
        lines = ["0::/", "1:cpu:/"]
    limits: list[float] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            limits += _walk(cgroup_root, path, _v2_limit)
        elif "cpu" in controllers.split(","):
            # The v1 controller is mounted as "cpu,cpuacct" with "cpu" a symlink to it on
            # most systems, the other way round on some: take whichever exists.
            for name in (controllers, "cpu", "cpu,cpuacct"):
                if (cgroup_root / name).is_dir():
                    limits += _walk(cgroup_root / name, path, _v1_limit)
                    break
    return min(limits) if limits else None


def _walk(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """Limits on the cgroup at path under mount and on every ancestor up to the mount."""
    # Inside a container the path named in /proc/self/cgroup may be the host's and not
    # exist in the container's mount; the directories that do exist still count.
    parts = [p for p in path.strip("/").split("/") if p and p != ".."]
    found = []
    for depth in range(len(parts), -1, -1):
        limit = read(mount.joinpath(*parts[:depth]))
        if limit is not None:
            found.append(limit)
    return found


def _v2_limit(directory: Path) -> float | None:
    """cpu.max: "<quota> <period>" in microseconds, or "max <period>" for no limit."""
    try:
        fields = (directory / "cpu.max").read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _v1_limit(directory: Path) -> float | None:
    """cpu.cfs_quota_us / cpu.cfs_period_us; a quota of -1 means no limit."""
    try:
        quota = (directory / "cpu.cfs_quota_us").read_text().strip()
        period = (directory / "cpu.cfs_period_us").read_text().strip()
    except OSError:
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:
        return None
    return q / p

