"""What one cleanup pass carries through its steps: batch size, dry run, tallies, the lease."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


class LeaseLost(Exception):
    """Another replica took the cleanup lease; this pass stops where it is."""


@dataclass
class Sweep:
    """Settings and results of one pass; ``checkpoint`` runs between batches."""

    batch: int
    dry_run: bool = False
    # Renews the lease (and says False when it is lost); the CLI's dry run needs none.
    keep_lease: Callable[[], bool] = field(default=lambda: True)
    counts: Counter[str] = field(default_factory=Counter)

    def checkpoint(self) -> None:
        """Between batches: renew the lease, or stop the pass if it was lost."""
        if not self.keep_lease():
            raise LeaseLost("the cleanup lease expired and another replica took it")

    def tally(self, kind: str, count: int) -> None:
        """Count what a step removed (or, in a dry run, would remove)."""
        if count:
            self.counts[kind] += count


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """items in lists of at most size."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk
