"""``python -m bench.features``: one-shot, PNG of every page and the xlsx CSV fast path.

Side by side in one run, on the same documents:
1. one-shot ``POST /v1/convert`` against the two-step API (upload, convert, download) and
   bare unoserver (bytes in, PDF out), median per document;
2. a deck of 20+ slides to PNG with ``pages=all``: time, and peak memory of the processes
   that render (pdftoppm) and of the HTTP worker;
3. xlsx to CSV: the fast path against the LibreOffice path, median per workbook over the
   corpus, with every cell compared as a value.
Every conversion measured is a cache miss: each repetition uses a key of a workspace of
its own, since one-shot caches by content within a workspace.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.baselines import BareUnoserver
from bench.documents import CORPUS, Doc, all_docs, select
from bench.service import ServiceUnderTest
from bench.stats import BackgroundWatch, RssSampler, median, ratio
from tests.support.csv_values import same_value

DECK = "ppt/42486.ppt"  # 33 slides, about a second in LibreOffice


def log(message: str) -> None:
    """Progress goes to stderr, so stdout is the report alone."""
    print(message, file=sys.stderr, flush=True)


class OneShot:
    """POST /v1/convert with a key of its own workspace per repetition (always a miss)."""

    def __init__(self, service: ServiceUnderTest, reps: int) -> None:
        self.service = service
        self.keys = [service.app.create_key(f"bench-rep-{r}-{time.time_ns()}", "bench")
                     for r in range(reps)]
        self.session = requests.Session()

    def convert(self, doc: Doc, rep: int, target: str = "pdf",
                **fields: str) -> tuple[float, requests.Response]:
        """Convert doc; return (seconds, response) after checking it was a miss."""
        data = doc.path.read_bytes()
        started = time.perf_counter()
        response = self.session.post(f"{self.service.url}/v1/convert", timeout=600,
                                     headers={"X-API-Key": self.keys[rep]},
                                     files={"file": (doc.path.name, data)},
                                     data={"format": target, **fields})
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{doc.name}: {response.status_code} {response.text[:200]}")
        if response.headers.get("X-Converter-Cache") != "miss":
            raise RuntimeError(f"{doc.name}: a measured one-shot was answered from the cache")
        return elapsed, response


def oneshot_table(docs: list[Doc], uno: BareUnoserver, service: ServiceUnderTest,
                  oneshot: OneShot, reps: int) -> list[str]:
    """Median per document of bare unoserver, the two-step API and one-shot."""
    lines = ["| document | bare unoserver s | two-step s | one-shot s | one-shot / unoserver |",
             "|---|---|---|---|---|"]
    ratios, two_step_ratios = [], []
    for doc in docs:
        times: dict[str, list[float]] = {"uno": [], "two": [], "one": []}
        for rep in range(reps):
            # Rotate the order so no system always runs on a cache-warm disk first.
            order = ["uno", "two", "one"]
            for name in order[rep % 3:] + order[:rep % 3]:
                if name == "uno":
                    times[name].append(uno.convert(doc))
                elif name == "two":
                    times[name].append(service.cold(doc).total)
                else:
                    times[name].append(oneshot.convert(doc, rep)[0])
        uno_s, two_s, one_s = (median(times[k]) for k in ("uno", "two", "one"))
        ratios.append(ratio(one_s, uno_s))
        two_step_ratios.append(ratio(two_s, uno_s))
        lines.append(f"| {doc.name} | {uno_s:.3f} | {two_s:.3f} | {one_s:.3f} | "
                     f"×{ratios[-1]:.2f} |")
        log(f"  {doc.name}: unoserver {uno_s:.3f}s two-step {two_s:.3f}s one-shot {one_s:.3f}s")
    lines.append(f"| **median of per-document ratios** | | ×{median(two_step_ratios):.2f} "
                 f"(two-step / unoserver) | | **×{median(ratios):.2f}** |")
    return lines


def _worker_hwm_kib(service: ServiceUnderTest) -> int:
    assert service.app.proc is not None
    pid = service.app.proc.pid
    total = 0
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total = max(total, int(line.split()[1]))
    return total


def png_table(service: ServiceUnderTest, oneshot: OneShot, reps: int) -> list[str]:
    """pages=all on a 33-slide deck: cold (the PDF is made too), then from the cached PDF."""
    deck = next(d for d in all_docs() if d.name == DECK)
    lines = ["| run | pages | seconds | peak RSS of pdftoppm MiB | HTTP worker peak RSS "
             "growth MiB | ZIP MiB |", "|---|---|---|---|---|---|"]
    for rep in range(reps):
        # A fresh workspace: PDF and pages are made. Then another dpi in the same
        # workspace: the cached PDF is drawn again, with no LibreOffice call.
        for run, dpi in (("cold: PDF made, pages drawn at 150 dpi", "150"),
                         ("PDF cached: pages drawn at 149 dpi", "149")):
            before = _worker_hwm_kib(service)
            with RssSampler(service.marker, 0.02, program="pdftoppm") as drawing:
                seconds, response = oneshot.convert(deck, rep, "png", pages="all", dpi=dpi)
            with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
                pages = len(zf.namelist())
            growth = (_worker_hwm_kib(service) - before) / 1024
            lines.append(f"| {run} | {pages} | {seconds:.2f} | {drawing.peak_process_mib:.0f} "
                         f"| {growth:.1f} | {len(response.content) / 2**20:.1f} |")
            log(f"  png {run}: {seconds:.2f}s, pdftoppm peak {drawing.peak_process_mib:.0f} MiB")
    return lines


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def csv_table(oneshot: OneShot, reps: int) -> list[str]:
    """Every corpus xlsx, sheet 1: fast path against LibreOffice, cells compared."""
    workbooks = [d for d in all_docs() if d.fmt == "xlsx"]
    lines = ["| workbook | LibreOffice path s | fast path s | speed-up | cells | cells that "
             "differ in value |", "|---|---|---|---|---|---|"]
    speedups = []
    for doc in workbooks:
        fast_t, lo_t = [], []
        fast = lo = b""
        path_used = ""
        for rep in range(reps):
            seconds, response = oneshot.convert(doc, rep, "csv", csv_engine="libreoffice")
            lo_t.append(seconds)
            lo = response.content
            seconds, response = oneshot.convert(doc, rep, "csv")
            fast_t.append(seconds)
            fast = response.content
            path_used = response.headers.get("X-Converter-Produced-By", "")
        a, b = _rows(fast), _rows(lo)
        cells = sum(len(r) for r in a)
        differing = sum(1 for ra, rb in zip(a, b, strict=False)
                        for x, y in zip(ra, rb, strict=False) if not same_value(x, y))
        differing += abs(len(a) - len(b))
        speedup = ratio(median(lo_t), median(fast_t))
        if path_used == "openpyxl":
            speedups.append(speedup)
        lines.append(f"| {doc.name} | {median(lo_t):.3f} | {median(fast_t):.3f} | "
                     f"×{speedup:.1f}{'' if path_used == 'openpyxl' else ' (fell back)'} | "
                     f"{cells} | {differing} |")
        log(f"  csv {doc.name}: LO {median(lo_t):.3f}s fast {median(fast_t):.3f}s ({path_used})")
    lines.append(f"| **median over fast-path workbooks** | | | **×{median(speedups):.1f}** | | |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the three benchmarks side by side and print the report."""
    parser = argparse.ArgumentParser("python -m bench.features", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1 document per format, 1 rep")
    parser.add_argument("--reps", type=int, help="repetitions (default 3, quick 1)")
    parser.add_argument("--per-format", type=int, help="documents per format (default 3)")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else 3)
    docs = select(args.per_format or (1 if args.quick else 3))
    root = Path(tempfile.mkdtemp(prefix="converter-bench-features-"))
    uno = BareUnoserver(root / "unoserver")
    service = ServiceUnderTest(root)
    watch = BackgroundWatch()
    started_at = datetime.now(UTC)
    started = time.monotonic()
    try:
        threads = [threading.Thread(target=f) for f in (uno.start, service.start)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        oneshot = OneShot(service, reps + 1)
        log("warming up both engines on one document of each family...")
        warm = {d.family: d for d in reversed(select(1))}
        for doc in warm.values():
            uno.convert(doc)
            oneshot.convert(doc, reps)
        watch.start()
        log("1. one-shot vs two-step vs bare unoserver:")
        first = oneshot_table(docs, uno, service, oneshot, reps)
        log("2. PNG of every page:")
        second = png_table(service, oneshot, min(reps, 2))
        log("3. xlsx to CSV:")
        third = csv_table(oneshot, reps)
    finally:
        watch.stop()
        for stop in (service.stop, uno.stop):
            try:
                stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping: {exc}")
        shutil.rmtree(root, ignore_errors=True)
    report = "\n".join([
        f"## One-shot, PNG pages and the CSV fast path ({started_at:%Y-%m-%d %H:%M} UTC)", "",
        f"`.venv/bin/python -m bench.features {' '.join(argv or sys.argv[1:])}`".replace(
            " `", "`"),
        f"{len(docs)} documents from {CORPUS.name}/, {reps} repetition(s), "
        f"{time.monotonic() - started:.0f} s; background: {watch.summary()}", "",
        "### 1. One-shot against the two-step API and bare unoserver (median per document)",
        "", *first, "",
        "### 2. A 33-slide deck to PNG, pages=all, 150 dpi", "", *second, "",
        "### 3. xlsx to CSV, sheet 1: fast path against the LibreOffice path", "", *third, ""])
    print(report)
    if args.out:
        args.out.write_text(report, encoding="utf-8")
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
