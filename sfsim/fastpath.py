"""Closed-form rounds: a round's time without the event loop, where it is known exactly.

For the sequential-server split schemes (``memsfl``) with an offline scheduler and nothing
random in time (fixed-rate links or Shannon links without fading; no compute variability), every
realised duration equals its estimate, and the engine replays the plan strictly. A round is then
exactly the scheduling instance of `sfsim.schemes.split.round_instance` served in the plan's
order, followed by FedAvg on the server and the adapter broadcast::

    round_s = makespan(instance, order) + aggregate_s + max_d broadcast_s(d)

`simulate(..., fast=True | "auto")` uses this (`sfsim.run`). What it gives and what it does
not: the round times, the makespan and the plans (the same figures as the event loop, to float
rounding: `tests/test_fastpath.py` checks 1e-9 on the shipped scenarios); no trace, no memory
timeline and no figures derived from them (peaks, busy times, bytes), so the summary says
``engine_path: closed_form`` and leaves those out instead of reporting zeros.

Shadowing does not stop the closed form: it is drawn once per link from the seed, and the
scheduler's estimate uses the same drawn gain. Rayleigh fading (redrawn every coherence
interval) and compute slowdowns do.
"""

from __future__ import annotations

from typing import Any

from sfsim.costs import footprint as fp
from sfsim.engine import Sim
from sfsim.links import FixedLink, ShannonLink
from sfsim.schedulers import Scheduler, makespan
from sfsim.schemes.base import Scheme
from sfsim.schemes.split import MemSFL, SplitScheme
from sfsim.server import ServerQueue, resolved_dispatch

#: SplitScheme methods whose default behaviour the closed form reproduces.
_SAME_AS_SPLIT = (
    "round",
    "start_server",
    "estimate",
    "device_round",
    "serve",
    "serve_iteration",
    "server_compute",
    "aggregate",
    "server_adapter_bytes_to_average",
)


def why_not(sim: Sim, scheme: Scheme, scheduler: Scheduler) -> str | None:
    """None when rounds have a closed form for this run, else the reason why not."""
    if scheme.continuous(sim):
        return (f"scheme {scheme.name!r} runs without round barriers (no closed form per "
                "round: rounds are bookkeeping of a continuous run)")
    if not isinstance(scheme, MemSFL):
        return f"scheme {scheme.name!r} is not a sequential-server split scheme with a plan"
    for name in _SAME_AS_SPLIT:
        if getattr(type(scheme), name) is not getattr(SplitScheme, name):
            return f"scheme {scheme.name!r} changes {name}()"
    if scheduler.online:
        return f"scheduler {scheduler.name!r} dispatches online"
    mode = resolved_dispatch(sim.world.scenario, scheduler)
    if mode != "strict":
        return f"dispatch {mode!r} decides at run time (only a strictly replayed plan is closed)"
    world = sim.world
    if getattr(world, "population", None) is not None:
        return "a population samples each round's participants"
    if world.scenario.channel.access == "shared":
        return "a shared cell divides the channel among the transfers in flight"
    if world.scenario.channel.broadcast_downlink:
        return "broadcast downlink (the fast path models unicast downloads)"
    v = world.variability
    if v.compute != "none" and v.sigma != 0:
        return "compute variability draws a slowdown per phase"
    for d in world.devices:
        if getattr(d, "speed_profile", None) is not None:
            return f"device {d.id!r} follows a compute-speed trace"
        for link in (d.uplink, d.downlink):
            if isinstance(link, ShannonLink) and link.fading:
                return "Rayleigh fading changes link rates over time"
            if not isinstance(link, FixedLink | ShannonLink):
                return f"device {d.id!r} has a link model without a closed form"
    return None


def round_bounds(sim: Sim, scheme: SplitScheme, rounds: int) -> list[tuple[float, float]]:
    """(start, end) of every round, from the plans; plans are noted as the event loop notes them.

    The scheduler draws from ``sim.scheduler_rng`` exactly as `ServerQueue.for_round` does in the
    event loop, so randomised plans (``random``, ``local_search``) are the same plans.
    """
    world = sim.world
    total = sum(c.adapter_bytes for c in scheme.costs.values())
    averaged = total + scheme.server_adapter_bytes_to_average(sim)
    aggregate_s = 2.0 * averaged / fp.FP32 / world.server.processor.flops_per_s("fp32")
    aggregate_s *= world.server.slowdown  # variability.server_factor (persistent, known)
    bounds: list[tuple[float, float]] = []
    start = 0.0
    for r in range(rounds):
        instance = scheme.estimate(sim)
        queue = ServerQueue.for_round(sim, r, scheme.scheduler, sim.scheduler_rng, instance)
        busy = makespan(instance, queue.plan or [])
        plan_note: dict[str, Any] = sim.notes["plans"][-1]
        plan_note["realised_makespan_s"] = busy
        t = start + busy + aggregate_s
        broadcast = max(
            (
                d.downlink.duration_s(scheme.costs[d.id].adapter_bytes, t)
                for d in world.devices
            ),
            default=0.0,
        )
        bounds.append((start, t + broadcast))
        start = t + broadcast
    return bounds
