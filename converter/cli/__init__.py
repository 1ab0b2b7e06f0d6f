"""Command line: ``converter serve|engine|keys|gc`` on the server host; ``convert|runs``
as a client.

Exit codes (documented in the README, stable for scripts): 0 success, 2 usage,
3 request refused (4xx), 4 conversion or server failure (5xx, failed run, wait
timeout), 5 service unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys

from converter.cli import convert, engine, gc, runs, server
from converter.cli.common import FAILED, REFUSED, UNREACHABLE, USAGE, UsageError
from converter.client.errors import ApiError, RunFailed, ServiceUnreachable, WaitTimeout
from converter.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(
        "converter", description="Document-conversion service and its command-line client",
        epilog="exit codes: 0 success, 2 usage, 3 request refused (4xx), "
               "4 conversion or server failure (5xx), 5 service unreachable")
    sub = parser.add_subparsers(dest="command", required=True)
    server.add_parsers(sub)
    gc.add_parser(sub)
    engine.add_parser(sub)
    convert.add_parser(sub)
    runs.add_parser(sub)
    return parser


def _fail(code: int, message: str) -> int:
    print(f"converter: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``converter`` console script."""
    args = build_parser().parse_args(argv)  # exits 2 on a usage error
    try:
        return int(args.func(args))
    except ConfigError as exc:
        return _fail(USAGE, f"configuration error: {exc}")
    except UsageError as exc:
        return _fail(USAGE, str(exc))
    except ApiError as exc:
        extra = f"\n  details: {json.dumps(exc.details)}" if exc.details else ""
        return _fail(FAILED if exc.status >= 500 else REFUSED, f"{exc}{extra}")
    except (RunFailed, WaitTimeout) as exc:
        return _fail(FAILED, str(exc))
    except ServiceUnreachable as exc:
        return _fail(UNREACHABLE, f"service unreachable: {exc} (check CONVERTER_URL)")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
