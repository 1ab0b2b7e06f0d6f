"""Command line: ``converter serve`` and ``converter keys create``."""

from __future__ import annotations

import argparse
import logging
import sys

from converter import config as config_module
from converter import logs
from converter.errors import ConfigError

logger = logging.getLogger("converter")


def _bootstrap(cfg: config_module.Config) -> None:
    """On first start with no keys, create one and show it once."""
    from converter.db.engine import connect
    from converter.service.keys import KeyStore

    db = connect(cfg.sqlalchemy_url)
    try:
        keys = KeyStore(db)
        if keys.count() > 0:
            return
        _key_id, raw = keys.create("default", "admin", cfg.bootstrap_key or None)
    finally:
        db.dispose()
    if cfg.bootstrap_key:
        logger.info("created the API key given in CONVERTER_BOOTSTRAP_KEY "
                    "(workspace 'default', user 'admin')")
        return
    # The one place a key is shown: on stdout, to the operator, never through the logs.
    bar = "=" * 72
    print(f"\n{bar}\n First start: created an API key (workspace 'default', user 'admin').\n"
          f" It is shown only this once:\n\n    {raw}\n\n"
          f" More keys: converter keys create --workspace W --user U\n{bar}\n", flush=True)


def _serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    cfg = config_module.load(**overrides)
    logs.configure(cfg.log_level, cfg.log_format)
    _bootstrap(cfg)
    from converter.server import GunicornServer

    logger.info("serving http://%s:%d (data in %s); starting %d LibreOffice instances, "
                "/readyz turns 200 when they answer", cfg.host, cfg.port, cfg.data_path,
                cfg.workers)
    GunicornServer(cfg).run()
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    from converter.db.engine import connect
    from converter.service.keys import KeyStore

    cfg = config_module.load()
    db = connect(cfg.sqlalchemy_url)
    try:
        _key_id, raw = KeyStore(db).create(args.workspace, args.user)
    finally:
        db.dispose()
    print(f"created key for user {args.user!r} in workspace {args.workspace!r}", file=sys.stderr)
    print(raw)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``converter`` console script."""
    parser = argparse.ArgumentParser("converter", description="Document-conversion service")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the engine pool and the HTTP server")
    serve.add_argument("--host", help="interface to bind (CONVERTER_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (CONVERTER_PORT, default 8080)")
    serve.set_defaults(func=_serve)
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it")
    create.add_argument("--workspace", required=True)
    create.add_argument("--user", required=True)
    create.set_defaults(func=_keys_create)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"converter: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
