"""``python -m bench.noisy_neighbour``: one workspace floods the engine, another converts.

Workspace A keeps 12 heavy conversions in flight (a large odp, ppt and xls from the
corpus, fresh uploads by a new user each so every one is a cache miss) for a fixed time;
workspace B converts a small docx 5 times, spread over the flood, each a fresh
upload. The same scenario runs against one served app per mode, side by side in one
run: plain FIFO (CONVERTER_ENGINE_SCHEDULER=fifo, instances handed out in strict
arrival order) with one instance per CPU and with one per CPU plus one (the pool the
fair mode gets), and the fair scheduler with its defaults (heavy work never takes the
last idle instance). A's throughput is compared with the better of the two FIFO runs:
the reference deployed as well as it can be. Prints a table; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.stats import median, percentile, ratio
from converter import config
from converter.cpus import available_cpus
from converter.db.engine import connect
from converter.service.keys import KeyStore
from tests.support.served import ServedApp

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
# Large by bytes (what the cost estimate sees) and a few seconds each on a busy 2-core
# machine, so a run stays within minutes.
HEAVY = ["odp/2023_-_LibreOffice_Conference_Bukarest_-_ODF_and_its_Toolkit.odp",
         "ppt/37625.ppt", "xls/12843-1.xls"]
SMALL = "docx/SampleDoc.docx"
FLOODERS = 12


@dataclass(frozen=True)
class Mode:
    """One deployment of the service under the scenario."""

    name: str
    env: dict[str, str]
    instances: int


@dataclass
class Outcome:
    """What one mode measured."""

    mode: str
    idle: list[float] = field(default_factory=list)
    flood: list[float] = field(default_factory=list)
    a_done: list[float] = field(default_factory=list)  # completion times since flood start
    a_errors: int = 0
    duration: float = 0.0

    @property
    def a_per_minute(self) -> float:
        """A's conversions completed during the flood, per minute."""
        return 60.0 * len(self.a_done) / self.duration if self.duration else float("nan")


def log(message: str) -> None:
    """Progress to stderr, so stdout is the table alone."""
    print(message, file=sys.stderr, flush=True)


def _convert(app: ServedApp, workspace: str, path: Path) -> float:
    """Upload path as a new user of workspace (a cache miss) and time its conversion to PDF."""
    # A new owner each time: the content cache answers the same bytes of one owner.
    store = KeyStore(connect(f"sqlite:///{app.data_dir / 'converter.db'}"))
    try:
        key = store.create(workspace, f"user-{secrets.token_hex(6)}")[1]
    finally:
        store.db.dispose()
    file_id = app.upload_ok(path, key=key)["id"]
    started = time.monotonic()
    response = app.convert(file_id, "pdf", key=key)
    elapsed = time.monotonic() - started
    if response.status_code != 200:
        raise RuntimeError(f"{path.name}: {response.status_code} {response.text[:200]}")
    return elapsed


def run_mode(mode: Mode, root: Path, duration: float, b_runs: int) -> Outcome:
    """Start a served app in this mode and play the scenario against it."""
    env = {"CONVERTER_REQUESTS_PER_MINUTE": "1000000000", "CONVERTER_RECYCLE_AFTER": "100000",
           "CONVERTER_CONVERSION_TIMEOUT": "600", **mode.env,
           "CONVERTER_WORKERS": str(mode.instances)}
    slug = "".join(c if c.isalnum() else "-" for c in mode.name)
    app = ServedApp(root / slug, env=env, workers=mode.instances).start()
    outcome = Outcome(mode.name)
    try:
        key_a, key_b = "bench-a", "bench-b"  # workspaces: each conversion a user of its own
        small = CORPUS / SMALL
        _convert(app, key_b, small)  # warm-up: first loads of the Writer import filter
        outcome.idle = [_convert(app, key_b, small) for _ in range(b_runs)]
        log(f"{mode.name}: B idle {median(outcome.idle):.3f}s")
        stop = threading.Event()
        start = time.monotonic()
        lock = threading.Lock()

        def flood(index: int) -> None:
            path = CORPUS / HEAVY[index % len(HEAVY)]
            while not stop.is_set():
                try:
                    _convert(app, key_a, path)
                except Exception:  # counted; the scenario goes on
                    with lock:
                        outcome.a_errors += 1
                    continue
                done = time.monotonic() - start
                if done <= duration:
                    with lock:
                        outcome.a_done.append(done)

        threads = [threading.Thread(target=flood, args=(i,), daemon=True)
                   for i in range(FLOODERS)]
        for thread in threads:
            thread.start()
        # B's conversions are spread over the flood, after it has filled the queue.
        spacing = (duration * 0.8) / b_runs
        for index in range(b_runs):
            time.sleep(max(0.0, start + duration * 0.1 + index * spacing - time.monotonic()))
            outcome.flood.append(_convert(app, key_b, small))
            log(f"{mode.name}: B under flood {outcome.flood[-1]:.2f}s")
        time.sleep(max(0.0, start + duration - time.monotonic()))
        outcome.duration = duration
        stop.set()
        log(f"{mode.name}: A {len(outcome.a_done)} done in {duration:.0f}s, "
            f"{outcome.a_errors} errors")
    finally:
        app.stop()  # A's conversions still in flight end with the server
    return outcome


def reference(outcomes: list[Outcome]) -> Outcome:
    """The FIFO run that gave A the most throughput (the first mode if none is FIFO)."""
    fifo = [o for o in outcomes if o.mode.startswith("fifo")]
    return max(fifo, key=lambda o: o.a_per_minute) if fifo else outcomes[0]


def render(outcomes: list[Outcome]) -> str:
    """The side-by-side table, with ratios against idle (B) and against the best FIFO (A)."""
    best = reference(outcomes)
    lines = ["| mode | B idle p50 s | B flood p50 s | B flood p95 s | B p95 / idle | "
             "A docs/min | A vs best fifo |", "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        idle = median(o.idle)
        p95 = percentile(o.flood, 95)
        lines.append(
            f"| {o.mode} | {idle:.3f} | {median(o.flood):.2f} | {p95:.2f} | "
            f"{ratio(p95, idle):.1f}x | {o.a_per_minute:.1f} | "
            f"{ratio(o.a_per_minute, best.a_per_minute):.2f}x |")
    lines.append("")
    lines.append(f"A vs best fifo: against {best.mode}, the FIFO run in which A completed most.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run every mode side by side and print the table."""
    parser = argparse.ArgumentParser("python -m bench.noisy_neighbour", description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds A floods per mode (default 60)")
    parser.add_argument("--b-runs", type=int, default=5, help="B's conversions (default 5)")
    args = parser.parse_args(argv)
    cpus = available_cpus()
    # What CONVERTER_WORKERS=auto gives (one per CPU plus one), read from the one definition.
    plus_one = config.load({"CONVERTER_WORKERS": "auto"}).workers
    modes = [Mode(f"fifo, {cpus} instances", {"CONVERTER_ENGINE_SCHEDULER": "fifo"}, cpus),
             Mode(f"fifo, {plus_one} instances", {"CONVERTER_ENGINE_SCHEDULER": "fifo"},
                  plus_one),
             Mode(f"fair, {plus_one} instances (default)", {"CONVERTER_ENGINE_SCHEDULER": "fair"},
                  plus_one)]
    with tempfile.TemporaryDirectory(prefix="bench-noisy-") as tmp:
        outcomes = [run_mode(mode, Path(tmp), args.duration, args.b_runs) for mode in modes]
    print(f"noisy neighbour on {cpus} CPUs: A keeps {FLOODERS} heavy conversions in flight for "
          f"{args.duration:.0f}s ({', '.join(HEAVY)}); B converts {SMALL} {args.b_runs} times; "
          f"pools of {cpus} (one instance per CPU) and {plus_one} (one per CPU plus one, "
          "CONVERTER_WORKERS=auto) instances")
    print(render(outcomes))


if __name__ == "__main__":
    main()
