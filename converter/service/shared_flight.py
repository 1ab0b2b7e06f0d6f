"""Single-flight across threads, processes and replicas: one engine call per cache key.

Threads of one process meet first in the in-process ``SingleFlight``, so only one of
them touches the database. That one looks the artifact up, then takes the key's claim
row (``claims.py``):

- the taker leads: it looks up once more (a leader may have finished in between),
  makes the artifact while a heartbeat renews its short lease, records it, and drops
  the claim; a failure on the document is left on the claim for the waiters instead;
- everyone else waits, reading the claim row with a backoff from 20 ms to 200 ms
  (a primary-key read, no write), and looks the artifact up again when the row is
  gone; a leader of the same process wakes them at once;
- a claim whose lease lapsed (its leader died, or hangs without renewing) is taken
  over by the next waiter to look;
- nobody waits past the request's deadline.

Polling rather than LISTEN/NOTIFY: a dead leader sends no notification, so waiters
must watch the lease anyway; SQLite has no NOTIFY; and a read every 200 ms per
waiting request costs nothing next to a conversion, while adding at most that to
its latency.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from converter import cpu_gate, metrics
from converter.errors import ConverterError
from converter.service.claims import Claims, Seen, Taken, claim_token, shareable
from converter.service.singleflight import SingleFlight

logger = logging.getLogger("converter.flight")

T = TypeVar("T")

FIRST_PAUSE = 0.02
MAX_PAUSE = 0.2


class SharedFlight(Generic[T]):
    """Runs make() once per key across the fleet; the others get its result or its failure."""

    def __init__(self, claims: Claims) -> None:
        self.claims = claims
        self.local: SingleFlight[T] = SingleFlight()
        self._settled = threading.Condition()

    def run(self, local_key: str, claim_key: str, lookup: Callable[[], T | None],
            make: Callable[[], T], deadline: float,
            on_timeout: Callable[[], Exception]) -> T:
        """The result under claim_key: looked up, waited for, or made here (once)."""
        result, _leader = self.local.run(
            local_key, lambda: self._across(claim_key, lookup, make, deadline, on_timeout),
            timeout=deadline - time.monotonic(), on_timeout=on_timeout)
        return result

    def _across(self, key: str, lookup: Callable[[], T | None], make: Callable[[], T],
                deadline: float, on_timeout: Callable[[], Exception]) -> T:
        token = claim_token()
        while True:
            found = lookup()
            if found is not None:
                return found
            claim = self.claims.acquire(key, token)
            if isinstance(claim, Taken):
                metrics.FLIGHT_CLAIMS.labels(
                    role="takeover" if claim.took_over else "lead").inc()
                return self._lead(key, token, lookup, make)
            if claim.error is not None:
                metrics.FLIGHT_CLAIMS.labels(role="shared_failure").inc()
                raise claim.error
            if not claim.expired:
                metrics.FLIGHT_CLAIMS.labels(role="wait").inc()
                after = self._wait(key, deadline, on_timeout)
                if after is not None and after.error is not None:
                    metrics.FLIGHT_CLAIMS.labels(role="shared_failure").inc()
                    raise after.error
            # The row is gone (look the artifact up) or lapsed (take it over).

    def _wait(self, key: str, deadline: float,
              on_timeout: Callable[[], Exception]) -> Seen | None:
        """Read the claim until it is gone, lapsed or failed; the last thing seen."""
        pause = FIRST_PAUSE
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise on_timeout()
            with cpu_gate.released(), self._settled:
                self._settled.wait(min(pause, left))
            pause = min(pause * 2, MAX_PAUSE)
            seen = self.claims.peek(key)
            if seen is None or seen.expired or seen.error is not None:
                return seen

    def _lead(self, key: str, token: str, lookup: Callable[[], T | None],
              make: Callable[[], T]) -> T:
        try:
            with self._heartbeat(key, token):
                found = lookup()
                result = found if found is not None else make()
        except BaseException as exc:
            if isinstance(exc, ConverterError) and shareable(exc):
                failure = exc
                self._settle(key, lambda: self.claims.fail(key, token, failure))
            else:
                self._settle(key, lambda: self.claims.release(key, token))
            raise
        self._settle(key, lambda: self.claims.release(key, token))
        return result

    def _settle(self, key: str, write: Callable[[], None]) -> None:
        # Best effort: if the database is down the lease lapses by itself, and whoever
        # takes the claim over finds the recorded artifact before converting.
        try:
            write()
        except SQLAlchemyError as exc:
            logger.warning("could not settle the claim on %s (%s); it lapses by itself",
                           key[:12], str(exc).splitlines()[0])
        with self._settled:
            self._settled.notify_all()

    @contextmanager
    def _heartbeat(self, key: str, token: str) -> Iterator[None]:
        stop = threading.Event()
        interval = max(0.1, self.claims.lease_seconds / 4)

        def beat() -> None:
            while not stop.wait(interval):
                try:
                    if not self.claims.renew(key, token):
                        logger.warning("lost the claim on %s (its lease lapsed); another "
                                       "process may convert it too", key[:12])
                        return
                except SQLAlchemyError as exc:  # the next beat tries again; the lease has slack
                    logger.warning("renewing the claim on %s failed: %s", key[:12],
                                   str(exc).splitlines()[0])

        thread = threading.Thread(target=beat, name="flight-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
