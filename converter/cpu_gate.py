"""A soft bound on how many request threads of one process run Python at once.

An HTTP worker keeps many threads (CONVERTER_HTTP_THREADS) because most requests
spend their time waiting: on the engine, an identical conversion, a slow client's
upload. But when 32 clients send cache hits, all 32 threads want the GIL at once
and the process spends its time handing it round: measured on 2 cores, a worker
of 64 threads served 888 cache hits/s where one of 4 threads served 1,517.

So a request takes one of a few tokens before it runs and gives it back while it
waits (``released``, around the engine call, a single-flight wait, a read of the
request body), so waiting requests never hold a token and a thread count sized for
waiting costs nothing when nobody waits. The bound is soft: a request that waits
``MAX_WAIT`` for a token goes ahead without one, so a holder stuck on something not
marked as a wait (a slow database, an S3 retry) delays others by at most that and
never stalls the process.

Threads that are not requests (run workers, pollers) never take a token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from converter import metrics

# Tokens per process: two keep a core busy while the other holder waits on a short
# database round trip; more brought the GIL contention back (bench.cache_hits).
TOKENS = 2
# Seconds a request waits for a token before it goes ahead without one.
MAX_WAIT = 0.05

_tokens = threading.BoundedSemaphore(TOKENS)
_held = threading.local()


def holding() -> bool:
    """Whether the calling thread holds a token."""
    return bool(getattr(_held, "token", False))


def acquire() -> None:
    """Take a token, or go ahead without one after MAX_WAIT."""
    started = time.perf_counter()
    got = _tokens.acquire(timeout=MAX_WAIT)
    _held.token = got
    if not got:
        metrics.HTTP_GATE_BYPASSED.inc()
    waited = time.perf_counter() - started
    if waited > 0.001:
        metrics.HTTP_GATE_WAIT.observe(waited)


def release() -> None:
    """Give back the calling thread's token, if it holds one."""
    if holding():
        _held.token = False
        _tokens.release()


@contextmanager
def released() -> Iterator[None]:
    """Give the token back for a wait (an engine call, an upload read), then take one again."""
    if not holding():
        yield
        return
    release()
    try:
        yield
    finally:
        acquire()


class _GatedInput:
    """wsgi.input whose reads give the token back: a slow client must not hold one."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, *args: Any) -> Any:
        with released():
            return self._stream.read(*args)

    def readline(self, *args: Any) -> Any:
        with released():
            return self._stream.readline(*args)

    def readinto(self, buffer: Any) -> int:
        # Werkzeug's LimitedStream prefers readinto when the stream has one.
        with released():
            reader = getattr(self._stream, "readinto", None)
            if reader is not None:
                return int(reader(buffer) or 0)
            data = self._stream.read(len(buffer))
            buffer[:len(data)] = data
            return len(data)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class GateMiddleware:
    """WSGI middleware: the application runs under a token; the response body streams without.

    The token is given back when the application returns, so sending a large
    download (which the server does after) never holds one.
    """

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        """Run the wrapped application under a token."""
        if "wsgi.input" in environ:
            environ["wsgi.input"] = _GatedInput(environ["wsgi.input"])
        acquire()
        try:
            return self.app(environ, start_response)
        finally:
            release()
