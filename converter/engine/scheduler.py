"""Who gets the next free engine instance: tickets ordered by class, workspace, key and cost.

Waiting conversions are tickets. ``fair`` serves synchronous tickets before async
ones (runs use spare capacity), and within a class shares the engine first across
workspaces, then across keys within a workspace, weighted by each ticket's cost
estimate (roughly the seconds LibreOffice will need). ``fifo`` serves in arrival
order, the reference the fair mode is measured against.

The fair order is fair queueing by attained service, the exact form of what deficit
round robin approximates: every workspace (and every key inside it) carries the cost
it has been served; the next ticket comes from the least-served workspace, then its
least-served key, oldest first. A workspace that becomes backlogged again starts
level with the least-served backlogged one, so idling earns no credit (DRR's deficit
reset). Unlike a DRR ring it needs no quantum and keeps no round-robin position, so
skipping a ticket that cannot take the instance on offer (a crash retry avoiding an
instance, a heavy document that never takes the pool's last idle one) cannot upset it. The
queue holds tens of tickets; the linear scans cost microseconds.

Pure data structure: no threads, no locks (the pool calls it under its own lock).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

Lane = Literal["sync", "async"]
LANES: tuple[Lane, ...] = ("sync", "async")
POLICIES = ("fair", "fifo")


@dataclass(frozen=True)
class Tenant:
    """Who asks for a conversion and in which class: the engine's view of a caller."""

    workspace: str = ""
    key_id: str = ""
    lane: Lane = "sync"


# Work whose caller is not known (internal calls, tests): one tenant of its own.
ANONYMOUS = Tenant()


@dataclass(eq=False)
class Ticket:
    """One waiting conversion; the pool sets ``instance`` when it hands one over."""

    tenant: Tenant
    cost: float
    avoid: frozenset[int] = frozenset()
    seq: int = 0
    instance: Any = None
    # Set by the pool: the condition its waiter sleeps on (woken only for its own ticket).
    wakeup: Any = field(default=None, repr=False)


@dataclass
class _Account:
    served: float = 0.0
    waiting: int = 0
    # For a workspace: where its keys' clock stood at its last pick (see Scheduler.add).
    clock: float = 0.0


class Full(Exception):
    """A bound on waiting tickets is reached; ``scope`` says which (global or workspace)."""

    def __init__(self, scope: str, waiting: int) -> None:
        super().__init__(scope)
        self.scope = scope
        self.waiting = waiting


class Scheduler:
    """The wait queue of the engine pool: bounded admission and the order of service."""

    def __init__(self, policy: str = "fair", limit: int = 32,
                 per_workspace: int = 0) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {', '.join(POLICIES)}")
        self.policy = policy
        self.limit = limit
        # 0: no per-workspace bound (fifo ignores it: it is part of the fair policy).
        self.per_workspace = per_workspace if policy == "fair" else 0
        self._tickets: list[Ticket] = []
        self._seq = itertools.count()
        self._workspaces: dict[str, _Account] = {}
        self._keys: dict[tuple[str, str], _Account] = {}
        # The service a workspace had reached when it was last picked, before its charge:
        # the virtual time of start-time fair queueing.
        self._clock = 0.0

    def __len__(self) -> int:
        return len(self._tickets)

    def waiting_in(self, workspace: str) -> int:
        """Tickets waiting for workspace."""
        account = self._workspaces.get(workspace)
        return account.waiting if account else 0

    def queued_cost(self, workspace: str) -> float:
        """Estimated seconds of work waiting for workspace."""
        return sum(t.cost for t in self._tickets if t.tenant.workspace == workspace)

    def check(self, tenant: Tenant, including: int = 0) -> None:
        """Raise Full if tenant's ticket would exceed a bound (including: already added)."""
        total = len(self._tickets) - including
        if total >= self.limit:
            raise Full("global", total)
        mine = self.waiting_in(tenant.workspace) - including
        if self.per_workspace and mine >= self.per_workspace:
            raise Full("workspace", mine)

    def add(self, ticket: Ticket) -> Ticket:
        """Queue a ticket (bounds are the caller's business: see check)."""
        ticket.seq = next(self._seq)
        tenant = ticket.tenant
        ws = self._workspaces.get(tenant.workspace)
        if ws is None or ws.waiting == 0:
            # Back from idle: it starts at the virtual time, no credit for having idled, but
            # ahead of a workspace already charged for the instances it holds.
            ws = ws or _Account()
            ws.served = max(ws.served, self._clock)
            self._workspaces[tenant.workspace] = ws
        key = self._keys.get((tenant.workspace, tenant.key_id))
        if key is None or key.waiting == 0:
            key = key or _Account()
            key.served = max(key.served, ws.clock)
            self._keys[(tenant.workspace, tenant.key_id)] = key
        ws.waiting += 1
        key.waiting += 1
        self._tickets.append(ticket)
        if len(self._keys) > 4 * len(self._tickets) + 64:
            self._sweep()
        return ticket

    def remove(self, ticket: Ticket) -> None:
        """Take a ticket out without serving it (timed out, or handed an instance)."""
        if ticket not in self._tickets:
            return
        self._tickets.remove(ticket)
        self._workspaces[ticket.tenant.workspace].waiting -= 1
        self._keys[(ticket.tenant.workspace, ticket.tenant.key_id)].waiting -= 1
        self._forget_idle()

    def pick(self, eligible: Callable[[Ticket], bool] = lambda _t: True) -> Ticket | None:
        """Remove and return the next ticket to serve among the eligible ones, charging it."""
        candidates = [t for t in self._tickets if eligible(t)]
        if not candidates:
            return None
        if self.policy == "fifo":
            chosen = min(candidates, key=lambda t: t.seq)
        else:
            chosen = min(candidates, key=self._rank)
        ws = self._workspaces[chosen.tenant.workspace]
        key = self._keys[(chosen.tenant.workspace, chosen.tenant.key_id)]
        self._clock = max(self._clock, ws.served)
        ws.clock = max(ws.clock, key.served)
        ws.served += chosen.cost
        key.served += chosen.cost
        self.remove(chosen)
        return chosen

    def order(self) -> list[Ticket]:
        """Every waiting ticket in the order pick would serve them (for tests and stats)."""
        saved = ({w: (a.served, a.waiting, a.clock) for w, a in self._workspaces.items()},
                 {k: (a.served, a.waiting, a.clock) for k, a in self._keys.items()},
                 list(self._tickets), self._clock)
        out: list[Ticket] = []
        while (ticket := self.pick()) is not None:
            out.append(ticket)
        workspaces, keys, tickets, self._clock = saved
        self._tickets = tickets
        self._workspaces = {w: _Account(*v) for w, v in workspaces.items()}
        self._keys = {k: _Account(*v) for k, v in keys.items()}
        return out

    # ----------------------------------------------------------------- internals
    def _rank(self, ticket: Ticket) -> tuple[int, float, float, int]:
        tenant = ticket.tenant
        return (LANES.index(tenant.lane), self._workspaces[tenant.workspace].served,
                self._keys[(tenant.workspace, tenant.key_id)].served, ticket.seq)

    def _sweep(self) -> None:
        # Under constant load the queue never empties; drop the accounts of idle keys and
        # workspaces whose history is moot (a return would start them at the clock anyway).
        self._workspaces = {w: a for w, a in self._workspaces.items()
                            if a.waiting or a.served > self._clock}
        self._keys = {k: a for k, a in self._keys.items() if k[0] in self._workspaces and (
            a.waiting or a.served > self._workspaces[k[0]].clock)}

    def _forget_idle(self) -> None:
        # With nothing waiting, every history is moot: start the next busy period level,
        # and keep the maps from growing with every workspace ever seen.
        if not self._tickets:
            self._workspaces.clear()
            self._keys.clear()
            self._clock = 0.0
