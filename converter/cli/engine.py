"""``converter engine``: the LibreOffice pool in a process of its own.

`converter serve` runs one on a Unix socket for its HTTP workers. Run alone with
``--listen HOST:PORT``, it serves API replicas on other hosts (their
CONVERTER_ENGINE_URL) and any unoserver client such as ``unoconvert``.
"""

from __future__ import annotations

import argparse
import fcntl
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import IO

from converter import config as config_module
from converter import logs
from converter.cli.common import FAILED, OK, USAGE
from converter.datadir import prepare as prepare_data_dir

logger = logging.getLogger("converter.engine")


def _listen_address(raw: str) -> tuple[str, int]:
    host, _, port = raw.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen takes HOST:PORT, not {raw!r}")
    return host.strip("[]"), int(port)


def _lock_engine_dir(root: Path) -> IO[bytes] | None:
    """Hold an exclusive lock on the engine's directory for this process's lifetime."""
    # Two pools on one directory would wipe each other's scratch space and profiles.
    root.mkdir(parents=True, exist_ok=True)
    handle = open(root / "engine.lock", "ab")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def engine(args: argparse.Namespace) -> int:
    """Start the pool, serve it until SIGTERM or SIGINT, then stop every LibreOffice."""
    from converter.engine.pool import EnginePool
    from converter.engine.process import socket_path_for
    from converter.engine.rpc_server import EngineServer
    from converter.errors import EngineStartError

    cfg = config_module.load()
    logs.configure(cfg.log_level, cfg.log_format)
    if args.listen and args.socket:
        print("converter: give --listen or --socket, not both", flush=True)
        return USAGE
    prepare_data_dir(cfg.data_path)
    lock = _lock_engine_dir(cfg.data_path / "engine")
    if lock is None:
        print("converter: another engine process already uses this CONVERTER_DATA_DIR "
              f"({cfg.data_path}); give each engine its own data directory", flush=True)
        return FAILED
    try:
        pool = EnginePool(cfg)
    except EngineStartError as exc:
        print(f"converter: the engine cannot start: {exc}", flush=True)
        lock.close()
        return FAILED
    if args.listen:
        server = EngineServer(pool, listen=args.listen)
    else:
        server = EngineServer(pool, socket_path=Path(args.socket) if args.socket
                              else socket_path_for(cfg.data_path))
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        logger.info("engine: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    pool.start(wait=False)
    server.start()
    logger.info("engine serving %s with %d LibreOffice instances", server.address, pool.size)
    try:
        stop.wait()
    finally:
        server.stop()
        pool.stop()
        lock.close()
    return OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``converter engine``."""
    p = sub.add_parser("engine", help="run the LibreOffice pool on its own, for HTTP workers "
                       "(CONVERTER_ENGINE_URL) and unoserver clients")
    p.add_argument("--listen", type=_listen_address, metavar="HOST:PORT",
                   help="serve over TCP (unoserver's protocol and converter's); only on a "
                        "private network: the engine has no authentication of its own")
    p.add_argument("--socket", metavar="PATH",
                   help="serve on this Unix socket (default: under CONVERTER_DATA_DIR/engine)")
    p.set_defaults(func=engine)
