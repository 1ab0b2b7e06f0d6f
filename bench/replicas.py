"""``python -m bench.replicas``: 2 replicas, 8 identical concurrent converts, engine calls.

Starts two ``converter serve`` replicas (one LibreOffice instance each) sharing a fresh
PostgreSQL database (or, with ``--database sqlite``, one SQLite file on this host) and
a bucket on moto's S3 server, then, per document, uploads it once and fires 8
identical converts at the same moment, alternating between the replicas. Prints one
row per document: engine calls per replica and in total (the goal is 1), the flight
roles (leaders, processes that waited through the database, takeovers), the latency
of one convert of it alone (as another owner, so never from the cache) and of the 8
requests. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from bench.stats import median
from tests.support.moto import BUCKET, CREDENTIALS, MotoServer
from tests.support.postgres import fresh_database
from tests.support.served import ServedApp

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
# Never cached before each round (a fresh database), from a fraction of a second to a few.
DOCUMENTS = ["doc/Bug50955.doc", "docx/SampleDoc.docx", "odt/excelfileformat.odt",
             "pptx/SampleShow.pptx", "xlsx/51519.xlsx"]
CONCURRENT = 8


def log(message: str) -> None:
    """Progress on stderr, so stdout is only the table."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def database(kind: str, root: Path) -> Iterator[str]:
    """A fresh database URL of the kind asked for."""
    if kind == "postgres":
        with fresh_database() as url:
            yield url
    else:
        yield f"sqlite:///{root / 'shared.db'}"


@contextmanager
def replicas(root: Path, kind: str) -> Iterator[tuple[ServedApp, ServedApp]]:
    """Two replicas on one database and one bucket, started and stopped."""
    moto = MotoServer(root / "moto.log")
    moto.start()
    try:
        with database(kind, root) as url:
            env = {"CONVERTER_DATABASE_URL": url, "CONVERTER_STORAGE": "s3",
                   "CONVERTER_S3_BUCKET": BUCKET, "CONVERTER_S3_ENDPOINT_URL": moto.url,
                   "CONVERTER_S3_PREFIX": f"bench-{secrets.token_hex(4)}/",
                   "CONVERTER_SECRET_KEY": secrets.token_hex(32),
                   "CONVERTER_RUN_WORKERS": "0", **CREDENTIALS}
            first = ServedApp(root / "a", env=env, workers=1)
            second = ServedApp(root / "b", env=env, workers=1)
            second.key = first.key
            second.http.headers["X-API-Key"] = first.key
            try:
                log("starting replica a")
                first.start()
                log("starting replica b")
                second.start()
                yield first, second
            finally:
                second.stop()
                first.stop()
    finally:
        moto.stop()


def counters(app: ServedApp) -> dict[str, float]:
    """The figures a round is measured by."""
    got = app.metrics()
    names = {"calls": "converter_engine_calls_total"}
    for role in ("lead", "wait", "takeover"):
        names[role] = f'converter_flight_claims_total{{role="{role}"}}'
    return {short: got.get(name, 0.0) for short, name in names.items()}


def alone(app: ServedApp, document: str, key: str) -> float:
    """Seconds one convert of the document takes by itself (another owner: no cache)."""
    file_id = app.upload_ok(CORPUS / document, key=key)["id"]
    began = time.monotonic()
    response = app.convert(file_id, "pdf", key=key)
    assert response.status_code == 200, response.text
    return time.monotonic() - began


def round_of(apps: tuple[ServedApp, ServedApp], document: str, solo_key: str) -> list[str]:
    """Upload once, fire the identical converts together; one row of the table."""
    solo = alone(apps[0], document, solo_key)
    file_id = apps[0].upload_ok(CORPUS / document)["id"]
    before = [counters(app) for app in apps]
    start = threading.Barrier(CONCURRENT)

    def one(index: int) -> tuple[int, float]:
        start.wait()
        began = time.monotonic()
        response = apps[index % 2].convert(file_id, "pdf")
        return response.status_code, time.monotonic() - began

    with ThreadPoolExecutor(CONCURRENT) as pool:
        results = list(pool.map(one, range(CONCURRENT)))
    after = [counters(app) for app in apps]
    delta = [{k: a[k] - b[k] for k in a} for a, b in zip(after, before, strict=True)]
    latencies = [seconds for _status, seconds in results]
    ok = sum(1 for status, _seconds in results if status == 200)
    per = [int(d["calls"]) for d in delta]
    return [document, f"{ok}/{CONCURRENT}", str(per[0]), str(per[1]), str(sum(per)),
            str(int(sum(d["lead"] for d in delta))), str(int(sum(d["wait"] for d in delta))),
            str(int(sum(d["takeover"] for d in delta))), f"{solo:.2f}",
            f"{median(latencies):.2f}", f"{max(latencies):.2f}"]


def render(rows: list[list[str]]) -> str:
    """A Markdown table."""
    header = ["document", "200s", "engine calls a", "engine calls b", "total", "leaders",
              "db waiters", "takeovers", "alone s", "p50 s", "max s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Start the replicas, run a round per document and print the table."""
    parser = argparse.ArgumentParser("python -m bench.replicas", description=__doc__)
    parser.add_argument("--database", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--documents", type=int, default=len(DOCUMENTS),
                        help="how many of the corpus documents to run (one round each)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        with replicas(Path(tmp), args.database) as apps:
            solo_key = apps[0].create_key("bench-solo", "solo")
            rows = []
            for document in DOCUMENTS[:args.documents]:
                log(f"round: {document}")
                rows.append(round_of(apps, document, solo_key))
    print(f"2 replicas ({args.database} + moto S3, 1 LibreOffice instance each), "
          f"{CONCURRENT} identical concurrent converts to PDF per document:")
    print(render(rows))


if __name__ == "__main__":
    main()
