"""Single-flight: concurrent callers with the same key share one execution."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Generic, TypeVar

from converter import cpu_gate

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs fn once per key at a time; callers that arrive meanwhile wait for its result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight: dict[str, Future[T]] = {}

    def run(self, key: str, fn: Callable[[], T], timeout: float,
            on_timeout: Callable[[], Exception]) -> tuple[T, bool]:
        """Return (result, leader) where leader says whether this caller ran fn."""
        with self._lock:
            future = self._inflight.get(key)
            leader = future is None
            if future is None:
                future = Future()
                self._inflight[key] = future
        if not leader:
            try:
                with cpu_gate.released():
                    return future.result(timeout=max(0.0, timeout)), False
            except FutureTimeout:
                raise on_timeout() from None
        try:
            result = fn()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result, True
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def inflight(self) -> int:
        """Keys currently executing."""
        with self._lock:
            return len(self._inflight)
