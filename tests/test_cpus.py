"""CONVERTER_WORKERS=auto: CPU affinity capped by the cgroup CPU quota (v1 and v2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from converter import config
from converter.cpus import available_cpus, cgroup_cpu_limit

AFFINITY = len(os.sched_getaffinity(0))


def _v2(root: Path, path: str, cpu_max: str) -> None:
    directory = root.joinpath(*path.strip("/").split("/")) if path.strip("/") else root
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cpu.max").write_text(cpu_max + "\n")


def _v1(root: Path, path: str, quota: str, period: str = "100000",
        mount: str = "cpu,cpuacct") -> None:
    directory = root / mount / path.strip("/") if path.strip("/") else root / mount
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cpu.cfs_quota_us").write_text(quota + "\n")
    (directory / "cpu.cfs_period_us").write_text(period + "\n")


def _proc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("max 100000", None),
    ("100000 100000", 1.0),
    ("150000 100000", 1.5),
    ("50000 100000", 0.5),
    ("400000 100000", 4.0),
    ("garbage", None),
])
def test_v2_cpu_max_in_a_container(tmp_path: Path, cpu_max: str,
                                   expected: float | None) -> None:
    """A container sees its own cgroup as the mount root: "0::/" and /sys/fs/cgroup/cpu.max."""
    root = tmp_path / "cgroup"
    _v2(root, "/", cpu_max)
    assert cgroup_cpu_limit(root, _proc(tmp_path, "0::/\n")) == expected


def test_v2_tightest_limit_of_the_cgroup_and_its_ancestors_wins(tmp_path: Path) -> None:
    """A parent slice with 1 CPU limits a child cgroup allowed 3."""
    root = tmp_path / "cgroup"
    _v2(root, "/", "max 100000")
    _v2(root, "/machine.slice", "100000 100000")
    _v2(root, "/machine.slice/libpod-abc.scope", "300000 100000")
    proc = _proc(tmp_path, "0::/machine.slice/libpod-abc.scope\n")
    assert cgroup_cpu_limit(root, proc) == 1.0


def test_v2_host_path_missing_in_the_container_mount_falls_back_to_the_root(
        tmp_path: Path) -> None:
    """Without a cgroup namespace the named path does not exist under the mount."""
    root = tmp_path / "cgroup"
    _v2(root, "/", "200000 100000")
    proc = _proc(tmp_path, "0::/system.slice/docker-0123.scope\n")
    assert cgroup_cpu_limit(root, proc) == 2.0


@pytest.mark.parametrize(("quota", "period", "expected"), [
    ("-1", "100000", None),
    ("200000", "100000", 2.0),
    ("25000", "50000", 0.5),
])
def test_v1_cfs_quota_and_period(tmp_path: Path, quota: str, period: str,
                                 expected: float | None) -> None:
    """cgroup v1: cpu.cfs_quota_us / cpu.cfs_period_us, -1 meaning unlimited."""
    root = tmp_path / "cgroup"
    _v1(root, "/", quota, period)
    proc = _proc(tmp_path, "12:memory:/\n4:cpu,cpuacct:/\n0::/\n")
    assert cgroup_cpu_limit(root, proc) == expected


def test_v1_controller_mounted_as_plain_cpu(tmp_path: Path) -> None:
    """Some hosts mount the controller at cpu/ although /proc names it cpu,cpuacct."""
    root = tmp_path / "cgroup"
    _v1(root, "/docker/abc", "300000", mount="cpu")
    proc = _proc(tmp_path, "4:cpu,cpuacct:/docker/abc\n")
    assert cgroup_cpu_limit(root, proc) == 3.0


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    """Nothing mounted (or not Linux): no limit, so the affinity count stands."""
    root = tmp_path / "empty"
    root.mkdir()
    proc = _proc(tmp_path, "0::/\n")
    assert cgroup_cpu_limit(root, proc) is None
    assert available_cpus(root, proc) == AFFINITY


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("50000 100000", 1),      # half a CPU still gets one instance
    ("100000 100000", 1),
    ("150000 100000", 2),     # a fractional quota is rounded up
])
def test_available_cpus_is_capped_by_the_quota(tmp_path: Path, cpu_max: str,
                                               expected: int) -> None:
    """The quota caps the affinity count (this machine has at least as many CPUs)."""
    root = tmp_path / "cgroup"
    _v2(root, "/", cpu_max)
    assert available_cpus(root, _proc(tmp_path, "0::/\n")) == min(expected, AFFINITY)


def test_a_quota_above_the_affinity_does_not_raise_the_count(tmp_path: Path) -> None:
    """64 CPUs of quota on a machine with fewer cores: the cores are the limit."""
    root = tmp_path / "cgroup"
    _v2(root, "/", "6400000 100000")
    assert available_cpus(root, _proc(tmp_path, "0::/\n")) == AFFINITY


def test_workers_auto_means_available_cpus_plus_one() -> None:
    """CONVERTER_WORKERS=auto: this process's real affinity and cgroup, plus the light lane."""
    assert config.load({"CONVERTER_WORKERS": "auto"}).workers == max(2, available_cpus() + 1)
    assert config.load({}).workers == max(2, available_cpus() + 1)
    assert config.load({"CONVERTER_WORKERS": "3"}).workers == 3


def test_http_workers_auto_means_two_per_available_cpu() -> None:
    """CONVERTER_HTTP_WORKERS=auto: two gunicorn workers per CPU this process may use."""
    assert config.load({"CONVERTER_HTTP_WORKERS": "auto"}).http_workers == 2 * available_cpus()
    assert config.load({}).http_workers == 2 * available_cpus()
    assert config.load({"CONVERTER_HTTP_WORKERS": "3"}).http_workers == 3
