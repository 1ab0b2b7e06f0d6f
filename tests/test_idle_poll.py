"""IdlePoll: the claim loops' wait between empty claims."""

from __future__ import annotations

from converter.service.idle_poll import IdlePoll


def test_waits_double_while_idle_up_to_the_ceiling() -> None:
    """0.5, 1, 2, 4, 4 ...: each empty claim in a row waits twice as long, capped."""
    idle = IdlePoll(0.5, ceiling=4.0)
    assert [idle.empty() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_work_brings_the_short_interval_back() -> None:
    """After work (or a wake-up) the next empty claim waits the interval again."""
    idle = IdlePoll(0.5, ceiling=4.0)
    idle.empty()
    idle.empty()
    idle.busy()
    assert idle.empty() == 0.5


def test_a_ceiling_below_the_interval_is_the_interval() -> None:
    """A poll interval longer than the ceiling is kept as it is, never shortened."""
    idle = IdlePoll(10.0, ceiling=4.0)
    assert [idle.empty() for _ in range(3)] == [10.0, 10.0, 10.0]
