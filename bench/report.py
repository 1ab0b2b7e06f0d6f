"""Turns the measurements into Markdown: the machine, the tables and the targets."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from bench.documents import FORMATS
from bench.load import WRK_MISSING, wrk_path
from bench.stats import median, percentile, ratio
from bench.suites import PLAIN, BatchRow, CacheRow, DocRow
from converter.engine.allocator import jemalloc_path


@dataclass
class Results:
    """Everything one run measured."""

    command: str
    mode: str
    started: datetime
    seconds: float
    rows: list[DocRow]
    reps: int
    batch: list[BatchRow]
    batch_size: int
    cache: list[CacheRow]
    cache_note: str
    rss_mib: dict[str, tuple[float, float]]  # system -> (peak per process, peak total)
    background: str
    engine_note: str
    unoserver_info_s: float  # median info() round trip of bare unoserver


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def machine() -> list[tuple[str, str]]:
    """What the numbers were measured on."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    wrk = wrk_path()
    return [
        ("CPU", cpu),
        ("Cores", str(os.cpu_count())),
        ("RAM", f"{mem_kib / 2**20:.1f} GiB"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("LibreOffice", _first_line(["soffice", "--version"])),
        ("LibreOffice's malloc", f"jemalloc ({jemalloc_path()}) for the service, bare unoserver "
         "and soffice per document; glibc for `unoserver glibc`" if jemalloc_path()
         else "glibc for every system (libjemalloc2 not installed)"),
        ("Python", platform.python_version()),
        ("unoserver", metadata.version("unoserver")),
        ("gunicorn", metadata.version("gunicorn")),
        ("Flask", metadata.version("flask")),
        ("wrk", _first_line([wrk, "-v"]) if wrk else "not installed"),
    ]


def _s(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.3f}"


def _x(value: float) -> str:
    return "–" if math.isnan(value) else f"×{value:.2f}"


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell (no pipes, no HTML-looking tags)."""
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _table(header: list[str], rows: list[list[str]], numeric: bool = True) -> list[str]:
    """A Markdown table; columns after the first are right-aligned when numeric."""
    align = "---:" if numeric else "---"
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else align for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _doc_ratio(rows: list[DocRow], num: str, den: str) -> float:
    return median([ratio(getattr(r, num), getattr(r, den)) for r in rows
                   if not math.isnan(ratio(getattr(r, num), getattr(r, den)))])


def _col(rows: list[DocRow], name: str) -> list[float]:
    return [v for v in (getattr(r, name) for r in rows) if not math.isnan(v)]


def per_format_table(rows: list[DocRow]) -> list[str]:
    """Per-format medians (seconds) and median per-document ratios."""
    body = []
    groups = [(fmt, [r for r in rows if r.doc.fmt == fmt]) for fmt in FORMATS]
    for label, group in [*groups, ("**all**", rows)]:
        if not group:
            continue
        body.append([label, str(len(group)), _s(median(_col(group, "soffice"))),
                     _s(median(_col(group, "unoserver"))),
                     _s(median(_col(group, "service_total"))),
                     _s(median(_col(group, "service_convert"))),
                     _x(_doc_ratio(group, "service_total", "unoserver")),
                     _x(_doc_ratio(group, "service_convert", "unoserver")),
                     _x(_doc_ratio(group, "soffice", "unoserver")),
                     _x(_doc_ratio(group, "soffice", "service_total"))])
    return _table(["format", "docs", "soffice s", "unoserver s", "service cold s",
                   "service convert-only s", "cold / unoserver", "convert-only / unoserver",
                   "soffice / unoserver", "soffice / service cold"], body)


def latency_table(results: Results) -> list[str]:
    """p50/p99 over the corpus per system, ratios to bare unoserver, and peak RSS."""
    rows = results.rows
    systems = [("soffice per document", "soffice"), ("bare unoserver", "unoserver"),
               ("service cold (upload+convert+download)", "service_total"),
               ("service convert call only", "service_convert")]
    rss_of = {"soffice": "soffice", "unoserver": "unoserver", "service_total": "service",
              "service_convert": "service"}
    body = []
    for label, name in systems:
        values = _col(rows, name)
        peak = results.rss_mib.get(rss_of[name], (math.nan, math.nan))
        body.append([label, str(len(values)), _s(percentile(values, 50)),
                     _s(percentile(values, 99)), _x(_doc_ratio(rows, name, "unoserver")),
                     f"{peak[0]:.0f}" if not math.isnan(peak[0]) else "–",
                     f"{peak[1]:.0f}" if not math.isnan(peak[1]) else "–"])
    return _table(["system", "docs", "p50 s", "p99 s", "median ratio to unoserver",
                   "peak RSS per soffice.bin MiB", "peak RSS all soffice.bin MiB"], body)


def breakdown_table(rows: list[DocRow]) -> list[str]:
    """Where the service's cold time goes (medians over the corpus)."""
    parts = [("upload (POST /v1/files)", "service_upload"),
             ("convert (POST /v1/files/{id}/convert)", "service_convert"),
             ("download (GET signed URL)", "service_download"),
             ("total", "service_total")]
    body = [[label, _s(median(_col(rows, name))), _s(percentile(_col(rows, name), 99))]
            for label, name in parts]
    return _table(["service step", "median s", "p99 s"], body)


def documents_table(rows: list[DocRow]) -> list[str]:
    """Every document, every system."""
    body = [[f"`{r.doc.name}`", f"{r.doc.size / 1024:.0f}", _s(r.soffice), _s(r.unoserver),
             _s(r.service_total), _s(r.service_convert),
             _x(ratio(r.service_total, r.unoserver)),
             _cell("; ".join(r.errors))] for r in rows]
    return _table(["document", "KiB", "soffice s", "unoserver s", "service cold s",
                   "convert-only s", "cold / unoserver", "errors"], body)


def throughput_table(rows: list[BatchRow]) -> list[str]:
    """docs/s and latency per concurrency level, pool against one unoserver."""
    body = []
    base = {r.system: r.docs_per_second for r in rows if r.clients == 1}
    has_plain = any(r.system == PLAIN for r in rows)
    for clients in sorted({r.clients for r in rows}):
        single = next(r for r in rows if r.clients == clients and r.system == "unoserver")
        pool = next(r for r in rows if r.clients == clients and r.system == "service")
        plain = next((r for r in rows if r.clients == clients and r.system == PLAIN), None)
        extra = [f"{plain.docs_per_second:.2f}",
                 _x(ratio(pool.docs_per_second, plain.docs_per_second))] if plain else []
        body.append([str(clients), f"{single.docs_per_second:.2f}", _s(single.p50),
                     _s(single.p99), _x(ratio(single.docs_per_second, base.get("unoserver",
                                                                             math.nan))),
                     f"{pool.docs_per_second:.2f}", _s(pool.p50), _s(pool.p99),
                     _x(ratio(pool.docs_per_second, base.get("service", math.nan))),
                     _x(ratio(pool.docs_per_second, single.docs_per_second)), *extra,
                     str(single.errors + pool.errors + (plain.errors if plain else 0))])
    plain_head = ["unoserver glibc docs/s", "pool / unoserver glibc"] if has_plain else []
    return _table(["clients", "unoserver docs/s", "p50 s", "p99 s", "vs its 1 client",
                   "pool docs/s", "p50 s", "p99 s", "vs its 1 client",
                   "pool / unoserver", *plain_head, "errors"], body) + [
        f"Each figure is the median of {max((r.rounds for r in rows), default=1)} round(s) "
        "(every level once per round, unoserver and pool back to back).", ""]


def pool_speedup(rows: list[BatchRow]) -> float:
    """The pool's own parallel speed-up: its best docs/s over its docs/s with one client."""
    one = next((r.docs_per_second for r in rows if r.system == "service" and r.clients == 1),
               math.nan)
    best = max((r.docs_per_second for r in rows if r.system == "service"), default=math.nan)
    return ratio(best, one)


def best_throughput_ratio(rows: list[BatchRow], reference: str = "unoserver") -> float:
    """Peak pool docs/s over peak single-unoserver docs/s, each at its best client count."""
    single = max((r.docs_per_second for r in rows if r.system == reference), default=math.nan)
    pool = max((r.docs_per_second for r in rows if r.system == "service"), default=math.nan)
    return ratio(pool, single)


def cache_table(rows: list[CacheRow]) -> list[str]:
    """Cache-hit requests/s and latency, service against the minimal app."""
    body = []
    for conns in sorted({r.connections for r in rows}):
        minimal = next(r for r in rows if r.connections == conns and r.system == "minimal app")
        for row in (r for r in rows if r.connections == conns):
            res = row.result
            body.append([str(conns), row.system, f"{res.rps:,.0f}", _ms(res.p50_ms),
                         _ms(res.p99_ms), _x(ratio(res.rps, minimal.result.rps)),
                         str(res.errors), str(row.runs)])
    return _table(["clients", "server", "requests/s", "p50 ms", "p99 ms",
                   "requests/s vs minimal app", "errors", "runs (median shown)"], body)


def _cache_at(rows: list[CacheRow], system: str, conns: int) -> CacheRow | None:
    return next((r for r in rows if r.system == system and r.connections == conns), None)


def targets(results: Results) -> list[tuple[str, str, str, str]]:
    """(target, measured, verdict, note) for each target of the issue."""
    rows = results.rows
    cold = _doc_ratio(rows, "service_total", "unoserver")
    soffice = _doc_ratio(rows, "soffice", "service_total")
    pool = best_throughput_ratio(results.batch)

    def verdict(ok: bool, value: float) -> str:
        return "–" if math.isnan(value) else ("PASS" if ok else "MISS")

    out = [
        ("service cold ≤ 1.10 × bare unoserver (median per-document ratio)", _x(cold),
         verdict(cold <= 1.10, cold), "upload + convert + download against bytes over XML-RPC"),
        ("stretch: service cold < 1.0 × bare unoserver", _x(cold), verdict(cold < 1.0, cold),
         "files by path, import filter named"),
        ("≥ 3 × faster than soffice per document (median per-document ratio)", _x(soffice),
         verdict(soffice >= 3.0, soffice), "soffice time / service cold time"),
        ("pool throughput ≥ 2.77 × one unoserver (peak docs/s of each; issue 9)", _x(pool),
         verdict(pool >= 2.77, pool),
         f"unoserver under jemalloc, as the pool's LibreOffice; against unoserver as installed "
         f"(glibc): {_x(best_throughput_ratio(results.batch, PLAIN))}. The pool's own "
         f"speed-up from 1 client to its best is {_x(pool_speedup(results.batch))} (2 cores: "
         "×2.0 is the ceiling for equal work)"),
    ]
    one = _cache_at(results.cache, "service", 1)
    many = _cache_at(results.cache, "service", 32)
    floor = _cache_at(results.cache, "minimal app", 32)
    floor_one = _cache_at(results.cache, "minimal app", 1)
    if one is not None:
        out.append(("cache hit p50 ≤ 1 ms with 1 client", f"{one.result.p50_ms:.2f} ms",
                    verdict(one.result.p50_ms <= 1.0, one.result.p50_ms),
                    f"floor (minimal app): {floor_one.result.p50_ms:.2f} ms"
                    if floor_one is not None else ""))
    if many is not None and floor is not None:
        share = ratio(many.result.rps, floor.result.rps)
        out.append(("cache hits with 32 clients ≥ 0.5 × minimal app requests/s", _x(share),
                    verdict(share >= 0.5, share),
                    f"{many.result.rps:,.0f} vs {floor.result.rps:,.0f} requests/s"))
    if not results.cache:
        out.append(("cache-hit targets", "not measured", "–", results.cache_note))
    return out


def render(results: Results) -> str:
    """The whole report as Markdown."""
    out = ["# Benchmarks", "",
           "Produced by `bench/` in one run: every system below was measured side by side on "
           "the same documents from `../shared/corpus`, so the ratios are the numbers to "
           "read; absolute times depend on the machine.", "",
           "## Machine and run", ""]
    info = machine() + [
        ("Date", results.started.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("Command", f"`{results.command}`"),
        ("Mode", results.mode),
        ("Run time", f"{results.seconds / 60:.1f} min"),
        ("Background", results.background),
    ]
    out += _table(["", ""], [[k, v] for k, v in info], numeric=False)
    out += ["## Targets", ""]
    out += _table(["target", "measured", "verdict", "note"],
                  [list(t) for t in targets(results)], numeric=False)
    out += ["## 1–3. One document at a time", "",
            f"Each document went through bare unoserver and the service {results.reps} "
            "time(s), interleaved (the per-document figure is the median), then through "
            "soffice once. Ratios are medians of per-document ratios. All conversions are "
            "to PDF; the service converted a fresh upload each time, so its cache never "
            "answered. A document a system failed on is left out of that system's figures "
            "(see the errors column at the end).", ""]
    out += per_format_table(results.rows)
    out += ["Latency over the corpus, and peak resident memory of each system's "
            "LibreOffice processes (VmHWM; for soffice per document, the peak of the "
            "largest single run):", ""]
    out += latency_table(results)
    out += ["Where the service's cold time goes:", ""]
    out += breakdown_table(results.rows)
    uno_median = median(_col(results.rows, "unoserver"))
    out += [f"Bare unoserver's client calls `info()` before every conversion; that round trip "
            f"alone takes {results.unoserver_info_s * 1000:.1f} ms (median of 20), "
            f"{100 * ratio(results.unoserver_info_s, uno_median):.0f}% of its median "
            "conversion. The document then travels base64-encoded in XML-RPC both ways, and "
            "LibreOffice detects its type; the service hands LibreOffice a path in its scratch "
            "directory and names the import filter it already detected at upload.", ""]
    out += [f"Engine: {results.engine_note}. Recycling was set out of reach "
            "(CONVERTER_RECYCLE_AFTER) so that a planned restart never falls inside a timed "
            "batch; the service's default restarts each instance after 200 conversions.", "",
            "## 4. Throughput under concurrency", "",
            f"A fixed mixed batch of {results.batch_size} documents, converted by 1, 2, 4 and "
            "8 client threads: one bare unoserver instance (its LibreOffice under jemalloc, as "
            "the service's; `unoserver glibc` is the same unoserver as installed, with glibc's "
            "malloc) against the service's pool at its "
            "default size (CONVERTER_WORKERS=auto: one instance per CPU plus one) "
            "(convert + download per document; files uploaded before the timed batch, fresh "
            "each time so the cache never answers). The benchmark's own client threads run on "
            "the same two cores.", ""]
    out += throughput_table(results.batch)
    out += ["## Cache hits", "",
            "Repeat conversions answered from the cache (`POST /v1/files/{id}/convert`, "
            "`cached: true`; the POST only), driven by `wrk` over keep-alive connections, "
            "against `bench/minimal_app.py` (one SQLite lookup, an HMAC-SHA256 signature, a "
            "JSON reply) deployed as such an app is, on `gunicorn -w <cores>` sync workers, "
            "while the service runs as it ships (an engine process and "
            "CONVERTER_HTTP_WORKERS=auto workers), alternating in the same run. Absolute figures "
            "depend on the machine and on what else runs on it; the ratio to the minimal app, "
            "measured minutes apart on the same cores, is what the target compares.", ""]
    out += cache_table(results.cache) if results.cache else [results.cache_note, ""]
    out += ["## Every document", ""]
    out += documents_table(results.rows)
    return "\n".join(out).rstrip() + "\n"


__all__ = ["Results", "WRK_MISSING", "render", "targets", "machine"]
