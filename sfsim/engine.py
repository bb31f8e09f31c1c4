"""The event engine: a SimPy clock plus the bookkeeping every scheme shares.

SimPy owns time and the event queue; this module adds three things on top and nothing else:

* ``Trace``: an append-only list of typed spans ``(round, iteration, device, phase, resource,
  start_s, end_s, bytes, flops)``; every compute step and every transfer is one span.
* ``MemoryLedger``: allocate / free events per owner (each device, and ``"server"``) and kind
  (weights, adapters, gradients, optimizer, activations, boundary, cache, overhead); levels and
  peaks are derived from it, never kept separately.
* ``Sim``: the context a scheme's SimPy processes run in, with the two primitives they need:
  ``compute`` (hold a processor for some seconds) and ``send`` (move bytes over a device's link).
  The server's queue and dispatch live in `sfsim.server`.

Physics (how long a pass or a transfer takes) comes from the cost model and the links; processes
only sequence time.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

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


@dataclass
class Trace:
    spans: list[Span] = field(default_factory=list)

    def add(self, span: Span) -> None:
        if span.end_s < span.start_s:
            raise AssertionError(f"span ends before it starts: {span}")
        self.spans.append(span)


@dataclass
class MemoryLedger:
    events: list[MemEvent] = field(default_factory=list)
    _level: dict[tuple[str, str], float] = field(default_factory=dict)

    def alloc(self, t_s: float, owner: str, kind: str, nbytes: float, label: str = "") -> None:
        self._record(t_s, owner, kind, nbytes, label)

    def free(self, t_s: float, owner: str, kind: str, nbytes: float, label: str = "") -> None:
        self._record(t_s, owner, kind, -nbytes, label)

    def level(self, owner: str, kind: str | None = None) -> float:
        if kind is not None:
            return self._level.get((owner, kind), 0.0)
        return sum(v for (o, _), v in self._level.items() if o == owner)

    def _record(self, t_s: float, owner: str, kind: str, delta: float, label: str) -> None:
        if kind not in MEMORY_KINDS:
            raise ValueError(f"unknown memory kind {kind!r}")
        if delta == 0:
            return
        new = self._level.get((owner, kind), 0.0) + delta
        if new < -1e-6:
            raise AssertionError(f"{owner} frees more {kind} than it holds ({label})")
        self._level[(owner, kind)] = new
        self.events.append(MemEvent(len(self.events), t_s, owner, kind, delta, label))


class Sim:
    """What a scheme's processes see: the clock, the world, the trace, the memory ledger."""

    def __init__(self, world: World):
        self.env = simpy.Environment()
        self.world = world
        self.trace = Trace()
        self.memory = MemoryLedger()
        self._slow_rng: np.random.Generator = np.random.default_rng(world.seeds.variability)
        self.scheduler_rng: np.random.Generator = np.random.default_rng(world.seeds.scheduler)
        # Each device computes one thing at a time and each link carries one transfer at a time.
        self._busy: dict[tuple[str, str], simpy.Resource] = {}
        self.notes: dict[str, Any] = {}

    @property
    def now(self) -> float:
        return float(self.env.now)

    def _resource(self, owner: str, resource: str) -> simpy.Resource:
        key = (owner, resource)
        if key not in self._busy:
            self._busy[key] = simpy.Resource(self.env, capacity=1)
        return self._busy[key]

    def slowdown(self) -> float:
        """A per-phase compute slowdown factor drawn from the variability model (1 for none)."""
        v = self.world.variability
        if v.compute == "none" or v.sigma == 0:
            return 1.0
        return float(self._slow_rng.lognormal(mean=0.0, sigma=v.sigma))

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
        """Hold ``owner``'s processor for ``seconds`` (times a slowdown) and record a span."""
        with self._resource(owner, resource).request() as req:
            yield req
            start = self.now
            duration = seconds * (self.slowdown() if vary else 1.0)
            yield self.env.timeout(duration)
            self.trace.add(
                Span(
                    round, iteration, device or owner, phase, resource, start, self.now, 0.0, flops
                )
            )

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
        spec = self.world.device(device)
        link = spec.uplink if direction == "uplink" else spec.downlink
        with self._resource(device, direction).request() as req:
            yield req
            start = self.now
            yield self.env.timeout(link.duration_s(nbytes, start))
            self.trace.add(
                Span(round, iteration, device, phase, direction, start, self.now, nbytes, 0.0)
            )

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
        self.trace.add(Span(round, iteration, device, phase, resource, start_s, self.now))

    def alloc(self, owner: str, kind: str, nbytes: float, label: str = "") -> None:
        self.memory.alloc(self.now, owner, kind, nbytes, label)

    def free(self, owner: str, kind: str, nbytes: float, label: str = "") -> None:
        self.memory.free(self.now, owner, kind, nbytes, label)

    def all_of(self, procs: list[Proc]) -> simpy.events.Condition:
        """Start processes and return an event that fires when all have finished."""
        return self.env.all_of([self.env.process(p) for p in procs])
