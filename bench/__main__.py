"""``python -m bench``: run every benchmark side by side and print (or write) the report."""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.baselines import BareUnoserver, SofficePerDocument
from bench.documents import mixed_batch, select
from bench.load import WRK_MISSING, MinimalAppProcess, wrk_path
from bench.report import Results, render
from bench.service import ServiceUnderTest
from bench.stats import BackgroundWatch, RssSampler, median
from bench.suites import CacheRow, cache_hits, per_document, throughput, warm_up
from converter.engine.allocator import jemalloc_path

REPO = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    """Progress goes to stderr, so stdout is the report alone."""
    print(message, file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        "python -m bench", description="soffice per document, bare unoserver and the "
        "converter service, side by side in one run")
    parser.add_argument("--quick", action="store_true",
                        help="~2 documents per format, one repetition, shorter load runs")
    parser.add_argument("--heavy", action="store_true",
                        help="also convert the heavy files the corpus README lists")
    parser.add_argument("--out", type=Path,
                        help="write the report to this file (e.g. BENCHMARKS.md) as well")
    parser.add_argument("--per-format", type=int, help="documents per format (default 5, 2)")
    parser.add_argument("--reps", type=int, help="repetitions per document (default 3, 1)")
    parser.add_argument("--batch", type=int, help="documents in the throughput batch (24, 12)")
    parser.add_argument("--rounds", type=int,
                        help="rounds of the throughput and cache-hit runs, median shown (3, 1)")
    parser.add_argument("--load-seconds", type=float, help="seconds per wrk run (8, 3)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to SECONDS for other LibreOffice processes on the "
                        "machine (someone's tests) to finish")
    return parser.parse_args(argv)


def _parallel(*starts: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def call(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(fn,)) for fn in starts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _engine_note(service: ServiceUnderTest) -> str:
    metrics = service.metrics()
    restarts = {k.split('"')[1]: int(v) for k, v in metrics.items()
                if k.startswith("converter_engine_restarts_total{")}
    per_instance = {k.split('"')[1]: int(v) for k, v in metrics.items()
                    if k.startswith("converter_engine_instance_conversions{")}
    calls = int(metrics.get("converter_engine_calls_total", 0))
    hits = int(metrics.get("converter_cache_hits_total", 0))
    return (f"{calls} engine calls, {hits} cache hits, conversions per instance "
            f"{per_instance}, instance (re)starts by reason {restarts or 'none'}")


def run(args: argparse.Namespace, command: str) -> Results:
    """Start every system, measure, stop them; return the results."""
    quick = args.quick
    per_format = args.per_format or (2 if quick else 5)
    reps = args.reps or (1 if quick else 3)
    batch_size = args.batch or (12 if quick else 24)
    load_seconds = args.load_seconds or (3.0 if quick else 8.0)
    rounds = args.rounds or (1 if quick else 3)
    docs = select(per_format, heavy=args.heavy)
    batch = mixed_batch(docs, batch_size)
    started_at = datetime.now(UTC)
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="converter-bench-"))
    # The references get the malloc the service's LibreOffice runs with (jemalloc when
    # installed): deployed as well as they can be. Plain unoserver, as installed, is
    # measured beside them in the throughput batch.
    preload = jemalloc_path()
    soffice = SofficePerDocument(root / "soffice", preload)
    uno = BareUnoserver(root / "unoserver", preload)
    plain = BareUnoserver(root / "unoserver-glibc") if preload else None
    service = ServiceUnderTest(root)
    minimal = MinimalAppProcess(root)
    watch = BackgroundWatch()
    cache: list[CacheRow] = []
    cache_note = ""
    if args.wait_quiet > 0 and not watch.wait_quiet(args.wait_quiet, log=log):
        log("the machine did not become quiet; measuring anyway (see Background in the report)")
    log(f"bench: {len(docs)} documents, {reps} repetition(s), batch of {len(batch)}; "
        f"scratch in {root}")
    try:
        log("starting soffice profile, bare unoserver and the service (2 instances)...")
        _parallel(soffice.prepare, uno.start, service.start,
                  *([plain.start] if plain else []))
        watch.start()
        warm_up(docs, uno, service, plain)
        info_s = median(uno.info_seconds())
        with RssSampler(uno.marker, 0.25) as uno_rss, \
                RssSampler(service.marker, 0.25) as service_rss:
            log("1-3. one document at a time:")
            rows = per_document(docs, soffice, uno, service, reps, log)
            log("4. throughput:")
            batch_rows = throughput(batch, [1, 2, 4, 8], uno, service, rounds, log, plain)
        if wrk_path() is None:
            cache_note = WRK_MISSING
            log(WRK_MISSING)
        else:
            log("cache hits:")
            minimal.start()
            smallest = min(docs, key=lambda d: d.size)
            file_id = service.cached_file(smallest)
            cache = cache_hits(service, file_id, minimal, [1, 32], load_seconds, rounds, log)
        engine_note = _engine_note(service)
    finally:
        watch.stop()
        for stop in (minimal.stop, service.stop, uno.stop, *([plain.stop] if plain else [])):
            try:
                stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping: {exc}")
        shutil.rmtree(root, ignore_errors=True)
    mode = ("quick" if quick else "full") + (" with heavy files" if args.heavy else "") + (
        f": {per_format} documents per format, {reps} repetition(s) each")
    return Results(
        command=command, mode=mode, started=started_at, seconds=time.monotonic() - started,
        rows=rows, reps=reps, batch=batch_rows, batch_size=len(batch), cache=cache,
        cache_note=cache_note,
        rss_mib={"soffice": (soffice.peak_rss_kib / 1024, soffice.peak_rss_kib / 1024),
                 "unoserver": (uno_rss.peak_process_mib, uno_rss.peak_total_mib),
                 "service": (service_rss.peak_process_mib, service_rss.peak_total_mib)},
        background=watch.summary(), engine_note=engine_note, unoserver_info_s=info_s)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = _parse(argv)
    command = ".venv/bin/python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    results = run(args, command.strip())
    report = render(results)
    print(report)
    if args.out:
        out = args.out if args.out.is_absolute() else Path.cwd() / args.out
        out.write_text(report, encoding="utf-8")
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
