"""How long a queue worker waits after finding no work: short while work flows, longer idle.

Every service process runs claim loops (runs, exports, automations) that ask the
database for work. Work created in the same process wakes its loop at once; the
polls only find what other processes or replicas queued while their own workers
were busy, leases that expired and retries that came due. A few seconds late is
fine for those, while polling twice a second on every thread of every process
was a tenth of an idle worker's CPU and, on SQLite, a write lock each time.
"""

from __future__ import annotations

IDLE_CEILING_SECONDS = 4.0


class IdlePoll:
    """The wait before the next claim: interval after work, doubling up to a ceiling."""

    def __init__(self, interval: float, ceiling: float = IDLE_CEILING_SECONDS) -> None:
        self.interval = interval
        self.ceiling = max(ceiling, interval)
        self._next = interval

    def empty(self) -> float:
        """The wait after a claim that found nothing; each one in a row waits twice as long."""
        wait = self._next
        self._next = min(self.ceiling, self._next * 2)
        return wait

    def busy(self) -> None:
        """Work was found or announced: poll at the short interval again."""
        self._next = self.interval
