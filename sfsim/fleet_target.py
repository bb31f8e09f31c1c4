"""Size a generated fleet to a target server utilisation (``fleet.target_utilisation``).

Method. The fleet generator draws ``fleet.count`` devices as usual (``count`` is the maximum);
the world then keeps the smallest prefix of the generated devices (explicit devices always stay)
whose *estimated* round utilisation reaches the target::

    rho(n) = sum_j sum_k p_jk / C_schrage(n)

where ``p_jk`` are the server times of the round's estimated scheduling instance
(`sfsim.schemes.split.round_instance`: the cost model's times, links at their expected rate) and
``C_schrage(n)`` is the makespan of Schrage's order on that instance: the server's work against
the round's critical path (device forward, uplink, server queue, downlink, device backward,
adapter upload). ``rho`` grows with ``n`` but not strictly (a slow device added late can lengthen
the tail more than the work), so the search is a scan over prefixes by bisection on the
smallest ``n`` with ``rho(n) >= target``; when even ``count`` devices fall short, all are kept.

What it cannot promise: the run's ``server_utilisation`` is measured on the whole run (FedAvg
and broadcast included), under the scenario's own scheduler (FIFO leaves the server idler than
Schrage) and realised fading (slower than the estimate at the mean SNR), so the achieved value is
usually *below* the target; docs/schedulers.md reports target vs achieved over seeds.

Only split schemes with a sequential server (memsfl, sfl_v2, splitlora, sfl_v1) have such an
instance, and every generated device needs a cut (``fleet.cut``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sfsim.errors import InputError

if TYPE_CHECKING:
    from sfsim.scenario import DeviceCfg, Scenario
    from sfsim.world import DeviceSpec, World

SPLIT_SCHEMES = ("memsfl", "sfl_v2", "splitlora", "sfl_v1")


def estimated_utilisation(world: World, devices: list[DeviceSpec]) -> float:
    """Server work over Schrage's makespan on the estimated round instance of ``devices``."""
    import numpy as np

    from sfsim.schedulers import get_scheduler, makespan
    from sfsim.schemes.split import round_instance, split_costs

    w = world.with_devices(devices)
    costs = {d.id: split_costs(w, d, d.cut if d.cut is not None else 0) for d in devices}
    inst = round_instance(w, costs)
    order = get_scheduler("schrage").order(inst, np.random.default_rng(0))
    span = makespan(inst, order)
    work = sum(sum(j.server_s) for j in inst.jobs)
    return work / span if span > 0 else 0.0


def fit_device_count(world: World, n_explicit: int, target: float) -> tuple[int, float]:
    """The number of generated devices to keep and its estimated utilisation."""
    s = world.scenario
    if s.training.scheme not in SPLIT_SCHEMES:
        raise InputError(
            f"needs a split scheme with a sequential server ({', '.join(SPLIT_SCHEMES)}), "
            f"got {s.training.scheme!r}",
            key="fleet.target_utilisation",
        )
    if any(d.cut is None for d in world.devices):
        raise InputError("needs a cut for every device (set fleet.cut)",
                         key="fleet.target_utilisation")
    devices = world.devices
    n_gen = len(devices) - n_explicit

    def rho(n: int) -> float:
        return estimated_utilisation(world, devices[: n_explicit + n])

    lo, hi = 1, n_gen
    if rho(hi) < target:
        return hi, rho(hi)
    while lo < hi:  # smallest n with rho(n) >= target (bisection: rho is near-monotone)
        mid = (lo + hi) // 2
        if rho(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo, rho(lo)


def trim_to_target(s: Scenario, devices: list[DeviceCfg], n_explicit: int) -> list[DeviceCfg]:
    """``devices`` (explicit first, then generated) cut to the prefix that meets the target.

    Links are drawn per device index from the channel seed, so a prefix of the devices gets
    exactly the links it would get in the full fleet: the estimate is the run's own world.
    """
    from sfsim.world import build_world

    assert s.fleet is not None and s.fleet.target_utilisation is not None
    if len(devices) <= n_explicit:
        return devices
    world = build_world(s.model_copy(update={"devices": devices, "fleet": None}))
    n, _ = fit_device_count(world, n_explicit, s.fleet.target_utilisation)
    return devices[: n_explicit + n]
