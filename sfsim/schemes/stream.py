"""Streaming devices: forward-only devices that push their outputs up and never wait for replies.

In ``splitfrozen`` and ``fedmobillm`` nothing the device needs comes back from the server, so a
device does not wait between batches: it runs the forward of batch k, leaves the output in a send
buffer, and starts batch k+1 while a separate uplink process drains the buffer. Its compute and
its uplink thus overlap, and each stays busy as long as the other keeps up.

Flow control is by credits (a bounded buffer): a device may have at most ``buffer_batches`` outputs
that the server has not consumed yet (waiting in its send buffer, on the link, or queued at the
server); with every credit out it waits before the next forward. The scheme returns a credit when
its server consumes a batch (`DeviceStream.release`). This bounds the memory that waiting outputs
take on the device and on the server.

Memory on the device: a forward's working set (`sfsim.schemes.cuts.frozen_working_bytes`) while it
runs, then the output (with labels) as ``boundary`` until its upload ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import simpy

from sfsim.engine import Proc, Sim


@dataclass(frozen=True)
class Arrival:
    """One batch's output arrived at the server."""

    device: str
    round: int
    iteration: int
    arrival_s: float


@dataclass(frozen=True)
class StreamCosts:
    """What one batch costs a streaming device."""

    fwd_s: float
    fwd_flops: float
    working_bytes: float  # live during the forward
    up_bytes: float  # output + labels, held until uploaded


class DeviceStream:
    """One device's forward → send buffer → uplink pipeline for one round."""

    def __init__(self, sim: Sim, device: str, buffer_batches: int,
                 deliver: Callable[[Arrival], None], *, up_phase: str = "uplink_activations"):
        self.sim = sim
        self.device = device
        self.deliver = deliver
        self.up_phase = up_phase
        self.credits = simpy.Container(sim.env, capacity=buffer_batches, init=buffer_batches)

    def release(self) -> None:
        """The server consumed one of this device's batches: a credit comes back."""
        self.credits.put(1)

    def run(self, r: int, iterations: list[int], costs: StreamCosts,
            rounds: list[int] | None = None) -> Proc:
        """Forward every listed iteration's batch and stream its output up.

        ``rounds``, if given, labels each batch with its own round (a run without round
        barriers streams every round's batches in one go); otherwise every batch is round r's.
        """
        sim, dev = self.sim, self.device
        labels = rounds if rounds is not None else [r] * len(iterations)
        outbox: simpy.Store = simpy.Store(sim.env)
        sender = sim.env.process(self._uplink(outbox, costs.up_bytes))
        for rk, k in zip(labels, iterations, strict=True):
            yield self.credits.get(1)
            sim.alloc(dev, "activations", costs.working_bytes, "frozen forward working set")
            yield from sim.compute(dev, "device_fwd", costs.fwd_s, round=rk, iteration=k,
                                   flops=costs.fwd_flops)
            sim.free(dev, "activations", costs.working_bytes, "frozen forward working set")
            sim.alloc(dev, "boundary", costs.up_bytes, "output waiting for the uplink")
            yield outbox.put((rk, k))
        yield outbox.put(None)
        yield sender

    def _uplink(self, outbox: simpy.Store, up_bytes: float) -> Proc:
        sim, dev = self.sim, self.device
        while True:
            item = yield outbox.get()
            if item is None:
                return
            r, k = item
            yield from sim.send(dev, "uplink", self.up_phase, up_bytes, round=r, iteration=k)
            sim.free(dev, "boundary", up_bytes, "output uploaded")
            self.deliver(Arrival(dev, r, k, sim.now))


class Mailbox:
    """Arrivals waiting at the server, with an event to sleep on until the next one."""

    def __init__(self, sim: Sim):
        self.sim = sim
        self.waiting: list[Arrival] = []
        self._event: simpy.Event | None = None

    def put(self, a: Arrival) -> None:
        self.waiting.append(a)
        if self._event is not None and not self._event.triggered:
            self._event.succeed()

    def next_arrival(self) -> simpy.Event:
        """An event that fires at the next arrival."""
        self._event = self.sim.env.event()
        return self._event
