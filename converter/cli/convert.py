"""``converter convert``: upload a document, convert it, download the result."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converter.cli.common import OK, UsageError, parse_options
from converter.cli.progress import Bars
from converter.client import Client, ClientError


def convert(args: argparse.Namespace) -> int:
    """Convert INPUT to --to through the service at CONVERTER_URL."""
    source = Path(args.input)
    if not source.is_file():
        raise UsageError(f"no such file: {source}")
    options = parse_options(args.option)
    target = args.to.lower().lstrip(".")
    default_name = source.with_suffix(f".{target}").name
    out = args.output or default_name
    if out != "-":
        if Path(out).is_dir():
            out = str(Path(out) / default_name)
        if not Path(out).resolve().parent.is_dir():
            raise UsageError(f"-o {args.output}: directory {Path(out).parent} does not exist")
    bars = Bars()
    with Client.from_env() as client:
        with bars.transfer(f"upload {source.name}") as progress:
            record = client.upload(source, scope=args.scope, progress=progress)
        try:
            with bars.waiting(f"convert to {target}") as status:
                status("converting")
                result = client.convert(record["id"], target, options)
            with bars.transfer(f"download {target}") as progress:
                if out == "-":
                    client.download(result["download_url"], sys.stdout.buffer,
                                    progress=progress)
                    sys.stdout.buffer.flush()
                else:
                    client.download(result["download_url"], out, progress=progress)
        finally:
            _cleanup(client, record["id"], args.keep)
    if out != "-":
        print(out)
    return OK


def _cleanup(client: Client, file_id: str, keep: bool) -> None:
    if keep:
        print(f"kept uploaded file {file_id}", file=sys.stderr)
        return
    try:
        client.delete_file(file_id)
    except ClientError as exc:  # cleanup must not hide the outcome of the conversion
        print(f"converter: warning: could not delete uploaded file {file_id}: {exc}",
              file=sys.stderr)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``convert``."""
    p = sub.add_parser(
        "convert", help="convert a document through the service (CONVERTER_URL)",
        description="Upload INPUT, convert it and download the result. Talks to the service "
                    "at CONVERTER_URL with CONVERTER_API_KEY.")
    p.add_argument("input", help="the document to convert")
    p.add_argument("--to", required=True, help="target format, e.g. pdf (GET /v1/formats)")
    p.add_argument("-o", "--output",
                   help="where to write the result: a file, a directory, or '-' for stdout; "
                        "default: INPUT's name with the target's extension, in the current "
                        "directory")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a conversion option, e.g. page_range=1-3 (repeatable)")
    p.add_argument("--scope", choices=("personal", "workspace"),
                   help="who may see the uploaded file (default personal)")
    p.add_argument("--keep", action="store_true",
                   help="keep the uploaded file on the service (default: delete it after)")
    p.set_defaults(func=convert)
