"""One simulation, in fixed phases: resolve, build, run, check, collect.

``resolve`` applies command-line overrides (scheme, scheduler, seed) and expands a generated fleet
into an explicit device list, so that ``scenario.resolved.yaml`` re-runs to the same result.
``simulate`` builds the world, lets the scheme lay out memory and run its rounds on the SimPy
clock, checks every device's and the server's peak memory against its capacity, and collects
the trace, the memory timeline and the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from sfsim import __version__, compression, estimators, fastpath, faults, fleetdata
from sfsim.engine import SERVER, Proc, Sim
from sfsim.errors import InfeasibleError
from sfsim.results import (
    RunResult,
    events_frame,
    memory_frame,
    peak_bytes,
    summarize,
    trace_frame,
)
from sfsim.scenario import Scenario
from sfsim.schedulers import get_scheduler
from sfsim.schemes import scheme_class
from sfsim.schemes.population import RoundDriver
from sfsim.schemes.split import SplitScheme
from sfsim.server import check_dispatch, resolved_dispatch, rolling_summary
from sfsim.world import World, build_world, resolved_devices

GB = 1e9


def resolve(
    s: Scenario, *, scheme: str | None = None, scheduler: str | None = None, seed: int | None = None
) -> Scenario:
    """The scenario with overrides applied and the fleet expanded into explicit devices."""
    training = s.training.model_copy(update={"scheme": scheme}) if scheme else s.training
    sched = s.scheduler
    if scheduler:
        same = scheduler == s.scheduler.name
        sched = s.scheduler.model_copy(
            update={"name": scheduler, "params": sched.params if same else {}}
        )
    s = s.model_copy(
        update={"training": training, "scheduler": sched, "seed": s.seed if seed is None else seed}
    )
    if s.fleet is not None and s.fleet.participants is None:  # a population stays a generator
        s = s.model_copy(update={"devices": resolved_devices(s), "fleet": None})
    elif s.fleet is None and s.variability.device.model != "none":  # write the drawn slowdowns
        s = s.model_copy(update={"devices": resolved_devices(s)})
    return Scenario.model_validate(s.model_dump())


def check_memory_fit(
    world: World, peaks: dict[str, float], scheme: str, *, server_when: str = "at peak"
) -> None:
    """InfeasibleError naming every device (and the server) whose peak exceeds its memory."""
    problems = []
    for d in world.devices:
        need = peaks.get(d.id, 0.0)
        if need > d.memory_bytes:
            problems.append(
                f"device {d.id!r} ({d.processor.name}, cut {d.cut}) needs {need / GB:.2f} GB at "
                f"peak but has {d.memory_bytes / GB:.2f} GB"
            )
    need = peaks.get(SERVER, 0.0)
    if need > world.server.memory_bytes:
        problems.append(
            f"the server ({world.server.processor.name}) needs {need / GB:.2f} GB "
            f"{server_when} but has {world.server.memory_bytes / GB:.2f} GB"
        )
    if problems:
        raise InfeasibleError(
            f"scheme {scheme!r} does not fit in memory: " + "; ".join(problems), key="devices"
        )


def simulate(
    s: Scenario,
    *,
    check_memory: bool = True,
    on_round: Callable[[int, int], None] | None = None,
    timings: dict[str, float] | None = None,
    fast: bool | Literal["auto"] = False,
) -> RunResult:
    """Run a resolved scenario and return its result (raises InputError if it cannot run).

    ``on_round(done, total)``, if given, is called after each round (e.g. a progress bar).
    ``timings``, if given, receives the wall time of the phases (``setup_s``,
    ``event_loop_s``, ``collect_s``) for benchmarks; it never enters the summary.
    ``fast``: ``"auto"`` evaluates rounds in closed form where that is exact (`sfsim.fastpath`),
    ``True`` insists on it (ValueError when it does not apply), ``False`` (default) always runs
    the event loop. A closed-form result has round times, makespan and plans but no trace or
    memory timeline; ``summary["engine_path"]`` says which path ran.
    """
    t0 = time.perf_counter()
    world = build_world(s)
    cls = scheme_class(s.training.scheme, key="training.scheme")
    faults.check_scheme(s, cls)  # streaming schemes refuse faults they do not model
    compression.check(s.training, s.model.seq_len, cls.name)  # options the scheme takes
    sched_name = cls.fixed_scheduler or s.scheduler.name
    sched_params = {} if cls.fixed_scheduler else s.scheduler.params
    scheduler = get_scheduler(sched_name, **sched_params)
    dispatch = resolved_dispatch(s, scheduler)
    check_dispatch(dispatch, scheduler)
    scheme = cls(scheduler)
    if isinstance(scheme, SplitScheme):  # what the scheduler is told (sfsim/estimators.py)
        scheme.estimator = _estimator(s, fast)
    sim = Sim(world)
    driver = RoundDriver(scheme, sim)  # a population sets up each round's participants
    driver.start()
    world = sim.world  # setup may replace the devices (e.g. cuts chosen by a cut policy)
    if fast:
        reason = ("faults change rounds at run time" if sim.faults is not None
                  else fastpath.why_not(sim, scheme, scheduler))
        if reason is None:
            return _closed_form_result(s, sim, scheme, sched_name, sched_params, t0, timings,
                                       dispatch)
        if fast is True:
            raise ValueError(f"no closed form for this run: {reason}")
    bounds: list[tuple[float, float]] = []

    def main() -> Proc:
        if scheme.continuous(sim):  # no round barriers: rounds are bookkeeping (docs/async.md)
            yield sim.env.process(scheme.run_all(sim, bounds, on_round))
            return
        for r in range(world.rounds):
            start = sim.now
            yield sim.env.process(driver.round(r))
            bounds.append((start, sim.now))
            if on_round is not None:
                on_round(r + 1, world.rounds)

    sim.env.process(main())
    t_loop = time.perf_counter()
    sim.env.run()
    t_collect = time.perf_counter()
    world = sim.world  # a population: the devices that took part
    trace = trace_frame(sim.trace)
    memory = memory_frame(sim.memory)
    if check_memory:
        check_memory_fit(world, peak_bytes(memory), cls.name)
    header = _header(s, world, cls.name, sched_name, sched_params, dispatch)
    devices = _device_info(world)
    summary = summarize(trace, memory, bounds, header, devices)
    summary["engine_path"] = "event"
    _add_energy(summary, trace, world, bounds)
    fleetdata.add_to_summary(summary, world, sim.events.columns(), sim.notes.get("participants"))
    summary["server_memory_bytes"] = world.server.memory_bytes
    if s.channel.broadcast_downlink:  # bytes the cell carried once per broadcast (sfsim.channel)
        summary["broadcast_bytes"] = sim.broadcast_bytes
    if "population" in sim.notes:  # population size and each round's participants
        summary["population"] = sim.notes["population"]
        summary["participants"] = sim.notes["participants"]
    scheme_notes = {
        k: v for k, v in sim.notes.items()
        if k not in ("plans", "population", "participants", "rolling")
    }
    if "rolling" in sim.notes:  # dispatch: rolling, re-solves per round
        summary["rolling"] = rolling_summary(sim.notes["rolling"], s)
    if scheme_notes:  # what a scheme decided in setup (chosen cuts, backbones)
        summary["scheme_notes"] = scheme_notes
    plans = sim.notes.get("plans", [])
    if cls.fixed_scheduler and s.scheduler.name != cls.fixed_scheduler:
        summary["scheduler_note"] = (
            f"{cls.name} fixes its own order ({cls.fixed_scheduler}); the scenario's scheduler "
            f"{s.scheduler.name!r} was not used"
        )
    if sim.faults is not None:  # drops, samples, wasted work; what outages and slowdowns cost
        block = (faults.summarize(trace, sim.events.columns(), sim.faults.scheduled)
                 if sim.faults.scheduled else {})
        per_round = block.pop("per_round", None)
        block.update(faults.episodes_summary(sim.faults, trace))
        if per_round is not None:
            block["per_round"] = per_round
        summary["faults"] = block
    if plans and sim.faults is not None:  # a dropped device's chain is cut: nothing to judge
        summary["plans"] = plans
        summary["plans_note"] = "plans not judged against the realised rounds under faults"
    elif plans:  # planned vs realised, the ex-post optimum and the regret (sfsim/estimators.py)
        k = world.local_iterations if s.training.local_work == "iterations" else None
        estimators.judge_plans(plans, trace, bounds, k,
                               s.scheduler.estimator, s.scheduler.ex_post_time_limit_s)
        summary["plans"] = plans
    summary["wall_s"] = time.perf_counter() - t0
    if timings is not None:
        timings.update(
            setup_s=t_loop - t0,
            event_loop_s=t_collect - t_loop,
            collect_s=time.perf_counter() - t_collect,
        )
    return RunResult(summary, trace, memory, s, events_frame(sim.events))


def _add_energy(summary: dict[str, Any], trace: Any, world: World,
                bounds: list[tuple[float, float]]) -> None:
    """Energy figures (sfsim/energy.py): per device, the server, the total and per round; and
    each span's joules as the trace's ``energy_j`` column."""
    from sfsim.energy import energy_summary, span_energy_j

    per_device = summary["devices"]
    e = energy_summary(trace, world, bounds, per_device)
    trace["energy_j"] = span_energy_j(trace, world)  # each span's joules, in the trace files
    for dev_id, fields in e.pop("devices").items():
        if dev_id in per_device:
            per_device[dev_id].update(fields)
    summary.update(e)


def _device_info(world: World) -> dict[str, dict[str, Any]]:
    """What the summary says of each device before its measured figures."""
    return {
        d.id: {
            "processor": d.processor.name,
            "cut": d.cut,
            "batch": d.batch,
            "memory_bytes": d.memory_bytes,
        }
        for d in world.devices
    }


def _header(
    s: Scenario,
    world: World,
    scheme: str,
    sched_name: str,
    sched_params: dict[str, Any],
    dispatch: str,
) -> dict[str, Any]:
    """What ran: the summary's first keys, the same for the event loop and the closed form."""
    return {
        "scenario": s.name,
        "scheme": scheme,
        "scheduler": sched_name,
        "scheduler_params": sched_params,
        "dispatch": dispatch,
        "seed": s.seed,
        "rounds": world.rounds,
        "local_iterations": world.local_iterations,
        "n_devices": len(world.devices),
        "model": s.model.arch,
        "cost_model": world.costs.name,
        "version": __version__,
    }


def _estimator(s: Scenario, fast: bool | Literal["auto"]) -> estimators.Estimator:
    """The scenario's estimator; ``oracle`` first runs its pilot (the same run, ``mean``)."""
    est = estimators.from_config(s.scheduler)
    if est.name == "oracle":
        pilot_cfg = s.scheduler.model_copy(
            update={"estimator": "mean", "ex_post_time_limit_s": 0.0}
        )
        pilot = simulate(s.model_copy(update={"scheduler": pilot_cfg}), check_memory=False,
                         fast=fast)
        est.pilot = estimators.realised_durations(pilot.trace)
    return est


def _closed_form_result(
    s: Scenario,
    sim: Sim,
    scheme: Any,
    sched_name: str,
    sched_params: dict[str, Any],
    t0: float,
    timings: dict[str, float] | None,
    dispatch: str = "strict",
) -> RunResult:
    """`simulate` without the event loop: round times from `sfsim.fastpath` (no spans)."""
    import pandas as pd

    world = sim.world
    t_loop = time.perf_counter()
    bounds = fastpath.round_bounds(sim, scheme, world.rounds)
    t_collect = time.perf_counter()
    makespan = bounds[-1][1] if bounds else 0.0
    summary: dict[str, Any] = {
        **_header(s, world, scheme.name, sched_name, sched_params, dispatch),
        "status": "ok",
        "error": None,
        "engine_path": "closed_form",
        "makespan_s": makespan,
        "round_s": [e - b for b, e in bounds],
        "round_bounds_s": [list(b) for b in bounds],
        "server_memory_bytes": world.server.memory_bytes,
        "devices": _device_info(world),
        "closed_form_note": (
            "round times evaluated in closed form from the scheduling instance (no event loop); "
            "no trace or memory timeline, so peaks, busy times and bytes are not reported"
        ),
    }
    fleetdata.add_to_summary(summary, world, None, aggregates=True)  # memsfl: FedAvg each round
    notes = {k: v for k, v in sim.notes.items() if k != "plans"}
    if notes:
        summary["scheme_notes"] = notes
    if sim.notes.get("plans"):
        if isinstance(scheme, SplitScheme):  # nothing random: realised = estimated instance
            estimators.judge_closed_form(sim.notes["plans"], scheme.estimate(sim),
                                         s.scheduler.estimator, s.scheduler.ex_post_time_limit_s)
        summary["plans"] = sim.notes["plans"]
    summary["wall_s"] = time.perf_counter() - t0
    if timings is not None:
        timings.update(
            setup_s=t_loop - t0,
            event_loop_s=t_collect - t_loop,
            collect_s=time.perf_counter() - t_collect,
        )
    empty = pd.DataFrame()
    return RunResult(summary, empty, empty, s)
