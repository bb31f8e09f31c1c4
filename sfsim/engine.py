"""The event engine: a SimPy clock plus the bookkeeping every scheme shares.

SimPy owns time and the event queue; this module adds three things on top and nothing else:

* ``Trace``: append-only spans ``(round, iteration, device, phase, resource, start_s, end_s,
  bytes, flops)``, kept as one list per column; every compute step and every transfer is one span.
* ``MemoryLedger``: allocate / free events per owner (each device, and ``"server"``) and kind
  (weights, adapters, gradients, optimizer, activations, boundary, cache, overhead), kept as
  columns too; levels and peaks are derived from it, never kept separately.
* ``Sim``: the context a scheme's SimPy processes run in, with the two primitives they need:
  ``compute`` (hold a processor for some seconds) and ``send`` (move bytes over a device's link).
  The server's queue and dispatch live in `sfsim.server`.

Physics (how long a pass or a transfer takes) comes from the cost model and the links; processes
only sequence time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from sfsim import fleetdata
from sfsim.faults import FaultPlan, plan_for
from sfsim.world import World

MEMORY_KINDS = (
    "weights",
    "adapters",
    "gradients",
    "optimizer",
    "activations",
    "boundary",
    "cache",
    "overhead",
)
_KINDS = frozenset(MEMORY_KINDS)
SERVER = "server"

Proc = Generator[simpy.Event, Any, Any]


@dataclass(frozen=True, slots=True)
class Span:
    round: int
    iteration: int
    device: str
    phase: str
    resource: str  # device | uplink | downlink | server | server_queue
    start_s: float
    end_s: float
    bytes: float = 0.0
    flops: float = 0.0


@dataclass(frozen=True, slots=True)
class MemEvent:
    seq: int
    time_s: float
    owner: str
    kind: str
    delta_bytes: float
    label: str


TRACE_COLUMNS = (
    "round",
    "iteration",
    "device",
    "phase",
    "resource",
    "start_s",
    "end_s",
    "bytes",
    "flops",
)
MEMORY_COLUMNS = ("seq", "time_s", "owner", "kind", "delta_bytes", "label")
EVENT_COLUMNS = ("time_s", "round", "iteration", "device", "kind", "value", "detail")


class _Columns:
    """A table stored by column: one Python list per name in ``FIELDS``, appended in place."""

    __slots__ = ()
    FIELDS: tuple[str, ...] = ()

    def __init__(self) -> None:
        for name in self.FIELDS:
            setattr(self, name, [])

    def __len__(self) -> int:
        return len(getattr(self, self.FIELDS[0]))

    def columns(self) -> dict[str, list[Any]]:
        """The columns by name, in ``FIELDS`` order (the lists themselves, not copies)."""
        return {name: getattr(self, name) for name in self.FIELDS}


class Trace(_Columns):
    """The spans, stored column by column (one Python list per field, appended in place).

    Appending a span costs nine list appends and no object; `sfsim.results.trace_frame` turns the
    columns into a DataFrame without touching rows. ``spans`` rebuilds `Span` objects on demand
    (tests, small scenarios); ``add`` accepts one for schemes that build their own.
    """

    __slots__ = TRACE_COLUMNS

    FIELDS = TRACE_COLUMNS
    round: list[int]
    iteration: list[int]
    device: list[str]
    phase: list[str]
    resource: list[str]
    start_s: list[float]
    end_s: list[float]
    bytes: list[float]
    flops: list[float]

    def record(
        self,
        round: int,
        iteration: int,
        device: str,
        phase: str,
        resource: str,
        start_s: float,
        end_s: float,
        nbytes: float = 0.0,
        flops: float = 0.0,
    ) -> None:
        if end_s < start_s:
            raise AssertionError(
                f"span ends before it starts: {device} {phase} on {resource}, "
                f"{start_s} > {end_s}"
            )
        self.round.append(round)
        self.iteration.append(iteration)
        self.device.append(device)
        self.phase.append(phase)
        self.resource.append(resource)
        self.start_s.append(start_s)
        self.end_s.append(end_s)
        self.bytes.append(nbytes)
        self.flops.append(flops)

    def add(self, span: Span) -> None:
        self.record(span.round, span.iteration, span.device, span.phase, span.resource,
                    span.start_s, span.end_s, span.bytes, span.flops)

    @property
    def spans(self) -> list[Span]:
        return [Span(*row) for row in zip(*self.columns().values(), strict=True)]


class MemoryLedger:
    """Allocate / free events, stored column by column, and the current level per (owner, kind)."""

    __slots__ = ("_level", "delta_bytes", "kind", "label", "owner", "time_s")

    def __init__(self) -> None:
        self.time_s: list[float] = []
        self.owner: list[str] = []
        self.kind: list[str] = []
        self.delta_bytes: list[float] = []
        self.label: list[str] = []
        self._level: dict[tuple[str, str], float] = {}

    def alloc(self, t_s: float, owner: str, kind: str, nbytes: float, label: str = "") -> None:
        self._record(t_s, owner, kind, nbytes, label)

    def free(self, t_s: float, owner: str, kind: str, nbytes: float, label: str = "") -> None:
        self._record(t_s, owner, kind, -nbytes, label)

    def level(self, owner: str, kind: str | None = None) -> float:
        if kind is not None:
            return self._level.get((owner, kind), 0.0)
        return sum(v for (o, _), v in self._level.items() if o == owner)

    def _record(self, t_s: float, owner: str, kind: str, delta: float, label: str) -> None:
        if kind not in _KINDS:
            raise ValueError(f"unknown memory kind {kind!r}")
        if delta == 0:
            return
        key = (owner, kind)
        new = self._level.get(key, 0.0) + delta
        if new < -1e-6:
            raise AssertionError(f"{owner} frees more {kind} than it holds ({label})")
        self._level[key] = new
        self.time_s.append(t_s)
        self.owner.append(owner)
        self.kind.append(kind)
        self.delta_bytes.append(delta)
        self.label.append(label)

    def __len__(self) -> int:
        return len(self.time_s)

    def columns(self) -> dict[str, list[Any]]:
        """The columns by name, in `MEMORY_COLUMNS` order (``seq`` is the event's position)."""
        cols: dict[str, list[Any]] = {"seq": list(range(len(self.time_s)))}
        cols.update((name, getattr(self, name)) for name in MEMORY_COLUMNS[1:])
        return cols

    @property
    def events(self) -> list[MemEvent]:
        return [MemEvent(*row) for row in zip(*self.columns().values(), strict=True)]


class EventLog(_Columns):
    """What happened to the training, beside the spans: one row per event, stored as columns.

    The trace says where time went; the event log says what was learned from what, for the
    learner (`sfsim.learning`) and for the accounting of samples. Kinds and their ``value``:

    * ``aggregate``: device ``device``'s update entered round ``round``'s aggregation, with
      weight ``value`` (its samples); one row per aggregated device, at the aggregation's end.
    * ``drop``: device ``device`` dropped out; ``value`` samples lost, ``detail`` the reason.
    * ``update``: the server applied an update from ``device``'s batch ``iteration`` at
      ``time_s``; ``value`` its staleness in seconds (asynchronous schemes).

    Schemes may log other kinds; readers ignore kinds they do not know.
    """

    __slots__ = EVENT_COLUMNS

    FIELDS = EVENT_COLUMNS
    time_s: list[float]
    round: list[int]
    iteration: list[int]
    device: list[str]
    kind: list[str]
    value: list[float]
    detail: list[str]

    def record(self, time_s: float, kind: str, *, round: int, device: str = "",
               iteration: int = -1, value: float = 0.0, detail: str = "") -> None:
        self.time_s.append(time_s)
        self.round.append(round)
        self.iteration.append(iteration)
        self.device.append(device)
        self.kind.append(kind)
        self.value.append(float(value))
        self.detail.append(detail)


class _Lock:
    """A capacity-1 resource that grants requests in SimPy ``Resource`` order, more cheaply.

    It reproduces the event order of ``simpy.Resource(capacity=1)`` exactly, so a run is the
    same to the last bit whichever is used: a request is an event triggered at once when the
    lock is free (the process resumes one step later, as with a granted ``Request``), queued
    otherwise; a release with requests queued grants the first one from an event processed one
    step later (SimPy's ``Release``). What it saves is SimPy's bookkeeping: the ``Request``
    objects, and the ``Release`` event when nobody waits (it would do nothing).
    """

    __slots__ = ("busy", "env", "waiters")

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.busy = False
        self.waiters: deque[simpy.Event] = deque()

    def acquire(self) -> simpy.Event:
        event = simpy.Event(self.env)
        if self.busy or self.waiters:
            self.waiters.append(event)
            self._grant()
        else:
            self.busy = True
            event.succeed()
        return event

    def release(self) -> None:
        self.busy = False
        if self.waiters:
            handover = simpy.Event(self.env)
            handover.callbacks.append(self._grant)
            handover.succeed()

    def cancel(self, event: simpy.Event) -> None:
        """Give up a request whose process was interrupted (granted already: release it)."""
        if event in self.waiters:
            self.waiters.remove(event)
        elif event.triggered:
            self.release()

    def _grant(self, _: object = None) -> None:
        if not self.busy and self.waiters:
            self.busy = True
            self.waiters.popleft().succeed()


class Sim:
    """What a scheme's processes see: the clock, the world, the trace, the memory ledger."""

    def __init__(self, world: World):
        self.env = simpy.Environment()
        self.world = world
        self.trace = Trace()
        self.memory = MemoryLedger()
        self.events = EventLog()
        self._slow_rng: np.random.Generator = np.random.default_rng(world.seeds.variability)
        self.scheduler_rng: np.random.Generator = np.random.default_rng(world.seeds.scheduler)
        self._persistent = fleetdata.has_persistent_factors(world.scenario)
        # compute-speed traces (sfsim.traces): looked up per compute only when a scenario has one
        self._speed_traced = world.scenario.traces.compute is not None
        #: outages and server slowdowns (sfsim.faults); None: no faults, nothing changes
        self.faults: FaultPlan | None = plan_for(world)
        # Each device computes one thing at a time and each link carries one transfer at a time.
        self._busy: dict[tuple[str, str], _Lock] = {}
        self.notes: dict[str, Any] = {}
        # channel.access: shared (sfsim.channel): one cell per direction; None: dedicated bands
        self._cells: dict[str, Any] | None = None
        if world.scenario.channel.access == "shared":
            from sfsim.channel import make_cells

            links = [lk for d in world.devices for lk in (d.uplink, d.downlink)]
            self._cells = make_cells(self.env, world.scenario.channel.sharing, self.faults, links)
        #: bytes sent once per broadcast (channel.broadcast_downlink), counted on the cell
        self.broadcast_bytes = 0.0

    @property
    def now(self) -> float:
        return float(self.env.now)

    def _resource(self, owner: str, resource: str) -> _Lock:
        lock = self._busy.get((owner, resource))
        if lock is None:
            lock = self._busy[(owner, resource)] = _Lock(self.env)
        return lock

    def slowdown(self) -> float:
        """A per-phase compute slowdown factor drawn from the variability model (1 for none)."""
        v = self.world.variability
        if v.compute == "none" or v.sigma == 0:
            return 1.0
        return float(self._slow_rng.lognormal(mean=0.0, sigma=v.sigma))

    # The two primitives hold a `_Lock` rather than ``with resource.request()``: the same event
    # order (see `_Lock`), fewer events. An exception inside leaves the lock held, which is
    # harmless: an exception ends the simulation.

    def compute(
        self,
        owner: str,
        phase: str,
        seconds: float,
        *,
        round: int,
        iteration: int = -1,
        flops: float = 0.0,
        resource: str = "device",
        device: str | None = None,
        vary: bool = True,
    ) -> Proc:
        """Hold ``owner``'s processor for ``seconds`` and record a span.

        The time is ``seconds`` × a per-phase slowdown (``vary``: `slowdown`) × the owner's
        persistent factor (`World.compute_factor`, applied whatever ``vary`` says).
        """
        env = self.env
        lock = self._resource(owner, resource)
        request = lock.acquire()
        try:
            yield request
        except simpy.Interrupt:  # the device dropped out while waiting (sfsim.faults)
            lock.cancel(request)
            raise
        start = float(env.now)
        duration = seconds * (self.slowdown() if vary else 1.0)
        if self._persistent:  # variability.device / server_factor / devices[].slowdown
            duration *= self.world.compute_factor(owner)
        if self._speed_traced:  # integrate the nominal work over the device's speed trace
            profile = self.world.speed_profile(owner)
            if profile is not None:
                duration = profile.duration_s(duration, start)
        if self.faults is not None and owner == SERVER:  # server slowdown episodes
            duration = self.faults.server_s(start, duration)
        try:
            yield env.timeout(duration)
        except simpy.Interrupt:  # dropped out mid-phase: the part done is recorded
            self._cut(lock, start, duration, round, iteration, device or owner, phase, resource,
                      0.0, flops)
            raise
        self.trace.record(
            round, iteration, device or owner, phase, resource, start, float(env.now), 0.0, flops
        )
        lock.release()

    def send(
        self,
        device: str,
        direction: str,
        phase: str,
        nbytes: float,
        *,
        round: int,
        iteration: int = -1,
    ) -> Proc:
        """Move ``nbytes`` over ``device``'s uplink or downlink and record a span."""
        if self._cells is not None:  # a shared cell (sfsim.channel); dedicated: below
            return (yield from self._through_cell(
                [device], direction, phase, nbytes, round=round, iteration=iteration))
        spec = self.world.device(device)
        link = spec.uplink if direction == "uplink" else spec.downlink
        env = self.env
        lock = self._resource(device, direction)
        request = lock.acquire()
        try:
            yield request
        except simpy.Interrupt:  # the device dropped out while waiting (sfsim.faults)
            lock.cancel(request)
            raise
        start = float(env.now)
        duration = link.duration_s(nbytes, start)
        if self.faults is not None:  # link outages pause the transfer (sfsim.faults)
            duration = self.faults.transfer_s(device, start, duration)
        try:
            yield env.timeout(duration)
        except simpy.Interrupt:  # dropped out mid-transfer: the part sent is recorded
            self._cut(lock, start, duration, round, iteration, device, phase, direction,
                      nbytes, 0.0)
            raise
        self.trace.record(
            round, iteration, device, phase, direction, start, float(env.now), nbytes, 0.0
        )
        lock.release()

    def broadcast(self, devices: list[str], phase: str, nbytes: float, *, round: int) -> Proc:
        """One downlink transmission of ``nbytes`` that every device in ``devices`` receives.

        It waits for every receiver's downlink, then moves at the rate of the worst receiver's
        link (the longest transfer from this start); each receiver gets a span with the same
        start and end and ``nbytes``; the cell carried them once (`broadcast_bytes`).
        """
        if not devices:
            return
        self.broadcast_bytes += nbytes
        if self._cells is not None:
            yield from self._through_cell(devices, "downlink", phase, nbytes, round=round,
                                          iteration=-1)
            return
        locks = [self._resource(d, "downlink") for d in devices]
        yield self.env.all_of([lock.acquire() for lock in locks])
        start = float(self.env.now)
        duration = max(self.world.device(d).downlink.duration_s(nbytes, start) for d in devices)
        yield self.env.timeout(duration)
        end = float(self.env.now)
        for d, lock in zip(devices, locks, strict=True):
            self.trace.record(round, -1, d, phase, "downlink", start, end, nbytes, 0.0)
            lock.release()

    def _through_cell(self, devices: list[str], direction: str, phase: str, nbytes: float, *,
                      round: int, iteration: int) -> Proc:
        """A transfer through the shared cell of ``direction`` (several devices: a broadcast)."""
        from sfsim.channel import Job

        env = self.env
        locks = [self._resource(d, direction) for d in devices]
        requests = [lock.acquire() for lock in locks]
        try:
            yield requests[0] if len(requests) == 1 else env.all_of(requests)
        except simpy.Interrupt:  # the device dropped out while waiting (sfsim.faults)
            for lock, request in zip(locks, requests, strict=True):
                lock.cancel(request)
            raise
        start = float(env.now)
        links = [getattr(self.world.device(d), direction) for d in devices]
        if len(links) == 1:
            link = links[0]
        else:  # a broadcast moves at the rate of the worst receiver
            link = max(links, key=lambda lk: lk.duration_s(nbytes, start))
        job = Job(link, nbytes, devices[0] if len(devices) == 1 else "")
        cell = self._cells[direction]  # type: ignore[index]
        try:
            if nbytes > 0:
                yield from cell.transfer(job)
        except simpy.Interrupt:  # dropped out mid-transfer: the part sent is recorded
            now = float(env.now)
            for d, lock in zip(devices, locks, strict=True):
                self.trace.record(round, iteration, d, phase, direction, start, now,
                                  nbytes * job.sent_fraction, 0.0)
                lock.release()
            raise
        end = float(env.now)
        for d, lock in zip(devices, locks, strict=True):
            self.trace.record(round, iteration, d, phase, direction, start, end, nbytes, 0.0)
            lock.release()

    def _cut(self, lock: _Lock, start: float, duration: float, round: int, iteration: int,
             device: str, phase: str, resource: str, nbytes: float, flops: float) -> None:
        """Record the done part of an interrupted span (bytes, FLOPs pro rata) and release."""
        now = float(self.env.now)
        part = (now - start) / duration if duration > 0 else 1.0
        self.trace.record(round, iteration, device, phase, resource, start, now,
                          nbytes * part, flops * part)
        lock.release()

    def wait_span(
        self,
        device: str,
        phase: str,
        resource: str,
        start_s: float,
        *,
        round: int,
        iteration: int = -1,
    ) -> None:
        """Record a span of waiting (e.g. in the server queue) that ends now."""
        self.trace.record(round, iteration, device, phase, resource, start_s, self.now)

    def log(self, kind: str, *, round: int, device: str = "", iteration: int = -1,
            value: float = 0.0, detail: str = "") -> None:
        """Record a training event (see `EventLog`) at the current time."""
        self.events.record(self.now, kind, round=round, device=device, iteration=iteration,
                           value=value, detail=detail)

    def alloc(self, owner: str, kind: str, nbytes: float, label: str = "") -> None:
        self.memory._record(float(self.env.now), owner, kind, nbytes, label)

    def free(self, owner: str, kind: str, nbytes: float, label: str = "") -> None:
        self.memory._record(float(self.env.now), owner, kind, -nbytes, label)

    def all_of(self, procs: list[Proc]) -> simpy.events.Condition:
        """Start processes and return an event that fires when all have finished."""
        return self.env.all_of([self.env.process(p) for p in procs])
