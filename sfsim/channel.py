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

import numpy as np
import simpy
from simpy.events import EventPriority

from sfsim.errors import InputError
from sfsim.links import RUN, FixedLink, Link, ShannonLink

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


def _unsupported(link: object) -> str:
    return (f"fluid sharing supports fixed and shannon links, not {type(link).__name__} "
            "(use sharing: equal, or access: dedicated)")


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


#: The per-transfer arrays of `FluidCell`, in the order `FluidCell._join` fills them.
_FLUID_ARRAYS = ("_left", "_rate", "_fixed", "_bw", "_snr", "_coh", "_run", "_powers")


class FluidCell:
    """Processor sharing: n active transfers each get 1/n of the band, recomputed on change.

    The active transfers' state is held in numpy arrays (bits left, rate, bandwidth, mean SNR,
    each fading link's gains for the current run of 64 blocks), so an event costs a few vector
    operations however many transfers are active; a link's gains are fetched once per run.
    """

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.jobs: list[Job] = []
        self._last = 0.0  # when the remaining bits were last brought up to date
        self._generation = 0  # the armed timer's; an older timer does nothing
        self._finishing = np.zeros(0, dtype=bool)  # which jobs the armed timer completes
        self._left = np.zeros(0)  # bits left
        self._rate = np.zeros(0)  # bit/s since the last change
        self._fixed = np.zeros(0, dtype=bool)  # FixedLink: rate / n
        self._bw = np.zeros(0)  # FixedLink: its rate; ShannonLink: its bandwidth (Hz)
        self._snr = np.zeros(0)  # ShannonLink: mean SNR over the whole band
        self._coh = np.zeros(0)  # coherence time of a fading link; inf otherwise
        self._run = np.zeros(0, dtype=np.int64)  # the run of blocks ``_powers`` holds (-1: none)
        self._powers = np.zeros((0, RUN))  # |h|² of each block of that run

    def transfer(self, job: Job) -> Generator[simpy.Event, Any, None]:
        job.left_bits = 8.0 * job.nbytes
        job.done = simpy.Event(self.env)
        link = job.link
        if not isinstance(link, FixedLink | ShannonLink):
            raise InputError(_unsupported(link), key="channel.sharing")
        joined = False
        try:
            if link.latency_s > 0:  # the latency is the link's own, not the cell's
                yield self.env.timeout(link.latency_s)
            self._advance()
            self._join(job)
            joined = True
            self._rearm()
            yield job.done
        except simpy.Interrupt:
            if joined and job in self.jobs:
                self._advance()
                k = self.jobs.index(job)
                job.left_bits = float(self._left[k])
                self._leave(np.arange(len(self.jobs)) == k)
                bits = 8.0 * job.nbytes
                job.sent_fraction = min(max(1.0 - job.left_bits / bits, 0.0), 1.0)
                self._rearm()
            raise

    def _join(self, job: Job) -> None:
        link = job.link
        if isinstance(link, FixedLink):
            fixed, bw, snr, coh = True, link.rate_bps, 0.0, math.inf
        else:
            assert isinstance(link, ShannonLink)
            fixed, bw, snr = False, link.bandwidth_hz, link.mean_snr
            coh = link.coherence_s if link.fading else math.inf
        self.jobs.append(job)
        row: dict[str, Any] = {"_left": job.left_bits, "_rate": 0.0, "_fixed": fixed, "_bw": bw,
                               "_snr": snr, "_coh": coh, "_run": -1, "_powers": np.ones(RUN)}
        for name in _FLUID_ARRAYS:  # one more row in every array, keeping its dtype
            arr = getattr(self, name)
            setattr(self, name, np.concatenate([arr, np.asarray([row[name]], dtype=arr.dtype)]))

    def _leave(self, gone: np.ndarray) -> None:
        """Take the jobs where ``gone`` is true out of the cell."""
        keep = ~gone
        self.jobs = [j for j, k in zip(self.jobs, keep.tolist(), strict=True) if k]
        for name in _FLUID_ARRAYS:
            setattr(self, name, getattr(self, name)[keep])

    def _advance(self) -> None:
        """Take off the bits each active transfer moved since the last change."""
        now = float(self.env.now)
        dt = now - self._last
        if dt > 0 and len(self.jobs):
            self._left -= self._rate * dt
        self._last = now

    def _gains(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Each job's current coherence block (fading links; -1 otherwise) and |h|² in it (1
        without fading).

        Gains come in aligned runs of `RUN` blocks per link (the same draws as
        `ShannonLink.fading_power`): a job's run is fetched once, then indexed."""
        fading = np.isfinite(self._coh)
        block = np.full(len(self.jobs), -1.0)
        h = np.ones(len(self.jobs))
        if fading.any():
            coh = self._coh[fading]
            b = np.floor(now / coh)
            b += (b + 1) * coh <= now  # the block whose end is strictly after now
            block[fading] = b
            at = np.flatnonzero(fading)
            run = (block[at] // RUN).astype(np.int64)
            stale = np.flatnonzero(run != self._run[at])
            for k, r in zip(at[stale].tolist(), run[stale].tolist(), strict=True):
                link = self.jobs[k].link
                assert isinstance(link, ShannonLink)
                self._powers[k] = link.fading_powers(r * RUN, RUN)
                self._run[k] = r
            h[at] = self._powers[at, (block[at] % RUN).astype(np.int64)]
        return block, h

    def _rearm(self) -> None:
        """Recompute the rates and arm one timer for the next completion or block boundary."""
        self._generation += 1
        if not self.jobs:
            return
        now = self._last
        n = len(self.jobs)
        block, h = self._gains(now)
        with np.errstate(divide="ignore"):
            shannon = (self._bw / n) * np.log2(1.0 + n * self._snr * h)
        self._rate = rate = np.where(self._fixed, self._bw / n, shannon)
        left = self._left
        done = left <= 0
        moving = rate > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            ends = np.where(moving & ~done, now + left / np.where(moving, rate, 1.0), math.inf)
        first = now if done.any() else float(ends.min())
        fading = block >= 0
        boundary = float(((block[fading] + 1) * self._coh[fading]).min()) if fading.any() \
            else math.inf
        if math.isinf(first) and math.isinf(boundary):
            raise InputError("a shared cell's transfers all have rate 0: none can finish",
                             key="channel")
        if first <= boundary:
            self._finishing = done | (ends <= first)
            at = first
        else:
            self._finishing = np.zeros(n, dtype=bool)
            at = boundary
        generation = self._generation
        timer = self.env.timeout(max(at - now, 0.0))
        timer.callbacks.append(lambda _: self._tick(generation))

    def _tick(self, generation: int) -> None:
        if generation != self._generation:
            return  # disarmed: something changed since this timer was armed
        self._advance()
        finishing = self._finishing
        done = [j for j, f in zip(self.jobs, finishing.tolist(), strict=True) if f]
        if done:
            self._leave(finishing)
        for job in done:
            job.left_bits = 0.0
            assert job.done is not None
            job.done.succeed()
        self._finishing = np.zeros(len(self.jobs), dtype=bool)
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
