"""``converter gc [--dry-run]``: one cleanup pass now, on the server host's configuration."""

from __future__ import annotations

import argparse
import sys
import time

from converter import config as config_module
from converter import logs
from converter.cli.common import FAILED, OK
from converter.datadir import prepare as prepare_data_dir

# How long the command waits for a pass another replica is running to end.
LEASE_WAIT = 60.0


def gc(args: argparse.Namespace) -> int:
    """Run retention and garbage collection once; print what was (or would be) removed."""
    # Imported here: client commands (convert, runs) need neither SQLAlchemy nor boto3.
    from converter.db.engine import connect
    from converter.service.cleanup import build
    from converter.storage import StorageError, open_storage

    cfg = config_module.load()
    logs.configure(cfg.log_level, cfg.log_format)
    prepare_data_dir(cfg.data_path)
    db = connect(cfg.sqlalchemy_url)
    try:
        storage = open_storage(cfg)
        try:
            # A store that cannot be read would make every row look like it lost its object.
            storage.check()
        except StorageError as exc:
            print(f"converter: storage is not usable, nothing was changed: {exc}",
                  file=sys.stderr)
            return FAILED
        cleanup = build(cfg, db, storage)
        if args.dry_run:
            counts = cleanup.run_pass(dry_run=True)
        else:
            deadline = time.monotonic() + LEASE_WAIT
            while (found := cleanup.run_leased(force=True)) is None:
                if time.monotonic() > deadline:
                    holder = cleanup.lease.holder()
                    print(f"converter: a cleanup pass is running elsewhere ({holder.owner}, "
                          f"lease until {holder.expires_at}); try again when it ends",
                          file=sys.stderr)
                    return FAILED
                time.sleep(1.0)
            counts = found
    finally:
        db.dispose()
    verb = "would remove" if args.dry_run else "removed"
    print("kind\tcount")
    for kind in sorted(counts):
        print(f"{kind}\t{counts[kind]}")
    print(f"{verb} {sum(counts.values())} item(s)", file=sys.stderr)
    return OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``gc``."""
    p = sub.add_parser("gc", help="delete what has expired and what crashes left behind, now "
                       "(on the server host: uses its database and storage)")
    p.add_argument("--dry-run", action="store_true",
                   help="count what would be removed or repaired, change nothing")
    p.set_defaults(func=gc)
