"""``python -m bench.cache_hits``: the cache-hit load alone, service beside its floor.

Starts the real default service (`converter serve`: an engine process and
CONVERTER_HTTP_WORKERS gunicorn workers) and the minimal app (gunicorn -w <cores>
sync workers), caches one small document, then drives both with wrk at 1 and 32
connections, alternating, in one run, and prints the table with their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.documents import select
from bench.load import WRK_MISSING, MinimalAppProcess, wrk_path
from bench.report import cache_table
from bench.service import ServiceUnderTest
from bench.suites import cache_hits
from converter.cpus import available_cpus


def log(message: str) -> None:
    """Progress on stderr, so stdout holds only the table."""
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Measure and print the cache-hit table."""
    parser = argparse.ArgumentParser("bench.cache_hits")
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per wrk run (8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, median shown (3)")
    args = parser.parse_args(argv)
    if wrk_path() is None:
        print(WRK_MISSING, file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="converter-cache-bench-"))
    service = ServiceUnderTest(root)
    minimal = MinimalAppProcess(root)
    started = time.monotonic()
    try:
        service.start()
        minimal.start()
        smallest = min(select(1, heavy=False), key=lambda d: d.size)
        file_id = service.cached_file(smallest)
        rows = cache_hits(service, file_id, minimal, [1, 32], args.seconds, args.rounds, log)
    finally:
        for stop in (minimal.stop, service.stop):
            try:
                stop()
            except Exception as exc:  # keep stopping the other
                log(f"stopping: {exc}")
        shutil.rmtree(root, ignore_errors=True)
    print(f"Cache hits on {available_cpus()} CPUs, {args.rounds} rounds of "
          f"{args.seconds:g} s, measured in {time.monotonic() - started:.0f} s:\n")
    print("\n".join(cache_table(rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
