"""The per-key GCRA budget in ratelimit.db: bursts, refill, sharing across limiters and threads."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from converter.errors import RateLimitExceeded
from converter.service.ratelimit import RateLimiter


def test_a_burst_of_the_whole_budget_then_one_per_interval(tmp_path: Path) -> None:
    """limit requests at once, then refused until window/limit seconds have passed."""
    limiter = RateLimiter(5, tmp_path / "rl.db", window=60.0)
    now = 1_000_000.0
    remaining = [limiter.hit("k", now).remaining for _ in range(5)]
    assert remaining == [4, 3, 2, 1, 0]
    with pytest.raises(RateLimitExceeded) as refused:
        limiter.hit("k", now)
    assert refused.value.headers["Retry-After"] == "12"  # one request per 60/5 s
    assert refused.value.headers["RateLimit-Remaining"] == "0"
    with pytest.raises(RateLimitExceeded):
        limiter.hit("k", now + 11.9)
    assert limiter.hit("k", now + 12.0).remaining == 0
    # Other keys have budgets of their own.
    assert limiter.hit("other", now).remaining == 4


def test_an_idle_key_gets_its_whole_budget_back(tmp_path: Path) -> None:
    """After a full window of silence the burst is available again, not more."""
    limiter = RateLimiter(3, tmp_path / "rl.db", window=30.0)
    for _ in range(3):
        limiter.hit("k", 100.0)
    assert [limiter.hit("k", 1000.0).remaining for _ in range(3)] == [2, 1, 0]
    with pytest.raises(RateLimitExceeded):
        limiter.hit("k", 1000.0)


def test_two_limiters_on_one_file_share_the_budget(tmp_path: Path) -> None:
    """Two processes' limiters (here two objects with their own connections) count together."""
    first = RateLimiter(4, tmp_path / "rl.db")
    second = RateLimiter(4, tmp_path / "rl.db")
    now = 5000.0
    first.hit("k", now)
    second.hit("k", now)
    first.hit("k", now)
    assert second.hit("k", now).remaining == 0
    with pytest.raises(RateLimitExceeded):
        first.hit("k", now)


def _spend(path: str, hits: int, now: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    limiter = RateLimiter(100, Path(path))
    allowed = 0
    for _ in range(hits):
        try:
            limiter.hit("k", now)
            allowed += 1
        except RateLimitExceeded:
            pass
    out.put(allowed)


def test_concurrent_threads_and_processes_never_overspend(tmp_path: Path) -> None:
    """8 threads and 2 processes racing on one key are allowed exactly the budget of 100."""
    path = tmp_path / "rl.db"
    RateLimiter(100, path)  # creates the table before the race
    now = 9000.0
    allowed: list[int] = []
    lock = threading.Lock()

    def spend() -> None:
        limiter = RateLimiter(100, path)
        count = 0
        for _ in range(25):
            try:
                limiter.hit("k", now)
                count += 1
            except RateLimitExceeded:
                pass
        with lock:
            allowed.append(count)

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_spend, args=(str(path), 25, now, queue))
                 for _ in range(2)]
    for process in processes:
        process.start()
    threads = [threading.Thread(target=spend) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.join(60)
        assert process.exitcode == 0
    total = sum(allowed) + sum(queue.get(timeout=10) for _ in processes)
    assert total == 100  # 250 attempts, a budget of 100, no overspend and no lost update
