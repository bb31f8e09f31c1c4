"""A shared cell: concurrent transfers in one direction divide the cell (docs/channel.md).

``channel.access: dedicated`` (the default) gives every device its own band: `Sim.send` moves
bytes over the device's link alone and nothing here is used. ``channel.access: shared`` puts all
uploads in one cell and all downloads in another; ``channel.sharing`` says how they divide it:

* ``equal`` (`EqualCell`): a transfer's rate is fixed when it starts to 1/n of its link's rate,
  n = transfers active in that direction, itself included, counted at the end of the instant it
  starts in (so n devices that start together all see n). At 1/n of the rate a transfer of b
  bits takes as long as n·b bits on the whole link, fading included: ``link.duration_s(n·b)``.
* ``fluid`` (`FluidCell`, processor sharing): whenever a transfer starts or ends, and at each
  coherence-block boundary of a fading link, the n active transfers get a band of B/n each.
  A fixed link then runs at rate/n; a Shannon link at ``(B/n)·log2(1 + n·SNR·|h|²)`` (the noise
  is over the narrower band B/n, so the SNR rises n-fold). The cell is an event-driven fluid
  server: transfers hold their remaining bits; on any change the bits moved since the last change
  are taken off, the rates recomputed, and one timer armed for the next completion or block
  boundary (a timer from before the change is disarmed by a generation number).

Both record one span per transfer (start, end, bytes), as the dedicated path does.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy
from simpy.events import EventPriority

from sfsim.errors import InputError
from sfsim.links import FixedLink, Link, ShannonLink

#: Event priority after SimPy's NORMAL (1): an event at this priority runs once every ordinary
#: event of its instant has run, whenever those were scheduled.
_END_OF_INSTANT = EventPriority(2)


@dataclass(eq=False)
class Job:
    """One transfer through a cell."""

    link: Link
    nbytes: float
    device: str  # whose outages pause it (equal sharing); "" for none
    left_bits: float = 0.0
    rate_bps: float = 0.0
    done: simpy.Event | None = field(default=None, repr=False)
    sent_fraction: float = 0.0  # set when the transfer is interrupted


def shared_rate_bps(link: Link, n: int, t_s: float) -> float:
    """The rate of ``link`` at time ``t_s`` on a band 1/n of its own (processor sharing)."""
    if isinstance(link, FixedLink):
        return link.rate_bps / n
    if isinstance(link, ShannonLink):
        h = link.cached_fading_power(_block(link, t_s)) if link.fading else 1.0
        return (link.bandwidth_hz / n) * math.log2(1.0 + n * link.mean_snr * h)
    raise InputError(_unsupported(link), key="channel.sharing")


def _unsupported(link: object) -> str:
    return (f"fluid sharing supports fixed and shannon links, not {type(link).__name__} "
            "(use sharing: equal, or access: dedicated)")


def _block(link: ShannonLink, t_s: float) -> int:
    """The coherence block that holds ``t_s`` (the block whose end is strictly after it)."""
    block = int(t_s // link.coherence_s)
    while (block + 1) * link.coherence_s <= t_s:
        block += 1
    return block


class EqualCell:
    """Equal split: each transfer's rate fixed at its start to 1/n of its link's rate."""

    def __init__(self, env: simpy.Environment, faults: Any = None) -> None:
        self.env = env
        self.faults = faults
        self.active = 0
        self._settling: simpy.Event | None = None

    def _end_of_instant(self) -> simpy.Event:
        """One event per instant that fires after every ordinary event of that instant."""
        if self._settling is None:
            event = simpy.Event(self.env)
            event._ok = True  # what Event.succeed sets, at a later priority than it schedules
            event._value = None
            event.callbacks.append(self._settled)
            self.env.schedule(event, priority=_END_OF_INSTANT)
            self._settling = event
        return self._settling

    def _settled(self, _: object) -> None:
        self._settling = None

    def transfer(self, job: Job) -> Generator[simpy.Event, Any, None]:
        self.active += 1
        start = float(self.env.now)
        duration = 0.0
        try:
            yield self._end_of_instant()
            n = self.active
            duration = job.link.duration_s(n * job.nbytes, start)
            if self.faults is not None and job.device:  # outages pause it (sfsim.faults)
                duration = self.faults.transfer_s(job.device, start, duration)
            yield self.env.timeout(duration)
        except simpy.Interrupt:
            now = float(self.env.now)
            job.sent_fraction = (now - start) / duration if duration > 0 else 0.0
            raise
        finally:
            self.active -= 1


class FluidCell:
    """Processor sharing: n active transfers each get 1/n of the band, recomputed on change."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.jobs: list[Job] = []
        self._last = 0.0  # when the remaining bits were last brought up to date
        self._generation = 0  # the armed timer's; an older timer does nothing
        self._finishing: list[Job] = []
        self._n = 0

    def transfer(self, job: Job) -> Generator[simpy.Event, Any, None]:
        job.left_bits = 8.0 * job.nbytes
        job.done = simpy.Event(self.env)
        joined = False
        try:
            if job.link.latency_s > 0:  # the latency is the link's own, not the cell's
                yield self.env.timeout(job.link.latency_s)
            self._advance()
            self.jobs.append(job)
            joined = True
            self._rearm()
            yield job.done
        except simpy.Interrupt:
            if joined and job in self.jobs:
                self._advance()
                self.jobs.remove(job)
                bits = 8.0 * job.nbytes
                job.sent_fraction = min(max(1.0 - job.left_bits / bits, 0.0), 1.0)
                self._rearm()
            raise

    def _advance(self) -> None:
        """Take off the bits each active transfer moved since the last change."""
        now = float(self.env.now)
        dt = now - self._last
        if dt > 0:
            for job in self.jobs:
                job.left_bits -= job.rate_bps * dt
        self._last = now

    def _rearm(self) -> None:
        """Recompute the rates and arm one timer for the next completion or block boundary."""
        self._generation += 1
        if not self.jobs:
            return
        now = self._last
        n = len(self.jobs)
        first = math.inf
        for job in self.jobs:
            job.rate_bps = rate = shared_rate_bps(job.link, n, now)
            if job.left_bits <= 0:
                first = now
            elif rate > 0:
                first = min(first, now + job.left_bits / rate)
        boundary = math.inf
        for job in self.jobs:
            link = job.link
            if isinstance(link, ShannonLink) and link.fading:
                boundary = min(boundary, (_block(link, now) + 1) * link.coherence_s)
        if math.isinf(first) and math.isinf(boundary):
            raise InputError("a shared cell's transfers all have rate 0: none can finish",
                             key="channel")
        if first <= boundary:
            self._finishing = [
                j for j in self.jobs
                if j.left_bits <= 0 or (j.rate_bps > 0 and now + j.left_bits / j.rate_bps <= first)
            ]
            at = first
        else:
            self._finishing = []
            at = boundary
        generation = self._generation
        timer = self.env.timeout(max(at - now, 0.0))
        timer.callbacks.append(lambda _: self._tick(generation))

    def _tick(self, generation: int) -> None:
        if generation != self._generation:
            return  # disarmed: something changed since this timer was armed
        self._advance()
        for job in self._finishing:
            job.left_bits = 0.0
            self.jobs.remove(job)
            assert job.done is not None
            job.done.succeed()
        self._finishing = []
        self._rearm()


def make_cells(env: simpy.Environment, sharing: str, faults: Any,
               links: list[Link]) -> dict[str, Any]:
    """The uplink and downlink cells of a shared channel (``links``: the devices' links)."""
    if sharing == "fluid":
        for link in links:  # refused before the run rather than at the first transfer
            if not isinstance(link, FixedLink | ShannonLink):
                raise InputError(_unsupported(link), key="channel.sharing")
        if faults is not None and faults.outages:
            raise InputError(
                "link outages (faults.link_outage) are not supported with channel.sharing: "
                "fluid yet; use sharing: equal",
                key="channel.sharing",
            )
        return {"uplink": FluidCell(env), "downlink": FluidCell(env)}
    return {"uplink": EqualCell(env, faults), "downlink": EqualCell(env, faults)}
