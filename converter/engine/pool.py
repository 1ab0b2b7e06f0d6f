"""The engine pool: N supervised instances, a bounded wait queue, and the retry policy.

Every conversion gets its own scratch directory, an instance of its own for its
whole duration, and a deadline that queueing counts against. Failures are
classified here: a document LibreOffice cannot open is the client's problem
(422); an instance that died or hung is ours (restart it, retry once elsewhere).

Under the fair scheduler a heavy conversion (CONVERTER_HEAVY_SECONDS) never takes the
last idle instance of a pool of two or more while another instance converts: that one
is the express lane for light work, which the OS then time-slices with the heavy
conversions on the same cores.
"""

from __future__ import annotations

import functools
import logging
import math
import shutil
import subprocess
import threading
import time
import xmlrpc.client
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converter import metrics
from converter.config import Config
from converter.engine.allocator import allocator_name, find_allocator
from converter.engine.client import (
    FAULT_EXPORT_FAILED,
    FAULT_LOAD_FAILED,
    EngineCallTimeout,
    EngineGone,
)
from converter.engine.instance import (
    Instance,
    Spawner,
    State,
    find_engine_python,
    find_soffice,
)
from converter.engine.profile import write_profile
from converter.engine.scheduler import Full, Scheduler, Tenant, Ticket
from converter.engine.scratch import scratch_dir
from converter.errors import (
    ConversionTimeout,
    EngineStartError,
    Overloaded,
    UnprocessableDocument,
    UpstreamError,
)

logger = logging.getLogger("converter.engine")

START_TIMEOUT = 90.0


@dataclass(frozen=True)
class EngineJob:
    """What the engine needs for one conversion; built by the service from an ExportPlan."""

    import_filter: str
    export_filter: str
    filter_options: list[str]
    # Opens an encrypted source; kept out of reprs so it never reaches a log line.
    password: str | None = field(default=None, repr=False)
    # landscape / update_indexes: the bridge's layout step after loading.
    extras: dict[str, Any] = field(default_factory=dict)
    # Some exports write one file per part (CSV of every sheet: <stem>-<sheet>.csv).
    many_outputs: bool = False
    # Labels for the duration histogram only; the engine never reads them.
    source: str = ""
    target: str = ""
    # Who asks, in which class (sync or async), and the estimated seconds it will take:
    # what the scheduler orders the wait queue by.
    tenant: Tenant = field(default_factory=Tenant)
    cost: float = 1.0


def _clear_leftovers(target: Path) -> None:
    """Remove what a killed attempt left next to the target before trying again.

    A LibreOffice killed mid-export leaves a partial file and a ``.~lock.<name>#``
    lock file; the next instance would see the target locked and abort its store.
    """
    target.unlink(missing_ok=True)
    for part in target.parent.glob(f"{target.stem}-*{target.suffix}"):
        part.unlink(missing_ok=True)
    for lock in target.parent.glob(".~lock.*#"):
        lock.unlink(missing_ok=True)


def _has_output(target: Path, many: bool) -> bool:
    if target.exists() and target.stat().st_size > 0:
        return True
    return many and any(p.stat().st_size > 0
                        for p in target.parent.glob(f"{target.stem}-*{target.suffix}"))


class EnginePool:
    """A pool of LibreOffice instances under a supervisor thread."""

    def __init__(self, config: Config, root: Path | None = None) -> None:
        self.config = config
        self.root = (root or config.data_path / "engine").resolve()
        self.scratch_root = self.root / "scratch"
        self.template = self.root / "profile-template"
        self.size = config.workers
        self.spawner = Spawner()
        soffice = find_soffice(config.soffice)
        python = find_engine_python(config.engine_python)
        preload = find_allocator(config.soffice_allocator)
        self.allocator = allocator_name(preload)
        self.instances = [
            Instance(i, self.root / f"instance-{i}", self.scratch_root, self.template,
                     soffice, python, self.spawner, preload)
            for i in range(self.size)
        ]
        self._lock = threading.RLock()
        self.cond = threading.Condition(self._lock)
        self.scheduler = Scheduler(config.engine_scheduler, config.queue_size,
                                   config.queue_per_workspace)
        self.busy = 0
        self.busy_max = 0
        self.conversions_total = 0
        self.restarts: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._restarting: set[int] = set()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.start_error: str = ""
        metrics.ENGINE_INSTANCES.set(self.size)

    # ----------------------------------------------------------------- lifecycle
    def start(self, wait: bool = True) -> None:
        """Start every instance in parallel and the supervisor; optionally wait until ready."""
        if self.scratch_root.exists():
            shutil.rmtree(self.scratch_root, ignore_errors=True)  # left by a killed process
        self.scratch_root.mkdir(parents=True, exist_ok=True)
        for inst in self.instances:
            inst.root.mkdir(parents=True, exist_ok=True)
        self._prepare_template()
        logger.info("engine pool of %d instances; LibreOffice runs on the %s malloc", self.size,
                    self.allocator, extra={"allocator": self.allocator})
        for inst in self.instances:
            self._restart_async(inst, "start")
        self._supervisor = threading.Thread(target=self._supervise, name="engine-supervisor",
                                            daemon=True)
        self._supervisor.start()
        if wait:
            self.wait_ready(START_TIMEOUT)

    def _prepare_template(self) -> None:
        # LibreOffice initialises a new profile and exits with 81 to be restarted;
        # doing that once here spares every instance (re)start that extra second.
        if (self.template / "user" / "extensions").exists():
            write_profile(self.template)
            return
        shutil.rmtree(self.template, ignore_errors=True)
        write_profile(self.template)
        first = self.instances[0]
        cmd = [first.soffice_path, "--headless", "--invisible", "--norestore", "--nologo",
               "--nolockcheck", f"-env:UserInstallation={self.template.as_uri()}",
               "--terminate_after_init"]
        tmp = self.scratch_root / "template-tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run(cmd, env={**first._env(), "TMPDIR": str(tmp)},
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60, check=False)
        except subprocess.TimeoutExpired:
            logger.warning("profile template initialisation timed out; instances start fresh")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        write_profile(self.template)

    def wait_ready(self, timeout: float) -> None:
        """Block until every instance answers, or raise EngineStartError."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise EngineStartError(self.start_error or "engine pool not ready in time")
            time.sleep(0.05)

    def ready(self) -> bool:
        """True when every instance is up (idle or converting)."""
        return all(i.state in (State.IDLE, State.BUSY, State.DRAINING) for i in self.instances)

    def stop(self) -> None:
        """Stop the supervisor and kill every LibreOffice; removes scratch space."""
        self._stop.set()
        for inst in self.instances:
            inst.kill()
        shutil.rmtree(self.scratch_root, ignore_errors=True)

    # ----------------------------------------------------------------- supervision
    def _restart_async(self, inst: Instance, reason: str) -> None:
        with self.cond:
            if inst.index in self._restarting or self._stop.is_set():
                return
            self._restarting.add(inst.index)
            inst.state = State.STARTING
        threading.Thread(target=self._restart, args=(inst, reason), daemon=True,
                         name=f"{inst.name}-restart").start()

    def _restart(self, inst: Instance, reason: str) -> None:
        try:
            for attempt in range(3):
                if self._stop.is_set():
                    return
                try:
                    started = time.monotonic()
                    inst.spawn()
                    inst.wait_ready(START_TIMEOUT)
                    logger.info("%s ready in %.2fs (%s), warmed up on %s", inst.name,
                                time.monotonic() - started, reason, ", ".join(inst.warmed),
                                extra={"instance": inst.name, "reason": reason})
                    break
                except (EngineStartError, EngineGone, EngineCallTimeout,
                        xmlrpc.client.Fault, OSError) as exc:
                    self.start_error = str(exc)
                    logger.error("%s failed to start (attempt %d): %s", inst.name,
                                 attempt + 1, exc, extra={"instance": inst.name})
                    inst.kill()
                    time.sleep(0.5 * (attempt + 1))
            else:
                # Left DEAD, so the supervisor tries again on its next round.
                with self.cond:
                    inst.state = State.DEAD
                return
            if reason != "start":
                self.restarts[reason] += 1
                metrics.ENGINE_RESTARTS.labels(reason=reason).inc()
            metrics.INSTANCE_CONVERSIONS.labels(instance=inst.name).set(0)
            inst.drain_reason = ""
            with self.cond:
                inst.state = State.IDLE
                self.cond.notify_all()
                self._dispatch()
        finally:
            with self.cond:
                self._restarting.discard(inst.index)

    def _supervise(self) -> None:
        while not self._stop.wait(0.5):
            for inst in self.instances:
                with self.cond:
                    if inst.index in self._restarting:
                        continue
                    state = inst.state
                rss = self._rss(inst)
                if state == State.IDLE and not inst.alive():
                    logger.warning("%s died while idle; restarting", inst.name,
                                   extra={"instance": inst.name, "reason": "crash"})
                    inst.kill()
                    self._restart_async(inst, "crash")
                elif state == State.IDLE and rss > self.config.max_rss_mb:
                    self._restart_async(inst, "memory")
                elif state == State.DEAD:
                    self._restart_async(inst, "crash")

    def _rss(self, inst: Instance) -> float:
        # Read on every supervisor round and release; publishing it here keeps scrapes
        # free of /proc reads (and right in multiprocess mode, where scrapes see only files).
        rss = inst.rss_mb()
        metrics.INSTANCE_RSS.labels(instance=inst.name).set(round(rss, 1))
        return rss

    # ----------------------------------------------------------------- conversions
    def scratch(self) -> AbstractContextManager[Path]:
        """A private directory for one conversion, always removed afterwards."""
        return scratch_dir(self.scratch_root)

    @property
    def waiting(self) -> int:
        """Conversions queued for an instance."""
        with self.cond:
            return len(self.scheduler)

    def _acquire(self, deadline: float, avoid: set[int], job: EngineJob) -> Instance:
        with self.cond:
            ticket = Ticket(job.tenant, job.cost, frozenset(avoid),
                            wakeup=threading.Condition(self._lock))
            self.scheduler.add(ticket)
            self._dispatch()
            if ticket.instance is None:
                self._refuse_if_full(ticket)
            metrics.ENGINE_WAITING.inc()
            queued = time.monotonic()
            try:
                # The pool hands instances to tickets in the scheduler's order (_dispatch);
                # a waiter only ever wakes for its own ticket.
                while ticket.instance is None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self.scheduler.remove(ticket)
                        raise ConversionTimeout(
                            f"No engine instance became free within "
                            f"CONVERTER_CONVERSION_TIMEOUT ({self.config.conversion_timeout:g}s)")
                    ticket.wakeup.wait(remaining)
                metrics.QUEUE_WAIT_SECONDS.observe(time.monotonic() - queued)
                inst: Instance = ticket.instance
                return inst
            finally:
                metrics.ENGINE_WAITING.dec()

    def _refuse_if_full(self, ticket: Ticket) -> None:
        tenant = ticket.tenant
        try:
            self.scheduler.check(tenant, including=1)
        except Full as full:
            self.scheduler.remove(ticket)
            if full.scope == "workspace":
                # About how long until this workspace's own queue has room again.
                queued = self.scheduler.queued_cost(tenant.workspace)
                retry = max(1, min(60, math.ceil(queued / max(1, self.size))))
                raise Overloaded(
                    f"This workspace already has {full.waiting} conversions queued "
                    f"(CONVERTER_QUEUE_PER_WORKSPACE); retry shortly", retry_after=retry) from None
            raise Overloaded(
                f"All {self.size} engine instances are busy and {full.waiting} conversions "
                "are queued; retry shortly", retry_after=2) from None

    def _dispatch(self) -> None:
        """Hand every idle instance to the ticket the scheduler picks (under self.cond)."""
        while True:
            idle = [i for i in self.instances if i.state == State.IDLE]
            if not idle:
                return
            ticket = self.scheduler.pick(functools.partial(self._can_take, idle))
            if ticket is None:
                return
            inst = min(self._fits(ticket, idle), key=lambda i: i.conversions)
            inst.state = State.BUSY
            self.busy += 1
            metrics.ENGINE_BUSY.inc()
            if self.busy > self.busy_max:
                self.busy_max = self.busy
                metrics.ENGINE_BUSY_MAX.set(self.busy_max)
            ticket.instance = inst
            ticket.wakeup.notify()

    def _can_take(self, idle: list[Instance], ticket: Ticket) -> bool:
        return bool(self._fits(ticket, idle))

    def _fits(self, ticket: Ticket, idle: list[Instance]) -> list[Instance]:
        """The idle instances ticket may take: a crash retry avoids the instance it lost."""
        preferred = [i for i in idle if i.index not in ticket.avoid] or (
            idle if len(ticket.avoid) >= self.size else [])
        # The last idle instance of the pool, not of preferred: a retry that avoids one of
        # two idle instances still leaves the other free for light work.
        if preferred and len(idle) == 1 and self._held_back(ticket):
            return []
        return preferred

    def _held_back(self, ticket: Ticket) -> bool:
        """Whether a heavy conversion must leave the last idle instance to light work."""
        # Instances cannot be preempted, so one kept idle is the only way light work starts
        # at once; the pool has one more than the CPUs (CONVERTER_WORKERS=auto), so heavy
        # work still fills every core. No time window: whether a neighbour is about is
        # unknowable in advance, and a window either idles the instance or makes the
        # neighbour's first request wait. A pool of one has no instance to spare; fifo is
        # the plain reference and hands out every instance.
        if (self.scheduler.policy != "fair" or self.size < 2
                or ticket.cost < self.config.heavy_seconds):
            return False
        # Only while another instance converts: its release (_release, then _dispatch)
        # hands the held-back ticket an instance. With the others restarting (a crash
        # retry waiting out the restart of the instance it lost) holding back would wait
        # on restarts that may fail, not on work that will end.
        return any(i.state == State.BUSY for i in self.instances)

    def _release(self, inst: Instance, healthy: bool) -> None:
        with self.cond:
            self.busy -= 1
            metrics.ENGINE_BUSY.dec()
            if not healthy:
                inst.state = State.DEAD
                reason = inst.drain_reason or "crash"
            elif inst.conversions >= self.config.recycle_after:
                inst.state, reason = State.DRAINING, "recycle"
            elif self._rss(inst) > self.config.max_rss_mb:
                inst.state, reason = State.DRAINING, "memory"
            else:
                inst.state, reason = State.IDLE, ""
            self.cond.notify_all()
            self._dispatch()
        if reason:
            # The others keep serving while this one restarts.
            self._restart_async(inst, reason)

    def convert(self, source: Path, target: Path, job: EngineJob, deadline: float) -> None:
        """Convert source to target (both in a scratch dir) before the monotonic deadline."""
        tried: set[int] = set()
        crashes = 0
        while True:
            inst = self._acquire(deadline, tried, job)
            tried.add(inst.index)
            _clear_leftovers(target)
            healthy = False
            try:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    healthy = True
                    raise ConversionTimeout("Conversion deadline passed while queued")
                assert inst.client is not None
                started = time.monotonic()
                inst.client.convert(str(source), str(target), export_filter=job.export_filter,
                                    filter_options=job.filter_options,
                                    import_filter=job.import_filter or None, timeout=remaining,
                                    password=job.password, extras=job.extras)
                metrics.CONVERSION_SECONDS.labels(source=job.source, target=job.target).observe(
                    time.monotonic() - started)
                inst.conversions += 1
                healthy = True
                with self.cond:
                    self.conversions_total += 1
                metrics.ENGINE_CONVERSIONS.inc()
                metrics.INSTANCE_CONVERSIONS.labels(instance=inst.name).set(inst.conversions)
            except EngineCallTimeout:
                self.failures["timeout"] += 1
                inst.drain_reason = "timeout"
                inst.kill()
                raise ConversionTimeout(
                    f"Conversion exceeded CONVERTER_CONVERSION_TIMEOUT "
                    f"({self.config.conversion_timeout:g}s); the engine instance was restarted"
                ) from None
            except EngineGone as exc:
                logger.warning("%s lost during conversion: %s", inst.name, exc,
                               extra={"instance": inst.name, "reason": "crash"})
                crashes = self._crashed(inst, crashes)
                continue  # retried once on another instance
            except xmlrpc.client.Fault as fault:
                if not inst.alive():
                    # LibreOffice died under the bridge before it could say so: a crash,
                    # not a verdict on the document.
                    crashes = self._crashed(inst, crashes)
                    continue
                healthy = True
                inst.conversions += 1
                metrics.INSTANCE_CONVERSIONS.labels(instance=inst.name).set(inst.conversions)
                if fault.faultCode in (FAULT_LOAD_FAILED, FAULT_EXPORT_FAILED):
                    raise UnprocessableDocument(
                        "LibreOffice cannot open or convert this document (corrupt, encrypted "
                        "or not the format it claims to be)") from None
                raise UpstreamError(f"Engine rejected the request: {fault.faultString}",
                                    retryable=False) from None
            finally:
                self._release(inst, healthy)
            if not _has_output(target, job.many_outputs):
                raise UnprocessableDocument("LibreOffice produced no output for this document")
            return

    def _crashed(self, inst: Instance, crashes: int) -> int:
        """Record an instance lost mid-conversion; give up on the document at the second."""
        self.failures["crash"] += 1
        inst.drain_reason = "crash"
        inst.kill()
        if crashes + 1 >= 2:
            raise UnprocessableDocument(
                "The document crashed LibreOffice on two engine instances")
        return crashes + 1

    # ----------------------------------------------------------------- observation
    def stats(self, fresh: bool = False) -> dict[str, object]:
        """Counters for /metrics and tests (always current: fresh is for remote engines)."""
        with self.cond:
            return {
                "size": self.size,
                "allocator": self.allocator,
                "ready": self.ready(),
                "busy": self.busy,
                "busy_max": self.busy_max,
                "waiting": self.waiting,
                "conversions_total": self.conversions_total,
                "restarts": dict(self.restarts),
                "failures": dict(self.failures),
                "instances": [
                    {"name": i.name, "state": i.state.value, "conversions": i.conversions,
                     "generation": i.generation, "soffice_pid": i.soffice_pid(),
                     "rss_mb": round(i.rss_mb(), 1)}
                    for i in self.instances
                ],
            }
