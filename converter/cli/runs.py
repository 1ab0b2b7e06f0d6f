"""``converter runs list|get|wait``: async runs, through the service at CONVERTER_URL."""

from __future__ import annotations

import argparse
import itertools
import json
from typing import Any

from converter.cli.common import OK
from converter.cli.progress import Bars
from converter.client import Client


def _print(obj: dict[str, Any], indent: int | None = 2) -> None:
    print(json.dumps(obj, indent=indent, sort_keys=False))


def runs_list(args: argparse.Namespace) -> int:
    """Print visible runs, newest first, one JSON object per line."""
    with Client.from_env() as client:
        runs = client.list_runs(status=args.status, file_id=args.file_id,
                                page_size=min(args.limit, 100) if args.limit else 100)
        for run in itertools.islice(runs, args.limit or None):
            _print(run, indent=None)
    return OK


def runs_get(args: argparse.Namespace) -> int:
    """Print one run's JSON."""
    with Client.from_env() as client:
        _print(client.get_run(args.run_id))
    return OK


def runs_wait(args: argparse.Namespace) -> int:
    """Wait for a run to finish, print its JSON, optionally download its output."""
    bars = Bars()
    with Client.from_env() as client:
        with bars.waiting(f"run {args.run_id}") as status:
            run = client.wait_run(args.run_id, timeout=args.timeout,
                                  on_poll=lambda r: status(str(r["status"])))
        if args.output:
            with bars.transfer(f"download {run['format']}") as progress:
                client.download(run["download_url"], args.output, progress=progress)
    _print(run)
    return OK


def _count(raw: str) -> int:
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(f"must be 0 or a positive integer, got {raw!r}")
    return int(raw)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``runs list|get|wait``."""
    runs = sub.add_parser("runs", help="async runs on the service (CONVERTER_URL)")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    lst = runs_sub.add_parser("list", help="runs visible to the key, newest first (JSON lines)")
    lst.add_argument("--status", choices=("pending", "running", "completed", "failed"))
    lst.add_argument("--file-id", help="only runs of this file")
    lst.add_argument("--limit", type=_count, default=20,
                     help="print at most this many runs (default 20; 0 = all)")
    lst.set_defaults(func=runs_list)
    get = runs_sub.add_parser("get", help="one run's status as JSON")
    get.add_argument("run_id")
    get.set_defaults(func=runs_get)
    wait = runs_sub.add_parser(
        "wait", help="poll until the run completes (exit 0) or fails or times out (exit 4)")
    wait.add_argument("run_id")
    wait.add_argument("--timeout", type=float, default=600.0,
                      help="seconds to wait before giving up (default 600)")
    wait.add_argument("-o", "--output", help="download the completed run's output here")
    wait.set_defaults(func=runs_wait)
