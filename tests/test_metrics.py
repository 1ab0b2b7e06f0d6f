"""Prometheus metrics over served apps: every family moves as the traffic says, across processes."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from converter import metrics_files
from tests.support.served import REPO, ServedApp, scrape, total
from tests.test_runs import create_ok, wait_run

CONVERT_ROUTE = "/v1/files/<file_id>/convert"


@pytest.mark.engine
def test_conversions_cache_http_and_runs_are_counted(service: ServedApp, corpus: Path) -> None:
    """Two converts (a miss, a hit), a corrupt document, a run and a stray path, in /metrics."""
    # An owner of its own: other tests' uploads of these bytes are not in its content cache.
    key = service.create_key("metrics", "counted-" + os.urandom(4).hex())
    before = service.scrape()
    file_id = service.upload_ok(corpus / "docx/SampleDoc.docx", key=key)["id"]
    assert service.convert(file_id, "pdf", key=key).json()["cached"] is False
    assert service.convert(file_id, "pdf", key=key).json()["cached"] is True
    bad_id = service.upload_ok(corpus / "bad/xlsx-corrupted.xlsx", key=key)["id"]
    assert service.convert(bad_id, "pdf", key=key).status_code == 422
    run_id = create_ok(service, file_id, "txt", key=key)
    assert wait_run(service, run_id, key=key)["status"] == "completed"
    assert requests.get(f"{service.url}/no/such/{file_id}", timeout=10).status_code == 404
    after = service.scrape()

    def delta(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert delta("converter_conversions_total", source="docx", target="pdf", outcome="ok") == 2
    assert delta("converter_conversions_total", source="xlsx", target="pdf",
                 outcome="unprocessable_document") == 1
    assert delta("converter_conversions_total", source="docx", target="txt", outcome="ok") == 1
    assert delta("converter_cache_hits_total") == 1
    assert delta("converter_cache_misses_total") == 3
    assert delta("converter_engine_calls_total") == 3
    assert delta("converter_conversion_duration_seconds_count", source="docx", target="pdf") == 1
    assert delta("converter_conversion_duration_seconds_count", source="docx", target="txt") == 1
    assert delta("converter_conversion_duration_seconds_sum", source="docx", target="pdf") > 0
    assert delta("converter_engine_queue_wait_seconds_count") >= 3

    assert delta("converter_http_requests_total", route=CONVERT_ROUTE, method="POST",
                 status="200") == 2
    assert delta("converter_http_requests_total", route=CONVERT_ROUTE, method="POST",
                 status="422") == 1
    assert delta("converter_http_requests_total", route="/v1/files", method="POST",
                 status="201") == 2
    assert delta("converter_http_requests_total", route="<unmatched>", method="GET",
                 status="404") == 1
    assert delta("converter_http_request_duration_seconds_count", route=CONVERT_ROUTE,
                 method="POST") == 3
    # Route templates only: no id ever becomes a label value.
    assert not [s for s in after if file_id in json.dumps(s.labels)]

    assert delta("converter_runs_total", status="pending") == 1
    assert delta("converter_runs_total", status="running") == 1
    assert delta("converter_runs_total", status="completed") == 1
    assert total(after, "converter_engine_instances") == 2
    assert total(after, "converter_engine_busy") == 0
    rss = [s for s in after if s.name == "converter_engine_instance_rss_megabytes"]
    assert len(rss) == 2 and all(s.value > 10 for s in rss), rss


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _log_records(path: Path) -> list[dict[str, object]]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def _metrics_dir_of(pid: int) -> Path:
    """The PROMETHEUS_MULTIPROC_DIR a process of the service runs with."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    values = [e.split(b"=", 1)[1] for e in environ if e.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    assert values, f"process {pid} has no PROMETHEUS_MULTIPROC_DIR"
    return Path(values[0].decode())


@pytest.mark.engine
def test_figures_add_up_across_worker_processes(serve: type[ServedApp], corpus: Path) -> None:
    """The default server (an engine process, two HTTP workers): any worker's /metrics counts
    every worker's requests, the engine's gauges come from the engine process once, and a
    killed worker's or engine's live gauges are dropped while counts are kept."""
    app = serve(workers=1, http_workers=2,
                env={"CONVERTER_RUN_WORKERS": "0", "CONVERTER_LOG_FORMAT": "json",
                     "CONVERTER_LOG_LEVEL": "INFO"}).start()
    url = app.url
    workers = app.http_worker_pids()
    assert len(workers) == 2, workers
    base = total(scrape(url), "converter_http_requests_total", route="/healthz")

    def serving_pids() -> set[int]:
        return {int(str(r["pid"])) for r in _log_records(app.log_path)
                if r.get("logger") == "converter.http" and r.get("route") == "/healthz"}

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while len(serving_pids()) < 2 and sent < 800:
            codes = list(pool.map(
                lambda _: requests.get(f"{url}/healthz", timeout=10).status_code, range(40)))
            assert codes == [200] * 40
            sent += 40
    pids = serving_pids()
    assert pids == set(workers), f"not every worker served ({sent} requests): {pids}"

    file_id = app.upload_ok(corpus / "docx/SampleDoc.docx")["id"]
    assert app.convert(file_id, "pdf").status_code == 200
    expected = base + sent
    for _ in range(8):  # each scrape is answered by whichever worker accepts it
        samples = scrape(url)
        assert total(samples, "converter_http_requests_total", route="/healthz",
                     status="200") == expected
        # One pool for the host, reported by the engine process, not once per worker.
        assert total(samples, "converter_engine_instances") == 1
        assert total(samples, "converter_engine_conversions_total") == 1
        assert total(samples, "converter_engine_calls_total") == 1

    metrics_dir = _metrics_dir_of(min(workers))
    # Memory-mapped files must not live on the data disk: a full one is SIGBUS, not a 507.
    assert not metrics_dir.is_relative_to(app.data_dir), metrics_dir
    victim = min(workers)
    assert (metrics_dir / f"gauge_livesum_{victim}.db").exists()
    os.kill(victim, signal.SIGKILL)
    _wait(lambda: not (metrics_dir / f"gauge_livesum_{victim}.db").exists(), 30,
          "the master did not mark the killed worker dead")
    _wait(lambda: len(app.http_worker_pids()) == 2, 30, "gunicorn did not replace the worker")
    assert (metrics_dir / f"counter_{victim}.db").exists()
    for _ in range(10):
        assert requests.get(f"{url}/healthz", timeout=10).status_code == 200
    for _ in range(4):
        samples = scrape(url)
        assert total(samples, "converter_http_requests_total", route="/healthz",
                     status="200") == expected + 10
        assert total(samples, "converter_engine_instances") == 1

    engine = app.engine_pid()
    assert engine is not None and (metrics_dir / f"gauge_livesum_{engine}.db").exists()
    os.kill(engine, signal.SIGKILL)
    _wait(lambda: not (metrics_dir / f"gauge_livesum_{engine}.db").exists(), 30,
          "the supervisor did not forget the killed engine's gauges")
    _wait(lambda: requests.get(f"{url}/readyz", timeout=10).status_code == 200, 120,
          "the engine did not come back")
    samples = scrape(url)
    assert total(samples, "converter_engine_instances") == 1
    # The dead engine's counts are kept: the conversion it made still counts.
    assert total(samples, "converter_engine_conversions_total") == 1

    assert app.stop() == 0
    assert not metrics_dir.exists(), "a stopped service left its metrics files in memory"


def test_metrics_made_before_the_directory_is_set_are_refused() -> None:
    """Serving after converter.metrics was imported would count per worker: it stops instead."""
    before = set(metrics_files.memory_dir().glob(f"{metrics_files.PREFIX}*"))
    script = ("import converter.metrics\n"
              "from converter import metrics_files\n"
              "metrics_files.prepare()\n")
    env = {k: v for k, v in os.environ.items() if k != metrics_files.MULTIPROC_ENV}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and metrics_files.MULTIPROC_ENV in done.stderr, done.stderr
    assert set(metrics_files.memory_dir().glob(f"{metrics_files.PREFIX}*")) <= before


def test_leftover_metrics_directories_of_dead_services_are_swept(tmp_path: Path) -> None:
    """A service killed with -9 left its directory: the next start removes it, no live one's.

    Alive means its lock is held: here by an open file of this process, as a service in
    another pid namespace would hold it, with no pid this process could see."""
    made = {name: tmp_path / f"{metrics_files.PREFIX}{name}"
            for name in ("live", "killed", "no_lock")}
    for path in made.values():
        path.mkdir()
        (path / "counter_1.db").write_bytes(b"x")
    for name in ("live", "killed"):
        (made[name] / metrics_files.OWNER_LOCK).touch()
    live_fd = os.open(made["live"] / metrics_files.OWNER_LOCK, os.O_RDWR)
    fcntl.flock(live_fd, fcntl.LOCK_EX)
    unrelated = tmp_path / "PostgreSQL.1234"
    unrelated.write_bytes(b"")
    try:
        removed = metrics_files.sweep_leftovers(tmp_path)
    finally:
        os.close(live_fd)

    # Without a lock file nothing proves the owner dead (another version's, say): kept.
    assert removed == [made["killed"]]
    assert made["live"].exists() and made["no_lock"].exists() and unrelated.exists()
    assert not made["killed"].exists()


def test_a_running_service_keeps_its_directory_and_a_killed_one_loses_it(
        tmp_path: Path) -> None:
    """prepare() in another process: swept only once that process is gone (kill -9).

    In tmp_path, not /dev/shm: a sweep there could remove what a service of another
    version on this machine keeps there."""
    script = ("import sys, time\nfrom pathlib import Path\nfrom converter import metrics_files\n"
              f"print(metrics_files.prepare(Path({str(tmp_path)!r})), flush=True)\n"
              "time.sleep(60)\n")
    env = {k: v for k, v in os.environ.items() if k != metrics_files.MULTIPROC_ENV}
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        path = Path(owner.stdout.readline().strip())
        assert path.parent == tmp_path and path.is_dir(), path
        assert path not in metrics_files.sweep_leftovers(path.parent)
        assert path.is_dir()
    finally:
        owner.kill()
        owner.wait(timeout=10)
    assert path in metrics_files.sweep_leftovers(path.parent)
    assert not path.exists()
