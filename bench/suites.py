"""The measurements: per document, throughput under concurrency, and cache-hit load."""

from __future__ import annotations

import math
import queue
import re
import threading
import time
import xmlrpc.client
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from bench.baselines import BareUnoserver, ConversionFailed, SofficePerDocument
from bench.documents import Doc
from bench.load import LoadResult, MinimalAppProcess, run_wrk
from bench.service import ServiceError, ServiceUnderTest
from bench.stats import median, percentile

T = TypeVar("T")
# What one failed conversion may raise; recorded and reported, never fatal to the run.
FAILURES = (ConversionFailed, ServiceError, OSError, xmlrpc.client.Error)
Log = Callable[[str], None]


@dataclass
class DocRow:
    """One document through the three systems (seconds; NaN where it failed)."""

    doc: Doc
    soffice: float = math.nan
    unoserver: float = math.nan
    service_total: float = math.nan
    service_convert: float = math.nan
    service_upload: float = math.nan
    service_download: float = math.nan
    errors: list[str] = field(default_factory=list)


def _attempt(row: DocRow, what: str, fn: Callable[[], T]) -> T | None:
    try:
        return fn()
    except FAILURES as exc:
        # Object addresses differ between repetitions of the same failure.
        text = re.sub(r" at 0x[0-9a-f]+", "", str(exc).splitlines()[0] if str(exc) else repr(exc))
        message = f"{what}: {text[:160]}"
        if message not in row.errors:  # the same failure on every repetition, once
            row.errors.append(message)
        return None


def warm_up(docs: list[Doc], uno: BareUnoserver, service: ServiceUnderTest,
            plain: BareUnoserver | None = None) -> None:
    """One conversion per family on each unoserver, and on each instance of the pool."""
    first: dict[str, Doc] = {}
    for doc in sorted(docs, key=lambda d: d.size):
        first.setdefault(doc.family, doc)
    for doc in first.values():
        uno.convert(doc)
        if plain is not None:
            plain.convert(doc)
        # As many at once as the pool has instances, so every instance gets one.
        with ThreadPoolExecutor(service.workers) as pool:
            list(pool.map(service.cold, [doc] * service.workers))


def per_document(docs: list[Doc], soffice: SofficePerDocument, uno: BareUnoserver,
                 service: ServiceUnderTest, reps: int, log: Log) -> list[DocRow]:
    """Each document through unoserver and the service (reps each, interleaved), then soffice.

    Interleaving per document puts the same background noise on both sides of
    every ratio; the per-document figure is the median of the repetitions.
    """
    rows = []
    for i, doc in enumerate(docs, 1):
        row = DocRow(doc)
        uno_times: list[float] = []
        cold: list[tuple[float, float, float, float]] = []
        for _ in range(reps):
            took = _attempt(row, "unoserver", partial(uno.convert, doc))
            if took is not None:
                uno_times.append(took)
            timing = _attempt(row, "service", partial(service.cold, doc))
            if timing is not None:
                cold.append((timing.total, timing.convert, timing.upload, timing.download))
        row.unoserver = median(uno_times)
        if cold:
            row.service_total, row.service_convert, row.service_upload, row.service_download = (
                median([c[k] for c in cold]) for k in range(4))
        took = _attempt(row, "soffice", partial(soffice.convert, doc))
        row.soffice = took if took is not None else math.nan
        rows.append(row)
        log(f"  [{i}/{len(docs)}] {doc.name}: soffice {row.soffice:.2f}s, unoserver "
            f"{row.unoserver:.3f}s, service {row.service_total:.3f}s"
            + (f"  ({'; '.join(row.errors)})" if row.errors else ""))
    return rows


@dataclass
class BatchRow:
    """One batch of conversions by N concurrent clients."""

    system: str
    clients: int
    documents: int
    wall: float
    latencies: list[float]
    errors: int
    rounds: int = 1

    @property
    def docs_per_second(self) -> float:
        """Successful conversions per second of wall time."""
        return len(self.latencies) / self.wall if self.wall else math.nan

    @property
    def p50(self) -> float:
        """Median latency of one conversion (seconds)."""
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        """99th-percentile latency (seconds)."""
        return percentile(self.latencies, 99)


def run_batch(system: str, items: list[T], convert: Callable[[T], float],
              clients: int) -> BatchRow:
    """Convert every item with N client threads pulling from one queue."""
    work: queue.Queue[T] = queue.Queue()
    for item in items:
        work.put(item)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def client() -> None:
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            try:
                took = convert(item)
            except FAILURES:
                with lock:
                    errors[0] += 1
                continue
            with lock:
                latencies.append(took)

    threads = [threading.Thread(target=client, name=f"client-{i}") for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return BatchRow(system, clients, len(items), time.perf_counter() - started, latencies,
                    errors[0])


def _middle(rows: list[BatchRow]) -> BatchRow:
    ordered = sorted(rows, key=lambda r: r.docs_per_second)
    middle = ordered[len(ordered) // 2]
    middle.rounds = len(rows)
    return middle


# The batch system name of unoserver as installed, beside the reference "unoserver".
PLAIN = "unoserver glibc"


def throughput(batch: list[Doc], levels: list[int], uno: BareUnoserver,
               service: ServiceUnderTest, rounds: int, log: Log,
               plain: BareUnoserver | None = None) -> list[BatchRow]:
    """The same mixed batch at each concurrency level: single unoserver, then the pool.

    plain, when given, is unoserver exactly as installed (glibc's malloc), measured
    too, as PLAIN, so the table shows what the reference's allocator is worth.

    The service's files are uploaded fresh before each timed batch, so the cache
    never answers and the upload is not part of the timing. With several rounds
    (all levels, then all levels again) the median round of each is reported, so
    a burst of other work on the machine moves one round, not the result.
    """
    runs: dict[tuple[str, int], list[BatchRow]] = {}
    for round_no in range(1, rounds + 1):
        for clients in levels:
            single = run_batch("unoserver", batch, uno.convert, clients)
            if plain is not None:
                runs.setdefault((PLAIN, clients), []).append(
                    run_batch(PLAIN, batch, plain.convert, clients))
            with ThreadPoolExecutor(4) as pool:
                file_ids = [fid for fid, _ in pool.map(service.upload, batch)]
            pooled = run_batch("service", file_ids, service.convert_uploaded, clients)
            runs.setdefault(("unoserver", clients), []).append(single)
            runs.setdefault(("service", clients), []).append(pooled)
            log(f"  round {round_no}, {clients} clients: unoserver "
                f"{single.docs_per_second:.2f} docs/s, pool {pooled.docs_per_second:.2f} "
                f"docs/s (x{pooled.docs_per_second / single.docs_per_second:.2f})")
    return [_middle(rows) for rows in runs.values()]


@dataclass(frozen=True)
class CacheRow:
    """The median (by requests/s) of several wrk runs of one system at one concurrency."""

    system: str
    connections: int
    result: LoadResult
    runs: int


def cache_hits(service: ServiceUnderTest, file_id: str, minimal: MinimalAppProcess,
               levels: list[int], duration: float, rounds: int, log: Log) -> list[CacheRow]:
    """wrk against the service's cache hit and the minimal app, alternating, per level."""
    service_url = f"{service.url}/v1/files/{file_id}/convert"
    targets = {"service": (service_url, service.key_for(file_id)),
               "minimal app": (minimal.convert_url, "sk_live_minimal_app_bench")}
    for url, key in targets.values():  # warm the connections, caches and code paths
        run_wrk(url, key, max(levels), 1)
    rows = []
    for connections in levels:
        runs: dict[str, list[LoadResult]] = {name: [] for name in targets}
        for _ in range(rounds):
            for name, (url, key) in targets.items():
                runs[name].append(run_wrk(url, key, connections, duration))
        for name, results in runs.items():
            ordered = sorted(results, key=lambda r: r.rps)
            mid = ordered[len(ordered) // 2]
            rows.append(CacheRow(name, connections, mid, len(results)))
            log(f"  {name}, {connections} connections: {mid.rps:,.0f} req/s, "
                f"p50 {mid.p50_ms:.2f} ms, p99 {mid.p99_ms:.2f} ms, errors {mid.errors}")
    return rows
