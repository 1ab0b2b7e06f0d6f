"""Operator commands on the server host: ``converter serve`` and ``converter keys ...``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from converter import config as config_module
from converter import logs
from converter.cli.common import FAILED, OK, REFUSED
from converter.datadir import prepare as prepare_data_dir

if TYPE_CHECKING:
    from converter.service.keys import KeyStore

logger = logging.getLogger("converter")

# Seconds `keys revoke` waits on PostgreSQL for replicas to hear the NOTIFY (~1 ms).
REPLICA_GRACE = 0.2


@contextmanager
def _key_store(cfg: config_module.Config) -> Iterator[KeyStore]:
    """A KeyStore on the service's database and data directory, closed afterwards."""
    # Imported here: client commands (convert, runs) need neither SQLAlchemy nor Flask.
    from converter.db.engine import connect
    from converter.service.keys import KeyStore

    # A data directory the process cannot write fails here, naming the fix, rather
    # than as SQLite's "unable to open database file".
    prepare_data_dir(cfg.data_path)
    db = connect(cfg.sqlalchemy_url)
    try:
        yield KeyStore(db, cfg.data_path)
    finally:
        db.dispose()


def _bootstrap(cfg: config_module.Config) -> None:
    """On first start with no keys, create one and show it once."""
    with _key_store(cfg) as store:
        if store.count() > 0:
            return
        _key_id, raw = store.create("default", "admin", cfg.bootstrap_key or None)
    if cfg.bootstrap_key:
        logger.info("created the API key given in CONVERTER_BOOTSTRAP_KEY "
                    "(workspace 'default', user 'admin')")
        return
    # The one place a key is shown: on stdout, to the operator, never through the logs.
    bar = "=" * 72
    print(f"\n{bar}\n First start: created an API key (workspace 'default', user 'admin').\n"
          f" It is shown only this once:\n\n    {raw}\n\n"
          f" More keys: converter keys create --workspace W --user U\n{bar}\n", flush=True)


def serve(args: argparse.Namespace) -> int:
    """Start the engine process and the HTTP server, and watch them until SIGTERM
    (creating the first key if none)."""
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    cfg = config_module.load(**overrides)
    logs.configure(cfg.log_level, cfg.log_format)
    _bootstrap(cfg)
    from converter.supervisor import Supervisor

    engine = (f"engine at {cfg.engine_url}" if cfg.engine_url
              else f"starting an engine process with {cfg.workers} LibreOffice instances")
    logger.info("serving http://%s:%d with %d HTTP workers (data in %s); %s, "
                "/readyz turns 200 when they answer", cfg.host, cfg.port, cfg.http_workers,
                cfg.data_path, engine)
    return Supervisor(cfg).run()


def keys_create(args: argparse.Namespace) -> int:
    """Create a key; the raw key is the only thing on stdout."""
    with _key_store(config_module.load()) as store:
        key_id, raw = store.create(args.workspace, args.user)
    print(f"created key {key_id} for user {args.user!r} in workspace {args.workspace!r}",
          file=sys.stderr)
    print(raw)
    return OK


def keys_list(_args: argparse.Namespace) -> int:
    """Print every key (id, prefix, workspace, user, created, revoked), tab-separated."""
    with _key_store(config_module.load()) as store:
        keys = store.list()
    print("id\tprefix\tworkspace\tuser\tcreated_at\trevoked_at")
    for key in keys:
        revoked = key.revoked_at.isoformat() if key.revoked_at else "-"
        print(f"{key.id}\t{key.prefix}\t{key.workspace}\t{key.user_id}\t"
              f"{key.created_at.isoformat()}\t{revoked}")
    return OK


def keys_revoke(args: argparse.Namespace) -> int:
    """Revoke a key by id; every server process on this host refuses it from now on."""
    with _key_store(config_module.load()) as store:
        try:
            found = store.revoke(args.key_id)
        except OSError as exc:
            print(f"converter: {args.key_id} is revoked in the database, but the marker that "
                  f"tells running servers could not be written ({exc}); they may accept the "
                  "key for a few more seconds. Make CONVERTER_DATA_DIR writable.",
                  file=sys.stderr)
            return FAILED
        if found and store.db.dialect.name == "postgresql":
            # NOTIFY reaches other hosts' listeners about a millisecond after the commit;
            # waiting a little longer means the operator's next request is refused there too.
            time.sleep(REPLICA_GRACE)
    if not found:
        print(f"converter: no key {args.key_id!r}; `converter keys list` shows the ids",
              file=sys.stderr)
        return REFUSED
    print(f"revoked {args.key_id}", file=sys.stderr)
    return OK


def healthcheck(_args: argparse.Namespace) -> int:
    """Exit 0 when this configuration's /readyz says ready (the container HEALTHCHECK)."""
    from converter.healthcheck import check

    ready, seen = check(config_module.load())
    print(seen)
    return OK if ready else 1


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``serve``, ``healthcheck`` and ``keys create|list|revoke``."""
    p = sub.add_parser("serve", help="start the engine pool and the HTTP server")
    p.add_argument("--host", help="interface to bind (CONVERTER_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (CONVERTER_PORT, default 8080)")
    p.set_defaults(func=serve)
    sub.add_parser("healthcheck", help="exit 0 if this configuration's /readyz says ready "
                   "(the container HEALTHCHECK)").set_defaults(func=healthcheck)
    keys = sub.add_parser("keys", help="manage API keys (on the server host: uses its database)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it")
    create.add_argument("--workspace", required=True)
    create.add_argument("--user", required=True)
    create.set_defaults(func=keys_create)
    keys_sub.add_parser("list", help="list keys (never the keys themselves)").set_defaults(
        func=keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key; refused on its next request")
    revoke.add_argument("key_id", help="the key's id (key_..., from `converter keys list`)")
    revoke.set_defaults(func=keys_revoke)
