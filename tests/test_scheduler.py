"""The engine scheduler's order and bounds, as a pure data structure (no LibreOffice)."""

from __future__ import annotations

import pytest

from converter.engine.scheduler import Full, Scheduler, Tenant, Ticket


def _ticket(workspace: str, key: str = "k", cost: float = 1.0, lane: str = "sync") -> Ticket:
    return Ticket(Tenant(workspace, f"{workspace}-{key}", lane), cost)  # type: ignore[arg-type]


def _names(tickets: list[Ticket]) -> list[str]:
    return [t.tenant.key_id for t in tickets]


def test_fifo_serves_in_arrival_order() -> None:
    """fifo: the reference order, whoever asks."""
    sched = Scheduler("fifo", limit=100)
    for ws in ["A", "A", "A", "B", "A", "B"]:
        sched.add(_ticket(ws))
    assert _names(sched.order()) == ["A-k", "A-k", "A-k", "B-k", "A-k", "B-k"]


def test_workspaces_alternate_at_equal_cost() -> None:
    """Three of A then two of B, all equal: A, B, A, B, A."""
    sched = Scheduler("fair", limit=100)
    for ws in ["A", "A", "A", "B", "B"]:
        sched.add(_ticket(ws))
    assert _names(sched.order()) == ["A-k", "B-k", "A-k", "B-k", "A-k"]


def test_cheap_work_of_a_late_workspace_overtakes_a_heavy_backlog() -> None:
    """A queued ten 3 s jobs; B's 0.1 s jobs, queued later, go ahead of all but one of A's."""
    sched = Scheduler("fair", limit=100)
    for _ in range(10):
        sched.add(_ticket("A", cost=3.0))
    first = sched.pick()  # A's first is served: A has now been charged 3 s
    assert first is not None and first.tenant.workspace == "A"
    for _ in range(5):
        sched.add(_ticket("B", cost=0.1))
    order = [t.tenant.workspace for t in sched.order()]
    assert order[:5] == ["B"] * 5, order
    assert order[5:] == ["A"] * 9


def test_cost_weighting_shares_estimated_seconds_not_counts() -> None:
    """A's jobs cost 4 times B's: B gets about four jobs per job of A."""
    sched = Scheduler("fair", limit=100)
    for _ in range(4):
        sched.add(_ticket("A", cost=4.0))
    for _ in range(16):
        sched.add(_ticket("B", cost=1.0))
    order = [t.tenant.workspace for t in sched.order()]
    # In any prefix, the seconds served to each differ by at most one of A's jobs.
    a = b = 0.0
    for ws in order:
        a, b = (a + 4.0, b) if ws == "A" else (a, b + 1.0)
        assert abs(a - b) <= 4.0, order
    assert order.count("A") == 4 and order.count("B") == 16


def test_keys_share_within_a_workspace_before_workspaces_are_split_by_key_count() -> None:
    """Workspace A has keys x and y, B one key: B gets half, x and y a quarter each."""
    sched = Scheduler("fair", limit=100)
    for _ in range(4):
        sched.add(_ticket("A", "x"))
    for _ in range(4):
        sched.add(_ticket("A", "y"))
    for _ in range(4):
        sched.add(_ticket("B", "z"))
    order = _names(sched.order())
    first_eight = order[:8]
    assert first_eight.count("B-z") == 4, order
    assert first_eight.count("A-x") == 2 and first_eight.count("A-y") == 2, order


def test_sync_goes_ahead_of_async() -> None:
    """Runs (async) wait while any synchronous ticket waits, even an older run."""
    sched = Scheduler("fair", limit=100)
    sched.add(_ticket("A", "run", lane="async"))
    sched.add(_ticket("A", "run", lane="async"))
    sched.add(_ticket("B", "http"))
    sched.add(_ticket("A", "http"))
    order = [(t.tenant.key_id, t.tenant.lane) for t in sched.order()]
    assert [lane for _k, lane in order] == ["sync", "sync", "async", "async"], order


def test_an_idle_workspace_earns_no_credit() -> None:
    """B converted a lot earlier, then went idle; back, it shares evenly, not first forever."""
    sched = Scheduler("fair", limit=100)
    for _ in range(3):
        sched.add(_ticket("B"))
    sched.add(_ticket("A"))
    assert sched.pick() is not None  # B, at the head
    # A arrives with many and B comes back after its queue emptied in between.
    while sched.pick() is not None:
        pass
    for _ in range(6):
        sched.add(_ticket("A"))
    sched.pick()  # A's first
    for _ in range(3):
        sched.add(_ticket("B"))
    order = [t.tenant.workspace for t in sched.order()]
    assert order[:6] == ["B", "A", "B", "A", "B", "A"], order


def test_pick_skips_tickets_that_cannot_take_the_instance_on_offer() -> None:
    """An ineligible ticket keeps its place; the next eligible one is served."""
    sched = Scheduler("fair", limit=100)
    heavy = sched.add(_ticket("A", cost=5.0))
    light = sched.add(_ticket("B", cost=0.1))
    assert sched.pick(lambda t: t.cost < 1.0) is light
    assert sched.pick(lambda t: t.cost < 1.0) is None
    assert sched.pick() is heavy
    assert len(sched) == 0


def test_bounds_are_global_and_per_workspace() -> None:
    """fair: per-workspace bound refuses A while B is admitted; the global one refuses all."""
    sched = Scheduler("fair", limit=5, per_workspace=3)
    for _ in range(3):
        sched.check(Tenant("A", "a"))
        sched.add(_ticket("A"))
    with pytest.raises(Full) as refused:
        sched.check(Tenant("A", "a"))
    assert refused.value.scope == "workspace" and refused.value.waiting == 3
    sched.check(Tenant("B", "b"))
    sched.add(_ticket("B"))
    sched.add(_ticket("C"))
    with pytest.raises(Full) as full:
        sched.check(Tenant("D", "d"))
    assert full.value.scope == "global"


def test_fifo_has_only_the_global_bound() -> None:
    """The per-workspace bound belongs to the fair policy."""
    sched = Scheduler("fifo", limit=5, per_workspace=2)
    for _ in range(4):
        sched.check(Tenant("A", "a"))
        sched.add(_ticket("A"))
    assert sched.waiting_in("A") == 4


def test_removed_tickets_leave_no_trace() -> None:
    """A ticket that timed out is gone from the order and the counts."""
    sched = Scheduler("fair", limit=100)
    gone = sched.add(_ticket("A"))
    kept = sched.add(_ticket("A"))
    sched.remove(gone)
    sched.remove(gone)  # twice is harmless
    assert sched.waiting_in("A") == 1
    assert sched.order() == [kept]
    assert len(sched) == 1  # order() does not consume


def test_accounts_of_idle_tenants_do_not_pile_up_under_constant_load() -> None:
    """A thousand one-off workspaces pass while one stays backlogged: the maps stay small."""
    sched = Scheduler("fair", limit=10_000)
    sched.add(_ticket("steady"))
    sched.add(_ticket("steady"))
    for index in range(1000):
        sched.add(_ticket(f"once-{index}"))
        while (served := sched.pick()) is not None and served.tenant.workspace != "steady":
            pass
        sched.add(_ticket("steady"))
    assert len(sched._keys) < 200 and len(sched._workspaces) < 200
    assert sched.waiting_in("steady") >= 1
