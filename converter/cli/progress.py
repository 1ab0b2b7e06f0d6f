"""Progress bars on stderr, only when it is a terminal: scripts and pipes stay quiet."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from tqdm import tqdm

from converter.client.body import Progress


class Bars:
    """Makes transfer bars and wait indicators, or nothing when not on a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    @contextmanager
    def transfer(self, desc: str) -> Iterator[Progress | None]:
        """A byte-count bar; yields the client's progress callback (None when quiet)."""
        if not self.enabled:
            yield None
            return
        bar = tqdm(desc=desc, total=None, unit="B", unit_scale=True, unit_divisor=1024,
                   file=self.stream, leave=True, dynamic_ncols=True)

        def update(done: int, total: int | None) -> None:
            if total is not None and bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        try:
            yield update
        finally:
            bar.close()

    @contextmanager
    def waiting(self, desc: str) -> Iterator[Callable[[str], None]]:
        """An elapsed-time indicator; yields a callback that shows the latest status."""
        if not self.enabled:
            yield lambda _status: None
            return
        bar = tqdm(desc=desc, total=None, bar_format="{desc} {elapsed}",
                   file=self.stream, leave=True, dynamic_ncols=True)
        stop = threading.Event()

        def tick() -> None:
            # tqdm redraws only on updates; a wait has none, so keep the clock moving.
            while not stop.wait(0.5):
                bar.refresh()

        ticker = threading.Thread(target=tick, name="progress-ticker", daemon=True)
        ticker.start()
        try:
            yield lambda status: bar.set_description_str(f"{desc}: {status}")
        finally:
            stop.set()
            ticker.join()
            bar.close()
