"""Faults: device dropouts, link outages, server slowdown episodes, deadlines (docs/faults.md).

Everything random here comes from the scenario's ``faults`` seed stream (`sfsim.world.Seeds`),
split into child streams so that one kind of fault never shifts another's draws:

* dropouts: round r's draws come from child ``(DROPOUT, r)``: one uniform per device (in the
  round's device order) for "drops before the round" (probability ``faults.dropout.before``),
  one for "drops during it" (``faults.dropout.during``), one for *when*. The plan of a round
  does not depend on how earlier rounds went, so two schedulers run on the same seed meet the
  same dropouts (common random numbers).
* a dropout during the round happens at ``u × span`` after the round's start, u uniform on
  (0, 1), where ``span`` is the device's expected round span *alone* (its own compute, its
  transfers and its server work without queueing: `SplitScheme` and `FedLoRA` compute it). A
  device that finishes before that moment has completed the round (no drop).
* link outages: per device (child ``(OUTAGE, crc32(id))``), a Poisson process of windows
  (``rate_per_hour`` starts per hour of link-up time, exponential durations of mean
  ``mean_duration_s``) during which the link carries nothing: a transfer pauses at a window's
  start and resumes at its end (`Episodes.stretch`), in both directions.
* server slowdown: one Poisson process of episodes (child ``SERVER_SLOW``) during which the
  server computes ``factor`` times slower (`Episodes.work_duration`: the work is integrated).
* availability (``faults.availability: true`` with a ``traces.availability`` file): a device
  offline at a round's start drops before it, one whose window ends during the round drops then
  (reason ``offline``); without the switch the windows are read but not acted on.

What happens to a dropped device is the scheme's business (the synchronous schemes: its round
process is interrupted, its memory freed, its queued server tasks withdrawn). The summary's
``faults`` block (`summarize`) is derived from the event log's ``drop`` rows, the trace and each
round's scheduled samples.
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sfsim.fleetdata import samples_per_round

if TYPE_CHECKING:
    import pandas as pd

    from sfsim.scenario import Scenario
    from sfsim.world import DeviceSpec, World

#: Child-stream keys under the faults seed.
DROPOUT, OUTAGE, SERVER_SLOW = 0, 1, 2
#: Drop reasons (the ``detail`` of a ``drop`` event).
REASONS = ("before_round", "during_round", "deadline", "offline")


def _child(parent: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(
        parent.entropy, spawn_key=(*parent.spawn_key, *key), pool_size=parent.pool_size
    )


@dataclass
class Episodes:
    """Disjoint windows ``[start, end)`` of a Poisson process, drawn lazily as far as needed.

    Gaps between windows are exponential with mean ``1 / rate_per_s``; lengths exponential with
    mean ``mean_s``. ``starts`` and ``ends`` grow as time is asked about (same windows whatever
    the order of the questions).
    """

    rate_per_s: float
    mean_s: float
    rng: np.random.Generator
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)

    @classmethod
    def fixed(cls, windows: Iterable[tuple[float, float]]) -> Episodes:
        """Given windows only (tests, hand checks): nothing more is drawn."""
        ws = sorted(windows)
        ep = cls(0.0, 1.0, np.random.default_rng(0), [a for a, _ in ws], [b for _, b in ws])
        return ep

    def _extend(self, t: float) -> None:
        """Draw windows until one starts after ``t`` (or none can: rate 0)."""
        if self.rate_per_s <= 0.0:
            return
        while not self.starts or self.starts[-1] <= t:
            last = self.ends[-1] if self.ends else 0.0
            start = last + float(self.rng.exponential(1.0 / self.rate_per_s))
            self.starts.append(start)
            self.ends.append(start + float(self.rng.exponential(self.mean_s)))

    def windows_until(self, t: float) -> list[tuple[float, float]]:
        self._extend(t)
        return [(a, b) for a, b in zip(self.starts, self.ends, strict=True) if a < t]

    def stretch(self, start_s: float, busy_s: float) -> float:
        """How long a job needing ``busy_s`` of up-time takes from ``start_s``, pausing in windows.

        Inside a window nothing progresses; the job resumes at the window's end.
        """
        return self.work_duration(start_s, busy_s, math.inf)

    def work_duration(self, start_s: float, work_s: float, factor: float) -> float:
        """How long ``work_s`` of nominal work takes from ``start_s`` (1/factor speed inside).

        ``factor = inf``: no progress inside a window (`stretch`). The windows drawn do not
        depend on how far ahead they are drawn (one generator per process).
        """
        t, left = start_s, work_s
        while True:
            self._extend(t + left)
            i = bisect.bisect_right(self.starts, t) - 1
            if i >= 0 and t < self.ends[i]:  # inside window i
                if math.isfinite(factor):  # slowed down until the window ends
                    can = (self.ends[i] - t) / factor
                    if left <= can:
                        return t + left * factor - start_s
                    left -= can
                t = self.ends[i]
                continue
            j = i + 1
            nxt = self.starts[j] if j < len(self.starts) else math.inf
            if t + left <= nxt:
                return t + left - start_s
            left -= nxt - t
            t = nxt


@dataclass(frozen=True)
class RoundFaults:
    """One round's dropout plan: who drops before it, and when the others would drop during it."""

    before: frozenset[str]
    during_u: dict[str, float]  # device -> fraction of its expected span at which it drops


class FaultPlan:
    """The faults of one run, drawn from the faults seed (see the module docstring)."""

    def __init__(self, scenario: Scenario, seed: np.random.SeedSequence):
        self.cfg = scenario.faults
        self.deadline_s = scenario.training.round_deadline_s
        self.partial = scenario.training.aggregation == "partial"
        self.seed = seed
        lo = self.cfg.link_outage
        self._outage_rate = lo.rate_per_hour / 3600.0
        self._outages: dict[str, Episodes] = {}
        ss = self.cfg.server_slowdown
        self.server: Episodes | None = None
        if ss.rate_per_hour > 0 and ss.factor > 1.0:
            self.server = Episodes(ss.rate_per_hour / 3600.0, ss.mean_duration_s,
                                   np.random.default_rng(_child(seed, SERVER_SLOW)))
        self.server_factor = ss.factor
        self.availability = self.cfg.availability
        d = self.cfg.dropout
        self.dropouts = d.before > 0 or d.during > 0
        #: per round, each scheduled device's samples (filled by `RoundRun`)
        self.scheduled: list[dict[str, int]] = []

    @property
    def outages(self) -> bool:
        return self._outage_rate > 0

    def outage(self, device: str) -> Episodes | None:
        """Device ``device``'s link outage windows (None: no outages)."""
        if not self.outages:
            return None
        ep = self._outages.get(device)
        if ep is None:
            seed = _child(self.seed, OUTAGE, zlib.crc32(device.encode()))
            ep = self._outages[device] = Episodes(
                self._outage_rate, self.cfg.link_outage.mean_duration_s,
                np.random.default_rng(seed))
        return ep

    def transfer_s(self, device: str, start_s: float, busy_s: float) -> float:
        """A transfer's duration from ``start_s`` with the device's outages (``busy_s`` without)."""
        ep = self.outage(device)
        return busy_s if ep is None else ep.stretch(start_s, busy_s)

    def server_s(self, start_s: float, work_s: float) -> float:
        """A server computation's duration from ``start_s`` with slowdown episodes."""
        if self.server is None:
            return work_s
        return self.server.work_duration(start_s, work_s, self.server_factor)

    def round(self, r: int, devices: list[str]) -> RoundFaults:
        """Round r's dropouts for ``devices`` (in the round's device order)."""
        d = self.cfg.dropout
        rng = np.random.default_rng(_child(self.seed, DROPOUT, r))
        n = len(devices)
        u_before, u_during, when = rng.random(n), rng.random(n), rng.random(n)
        before = frozenset(dev for dev, u in zip(devices, u_before.tolist(), strict=True)
                           if u < d.before)
        during = {dev: w for dev, u, w in zip(devices, u_during.tolist(), when.tolist(),
                                               strict=True)
                  if dev not in before and u < d.during}
        return RoundFaults(before, during)


def requested(s: Scenario) -> bool:
    """Whether the scenario's ``faults`` section, a deadline or partial aggregation is set (an
    availability trace alone is not: it is acted on with ``faults.availability: true``)."""
    f = s.faults
    return bool(f.dropout.before > 0 or f.dropout.during > 0
                or f.link_outage.rate_per_hour > 0
                or (f.server_slowdown.rate_per_hour > 0 and f.server_slowdown.factor > 1.0)
                or s.training.round_deadline_s is not None
                or s.training.aggregation == "partial"
                or f.availability)


def participation_requested(s: Scenario) -> str | None:
    """The key of the first fault that changes who takes part in a round (dropouts, offline
    devices, a deadline, partial aggregation), or None. Link outages and server slowdowns only
    stretch transfers and computations, and apply to every scheme."""
    f, t = s.faults, s.training
    for key, on in (("faults.dropout", f.dropout.before > 0 or f.dropout.during > 0),
                    ("faults.availability", f.availability),
                    ("training.round_deadline_s", t.round_deadline_s is not None),
                    ("training.aggregation", t.aggregation == "partial")):
        if on:
            return key
    return None


def check_scheme(s: Scenario, scheme: Any) -> None:
    """InputError when the scenario asks for dropouts, deadlines or partial aggregation of a
    scheme without rounds of devices that can drop (the streaming schemes)."""
    key = participation_requested(s)
    if key is not None and not scheme.supports_faults:
        from sfsim.errors import InputError

        raise InputError(f"scheme {scheme.name!r} does not model dropouts, deadlines or partial "
                         "aggregation (its devices stream without rounds that can drop them); "
                         "link outages and server slowdowns apply to it", key=key)


def active(s: Scenario) -> bool:
    """Whether the run has a fault plan."""
    return requested(s)


def plan_for(world: World) -> FaultPlan | None:
    """The run's fault plan, or None when the scenario asks for none (nothing changes then)."""
    if not active(world.scenario):
        return None
    return FaultPlan(world.scenario, world.seeds.faults)


def round_samples(world: World, dev: DeviceSpec) -> int:
    """What a device's round trains on (`fleetdata.samples_per_round`: iterations × batch, or
    one partial last batch per pass with ``local_work: epochs``), as the summary counts it."""
    return samples_per_round(world.scenario, dev, int(world.iterations(dev)))


def online_until(world: World, dev: DeviceSpec, t: float) -> float | None:
    """With an availability trace: None if ``dev`` is offline at ``t``, else when it goes
    offline (inf: never). Without one: inf."""
    windows = world.availability(dev, horizon_s=t + 1.0) if dev.availability is not None else None
    if windows is None:
        return math.inf
    for a, b in windows:
        if a <= t < b:
            return b
    return None


# ---- the summary ------------------------------------------------------------------------------


def summarize(trace: pd.DataFrame, events: dict[str, list[Any]],
              scheduled: list[dict[str, int]]) -> dict[str, Any]:
    """The summary's ``faults`` block.

    ``scheduled``: per round, each scheduled device's samples (`round_samples`). Per round:
    devices scheduled / completed / dropped by reason, samples scheduled = trained + dropped
    (by reason), exactly (integers); the wasted work of dropped devices in that round (their
    device compute seconds and FLOPs, server seconds and FLOPs spent for them, bytes they sent
    and received); totals over the run.
    """
    rounds: list[dict[str, Any]] = []
    drops: dict[int, dict[str, str]] = {}
    for kind, r, dev, detail in zip(events["kind"], events["round"], events["device"],
                                    events["detail"], strict=True):
        if kind == "drop":
            drops.setdefault(int(r), {})[str(dev)] = str(detail)
    wasted = _wasted(trace, drops)
    totals: dict[str, Any] = {
        "devices_scheduled": 0, "devices_completed": 0,
        "devices_dropped": dict.fromkeys(REASONS, 0),
        "samples_scheduled": 0, "samples_trained": 0,
        "samples_dropped": dict.fromkeys(REASONS, 0),
        "wasted_device_s": 0.0, "wasted_device_flops": 0.0,
        "wasted_server_s": 0.0, "wasted_server_flops": 0.0,
        "wasted_uplink_bytes": 0.0, "wasted_downlink_bytes": 0.0,
    }
    for r, samples in enumerate(scheduled):
        gone = drops.get(r, {})
        by_reason = dict.fromkeys(REASONS, 0)
        dev_by_reason = dict.fromkeys(REASONS, 0)
        for dev, why in gone.items():
            by_reason[why] += samples[dev]
            dev_by_reason[why] += 1
        trained = sum(n for dev, n in samples.items() if dev not in gone)
        row: dict[str, Any] = {
            "round": r,
            "devices_scheduled": len(samples),
            "devices_completed": len(samples) - len(gone),
            "devices_dropped": dev_by_reason,
            "samples_scheduled": sum(samples.values()),
            "samples_trained": trained,
            "samples_dropped": by_reason,
            **wasted.get(r, dict.fromkeys(_WASTE, 0.0)),
        }
        rounds.append(row)
        for key in ("devices_scheduled", "devices_completed", "samples_scheduled",
                    "samples_trained", *_WASTE):
            totals[key] += row[key]
        for why in REASONS:
            totals["devices_dropped"][why] += dev_by_reason[why]
            totals["samples_dropped"][why] += by_reason[why]
    totals["reconciles"] = totals["samples_scheduled"] == totals["samples_trained"] + sum(
        totals["samples_dropped"].values())
    return {**totals, "per_round": rounds}


def _covered(starts: np.ndarray, ends: np.ndarray, ws: np.ndarray, we: np.ndarray
             ) -> np.ndarray:
    """For each interval [starts[i], ends[i]], the time inside the disjoint sorted windows
    [ws, we)."""
    if len(ws) == 0:
        return np.zeros(len(starts))
    before = np.concatenate([[0.0], np.cumsum(we - ws)])  # window time before window j

    def upto(t: np.ndarray) -> np.ndarray:  # window time in [0, t]
        j = np.searchsorted(ws, t, side="right") - 1  # the last window starting by t; -1: none
        k = np.maximum(j, 0)
        inside = np.clip(t - ws[k], 0.0, we[k] - ws[k])
        return np.where(j >= 0, before[k] + inside, 0.0)

    return upto(ends) - upto(starts)


def _arrays(ep: Episodes, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    windows = ep.windows_until(float(ends.max()))
    return (np.array([w for w, _ in windows], dtype=float),
            np.array([w for _, w in windows], dtype=float))


def episodes_summary(plan: FaultPlan, trace: pd.DataFrame) -> dict[str, float]:
    """What link outages and server slowdowns cost the run, from the trace.

    ``transfer_paused_s``: time transfers spent waiting out outages (the part of each uplink
    and downlink span inside its device's outage windows; the link carries nothing then).
    ``server_slowed_s``: server compute time inside slowdown episodes, and
    ``server_extra_s`` = that × (1 − 1/factor): how much longer the server's work took.
    """
    out = {"transfer_paused_s": 0.0, "server_slowed_s": 0.0, "server_extra_s": 0.0}
    if trace.empty:
        return out
    res = trace["resource"].to_numpy()
    if plan.outages:
        links = trace[(res == "uplink") | (res == "downlink")]
        for dev, g in links.groupby("device", sort=True):
            ep = plan.outage(str(dev))
            assert ep is not None
            a, b = g["start_s"].to_numpy(float), g["end_s"].to_numpy(float)
            out["transfer_paused_s"] += float(_covered(a, b, *_arrays(ep, b)).sum())
    if plan.server is not None:
        srv = trace[res == "server"]
        if not srv.empty:
            a, b = srv["start_s"].to_numpy(float), srv["end_s"].to_numpy(float)
            slowed = float(_covered(a, b, *_arrays(plan.server, b)).sum())
            out["server_slowed_s"] = slowed
            out["server_extra_s"] = slowed * (1.0 - 1.0 / plan.server_factor)
    return out


_WASTE = ("wasted_device_s", "wasted_device_flops", "wasted_server_s", "wasted_server_flops",
          "wasted_uplink_bytes", "wasted_downlink_bytes")


def _wasted(trace: pd.DataFrame, drops: dict[int, dict[str, str]]) -> dict[int, dict[str, float]]:
    """Per round, the work of the devices dropped in it (spans of that round naming them)."""
    out: dict[int, dict[str, float]] = {}
    if trace.empty or not drops:
        return out
    keys = {(r, dev) for r, devs in drops.items() for dev in devs}
    pairs = list(zip(trace["round"].tolist(), trace["device"].tolist(), strict=True))
    mask = np.fromiter(((int(r), str(d)) in keys for r, d in pairs), dtype=bool,
                       count=len(pairs))
    t = trace[mask]
    dur = t["end_s"] - t["start_s"]
    for r, g in t.groupby("round"):
        d = dur.loc[g.index]
        assert isinstance(r, int | np.integer)
        res = g["resource"]
        out[int(r)] = {
            "wasted_device_s": float(d[res == "device"].sum()),
            "wasted_device_flops": float(g.loc[res == "device", "flops"].sum()),
            "wasted_server_s": float(d[res == "server"].sum()),
            "wasted_server_flops": float(g.loc[res == "server", "flops"].sum()),
            "wasted_uplink_bytes": float(g.loc[res == "uplink", "bytes"].sum()),
            "wasted_downlink_bytes": float(g.loc[res == "downlink", "bytes"].sum()),
        }
    return out


# ---- a synchronous round with faults ----------------------------------------------------------


class RoundRun:
    """One round of a synchronous scheme under the run's fault plan.

    ``RoundRun(sim, r, devices)`` draws the round's dropouts and logs a ``drop`` for each device
    that is gone before the round (``before_round``, or ``offline`` from an availability trace);
    ``present`` holds the others. ``run(body, span_s, on_drop)`` starts ``body(d)`` (the
    device's round process) for each present device, interrupts it at its drop time (during the
    round, going offline, or the deadline, whichever comes first), and returns the devices that
    finished. An interrupted device's memory allocated since its round began is freed, the scheme
    is told (``on_drop(d, reason)``: withdraw its server tasks, free what the server holds for
    it) and a ``drop`` is logged with the round's samples of the device as lost.
    """

    def __init__(self, sim: Any, r: int, devices: list[DeviceSpec]):
        plan: FaultPlan = sim.faults
        self.sim, self.r, self.plan = sim, r, plan
        self.start_s = sim.now
        world = sim.world
        self.rf = plan.round(r, [d.id for d in devices])
        self.samples = {d.id: round_samples(world, d) for d in devices}
        plan.scheduled.append(self.samples)
        self.present: list[DeviceSpec] = []
        self.offline_at: dict[str, float] = {}
        for d in devices:
            until = online_until(world, d, self.start_s) if plan.availability else math.inf
            if until is None:
                self._log(d, "offline")
            elif d.id in self.rf.before:
                self._log(d, "before_round")
            else:
                self.present.append(d)
                self.offline_at[d.id] = until

    def _log(self, d: DeviceSpec, reason: str) -> None:
        self.sim.log("drop", round=self.r, device=d.id, value=self.samples[d.id], detail=reason)

    def stop(self, d: DeviceSpec, span_s: Any) -> tuple[float, str] | None:
        """When and why device d is stopped this round (None: it is not)."""
        options = []
        u = self.rf.during_u.get(d.id)
        if u is not None:
            options.append((self.start_s + u * float(span_s(d)), "during_round"))
        if self.offline_at[d.id] < math.inf:
            options.append((self.offline_at[d.id], "offline"))
        if self.plan.deadline_s is not None:
            options.append((self.start_s + self.plan.deadline_s, "deadline"))
        return min(options) if options else None

    def run(self, body: Any, span_s: Any, on_drop: Any) -> Any:
        """SimPy process body: run the present devices; returns those that finished."""
        sim = self.sim
        finished: list[DeviceSpec] = []
        procs = []
        for d in self.present:
            proc = sim.env.process(self._guard(d, body, on_drop, finished))
            procs.append(proc)
            stop = self.stop(d, span_s)
            if stop is not None:
                sim.env.process(self._watch(proc, max(0.0, stop[0] - sim.now), stop[1]))
        yield sim.env.all_of(procs)
        order = {d.id: i for i, d in enumerate(self.present)}
        finished.sort(key=lambda d: order[d.id])
        return finished

    def _watch(self, proc: Any, delay: float, reason: str) -> Any:
        sim = self.sim
        yield sim.env.any_of([sim.env.timeout(delay), proc])
        if proc.is_alive:
            proc.interrupt(reason)

    def _guard(self, d: DeviceSpec, body: Any, on_drop: Any, finished: list[DeviceSpec]
               ) -> Any:
        import simpy

        from sfsim.engine import MEMORY_KINDS

        sim = self.sim
        held = {k: sim.memory.level(d.id, k) for k in MEMORY_KINDS}
        try:
            yield from body(d)
        except simpy.Interrupt as stop:
            reason = str(stop.cause)
            for kind, level in held.items():
                extra = sim.memory.level(d.id, kind) - level
                if extra > 0:
                    sim.free(d.id, kind, extra, f"dropped out ({reason})")
            on_drop(d, reason)
            self._log(d, reason)
            return
        finished.append(d)
