"""Per-key request budgets for the synchronous endpoints (a sliding window per process)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass

from converter.errors import RateLimitExceeded


@dataclass(frozen=True)
class Budget:
    """The state of one key's budget after a request was counted."""

    limit: int
    remaining: int
    reset_seconds: int


class RateLimiter:
    """Allows ``limit`` requests per key per ``window`` seconds."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, now: float | None = None) -> Budget:
        """Count one request; raise RateLimitExceeded when the budget is spent."""
        now = time.monotonic() if now is None else now
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window:
                hits.popleft()
            reset = math.ceil(hits[0] + self.window - now) if hits else math.ceil(self.window)
            if len(hits) >= self.limit:
                error = RateLimitExceeded(
                    f"Rate limit of {self.limit} requests per {self.window:g}s exceeded; "
                    f"retry in {reset}s", retry_after=max(1, reset))
                error.headers.update(headers(Budget(self.limit, 0, max(1, reset))))
                raise error
            hits.append(now)
            return Budget(self.limit, self.limit - len(hits), max(1, reset))


def headers(budget: Budget) -> dict[str, str]:
    """IETF RateLimit header fields for a budget."""
    return {
        "RateLimit-Limit": str(budget.limit),
        "RateLimit-Remaining": str(budget.remaining),
        "RateLimit-Reset": str(budget.reset_seconds),
    }
