"""Command line: ``converter serve``, ``converter keys create`` and ``converter healthcheck``."""

from __future__ import annotations

import argparse
import sys

from converter import config as config_module
from converter.datadir import prepare as prepare_data_dir
from converter.errors import ConfigError


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
        print("Created the API key given in CONVERTER_BOOTSTRAP_KEY "
              "(workspace 'default', user 'admin').", flush=True)
        return
    bar = "=" * 72
    print(f"\n{bar}\n First start: created an API key (workspace 'default', user 'admin').\n"
          f" It is shown only this once:\n\n    {raw}\n\n"
          f" More keys: converter keys create --workspace W --user U\n{bar}\n", flush=True)


def _serve(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    cfg = config_module.load(**overrides)
    prepare_data_dir(cfg.data_path)
    _bootstrap(cfg)
    from converter.server import GunicornServer

    print(f"converter: serving http://{cfg.host}:{cfg.port} (data in {cfg.data_path}); "
          f"starting {cfg.workers} LibreOffice instances, /readyz turns 200 when they answer",
          flush=True)
    GunicornServer(cfg).run()
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    from converter.db.engine import connect
    from converter.service.keys import KeyStore

    cfg = config_module.load()
    prepare_data_dir(cfg.data_path)
    db = connect(cfg.sqlalchemy_url)
    try:
        _key_id, raw = KeyStore(db).create(args.workspace, args.user)
    finally:
        db.dispose()
    print(f"created key for user {args.user!r} in workspace {args.workspace!r}", file=sys.stderr)
    print(raw)
    return 0


def _healthcheck(_args: argparse.Namespace) -> int:
    from converter.healthcheck import check

    ready, seen = check(config_module.load())
    print(seen)
    return 0 if ready else 1


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
    health = sub.add_parser("healthcheck", help="exit 0 if this configuration's /readyz says "
                            "ready (the container HEALTHCHECK)")
    health.set_defaults(func=_healthcheck)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"converter: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
