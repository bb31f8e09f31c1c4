"""Every check `sfsim run` makes on its input, short of simulating the whole run.

``preflight(resolved)`` is what ``sfsim validate`` runs. In order:

1. build the world (fleet drawn, links built: a link that cannot carry data is an input error);
2. the scheme is known; the scheduler it uses is known and takes the given parameters, each of
   the declared type (``scheduler.params.KEY``);
3. scheme / scheduler compatibility: the scheduler is asked for a plan on a two-device instance
   with the scenario's number of local iterations (``carlier`` refuses chains, K > 1; a missing
   MILP solver shows here);
4. the scheme's ``setup`` on a fresh ``Sim`` (cut policy, backbones, every allocation made at
   t = 0), then memory: what is allocated at set-up, and each device's peak where the scheme has
   an exact formula (:func:`sfsim.schemes.cuts.split_device_peak_bytes` for split schemes,
   :func:`sfsim.schemes.fedlora.fedlora_device_peak_bytes`), against each device's and the
   server's memory;
5. a dry round: when one round is small (at most :data:`DRY_ROUND_MAX` device iterations) it is
   simulated once with the same checks `run` applies after a run (peak memory of every device
   and of the server), so a memory shortfall that only shows mid-round is found too.

Anything wrong raises :class:`sfsim.errors.InputError` (exit status 2), so ``validate`` ok means
``run`` does not fail on its input.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from sfsim import compression, faults
from sfsim.engine import SERVER, Sim
from sfsim.errors import InputError
from sfsim.scenario import Scenario
from sfsim.schedulers import Instance, Job, Scheduler
from sfsim.schedulers.registry import scheduler_from_scenario
from sfsim.schemes import Scheme, scheme_class
from sfsim.server import check_dispatch, resolved_dispatch
from sfsim.world import DeviceSpec, World, build_world

GB = 1e9
DRY_ROUND_MAX = 20_000  # device iterations in one round (the devices' local iterations summed)


@dataclass
class Preflight:
    """What validate found: the built world, the scheme and scheduler, and notes."""

    world: World
    scheme: str
    scheduler: str
    notes: list[str] = field(default_factory=list)


def _probe_scheduler(sched: Scheduler, k: int, dispatch: str = "strict",
                     k_min: int | None = None) -> None:
    """Ask a scheduler that plans (any dispatch but online) for a plan on a tiny instance.

    The two probe jobs have ``k`` and ``k_min`` tasks (at most 3): devices with different
    local iterations (``local_work: epochs``) give jobs of different lengths.
    """
    if dispatch == "online":
        return
    lengths = (min(k, 3), min(k if k_min is None else k_min, 3))
    jobs = tuple(
        Job(id=f"probe{i}", release_s=float(i), server_s=(1.0,) * n, lag_s=(0.5,) * (n - 1),
            tail_s=1.0)
        for i, n in enumerate(lengths)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sched.plan(Instance(jobs), np.random.default_rng(0))
        except InputError as exc:
            raise InputError(exc.problem, key=exc.key or "scheduler") from None
        except NotImplementedError:
            raise InputError(
                f"scheduler {sched.name!r} cannot plan (its order() is not implemented), so it "
                f"cannot run with dispatch {dispatch!r}; use dispatch 'online'",
                key="scheduler.dispatch",
            ) from None


def _exact_peak(scheme: Scheme, world: World, dev: DeviceSpec) -> float | None:
    """A device's peak memory where the scheme's formula is exact (None elsewhere)."""
    from sfsim.schemes.cuts import split_device_peak_bytes
    from sfsim.schemes.fedlora import FedLoRA, fedlora_device_peak_bytes
    from sfsim.schemes.split import SplitScheme

    if isinstance(scheme, SplitScheme) and dev.cut is not None:
        return split_device_peak_bytes(world, dev, dev.cut)
    if isinstance(scheme, FedLoRA):
        return fedlora_device_peak_bytes(world, dev)
    return None


def _check_setup_memory(sim: Sim, scheme: Scheme, name: str) -> None:
    """Set-up allocations plus each device's exact peak (where known) against its memory."""
    from sfsim.run import check_memory_fit

    world = sim.world
    peaks = {
        d.id: max(sim.memory.level(d.id), _exact_peak(scheme, world, d) or 0.0)
        for d in world.devices
    }
    peaks[SERVER] = sim.memory.level(SERVER)
    check_memory_fit(world, peaks, name, server_when="at set-up")


def preflight(s: Scenario, *, dry_round: bool = True) -> Preflight:
    """Run every input check of ``run`` on a resolved scenario; InputError on the first problem."""
    world = build_world(s)
    cls = scheme_class(s.training.scheme, key="training.scheme")
    faults.check_scheme(s, cls)  # a streaming scheme refuses faults (sfsim/faults.py)
    compression.check(s.training, s.model.seq_len, cls.name)  # sfsim/compression.py
    sched_name = cls.fixed_scheduler or s.scheduler.name
    sched_params = {} if cls.fixed_scheduler else dict(s.scheduler.params)
    try:
        scheduler = scheduler_from_scenario(sched_name, sched_params)
    except InputError as exc:
        if exc.key is None:
            exc.key = "scheduler.name"
            exc.args = (exc.message,)
        raise
    report = Preflight(world, cls.name, sched_name)
    if cls.fixed_scheduler and s.scheduler.name != cls.fixed_scheduler:
        report.notes.append(
            f"{cls.name} fixes its own order ({cls.fixed_scheduler}); scheduler "
            f"{s.scheduler.name!r} would not be used"
        )
    dispatch = resolved_dispatch(s, scheduler)  # scheduler.dispatch: a clear error if unsupported
    check_dispatch(dispatch, scheduler)
    if cls.uses_scheduler:
        devs = world.devices if world.population is None else world.population.round_devices(0)
        ks = [world.iterations(d) for d in devs] or [world.local_iterations]
        _probe_scheduler(scheduler, max(ks), dispatch, min(ks))
    scheme = cls(scheduler)
    sim = Sim(world)
    if world.population is not None:  # a population: set up round 0's participants
        sim.world = world.with_devices(world.population.round_devices(0))
    scheme.setup(sim)
    _check_setup_memory(sim, scheme, cls.name)
    per_round = sum(world.iterations(d) for d in sim.world.devices)
    if dry_round and per_round <= DRY_ROUND_MAX:
        from sfsim.run import simulate

        one = s.model_copy(update={"training": s.training.model_copy(update={"rounds": 1})})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            simulate(one)
        report.notes.append("one round simulated: memory fits")
    elif dry_round:
        report.notes.append(
            f"one round is {per_round} device iterations (> {DRY_ROUND_MAX}): not simulated; "
            "mid-round memory peaks are checked by run"
        )
    return report
