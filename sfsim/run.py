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
from typing import Any

from sfsim import __version__
from sfsim.engine import SERVER, Proc, Sim
from sfsim.errors import InfeasibleError
from sfsim.results import RunResult, memory_frame, peak_bytes, summarize, trace_frame
from sfsim.scenario import Scenario, dump_scenario
from sfsim.schedulers import get_scheduler
from sfsim.schemes import scheme_class
from sfsim.schemes.population import RoundDriver
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
    return Scenario.model_validate(s.model_dump())


def _check_memory(world: World, peaks: dict[str, float], scheme: str) -> None:
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
            f"the server ({world.server.processor.name}) needs {need / GB:.2f} GB at peak but "
            f"has {world.server.memory_bytes / GB:.2f} GB"
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
) -> RunResult:
    """Run a resolved scenario and return its result (raises InputError if it cannot run).

    ``on_round(done, total)``, if given, is called after each round (e.g. a progress bar).
    """
    t0 = time.perf_counter()
    world = build_world(s)
    cls = scheme_class(s.training.scheme, key="training.scheme")
    sched_name = cls.fixed_scheduler or s.scheduler.name
    sched_params = {} if cls.fixed_scheduler else s.scheduler.params
    scheduler = get_scheduler(sched_name, **sched_params)
    scheme = cls(scheduler)
    sim = Sim(world)
    driver = RoundDriver(scheme, sim)  # a population sets up each round's participants
    driver.start()
    world = sim.world  # setup may replace the devices (e.g. cuts chosen by a cut policy)
    bounds: list[tuple[float, float]] = []

    def main() -> Proc:
        for r in range(world.rounds):
            start = sim.now
            yield sim.env.process(driver.round(r))
            bounds.append((start, sim.now))
            if on_round is not None:
                on_round(r + 1, world.rounds)

    sim.env.process(main())
    sim.env.run()
    world = sim.world  # a population: the devices that took part
    trace = trace_frame(sim.trace.spans)
    memory = memory_frame(sim.memory.events)
    if check_memory:
        _check_memory(world, peak_bytes(memory), cls.name)
    header: dict[str, Any] = {
        "scenario": s.name,
        "scheme": cls.name,
        "scheduler": sched_name,
        "scheduler_params": sched_params,
        "seed": s.seed,
        "rounds": world.rounds,
        "local_iterations": world.local_iterations,
        "n_devices": len(world.devices),
        "model": s.model.arch,
        "cost_model": world.costs.name,
        "version": __version__,
    }
    devices = {
        d.id: {
            "processor": d.processor.name,
            "cut": d.cut,
            "batch": d.batch,
            "memory_bytes": d.memory_bytes,
        }
        for d in world.devices
    }
    summary = summarize(trace, memory, bounds, header, devices)
    summary["server_memory_bytes"] = world.server.memory_bytes
    if "population" in sim.notes:  # population size and each round's participants
        summary["population"] = sim.notes["population"]
        summary["participants"] = sim.notes["participants"]
    scheme_notes = {
        k: v for k, v in sim.notes.items() if k not in ("plans", "population", "participants")
    }
    if scheme_notes:  # what a scheme decided in setup (chosen cuts, backbones)
        summary["scheme_notes"] = scheme_notes
    plans = sim.notes.get("plans", [])
    if cls.fixed_scheduler and s.scheduler.name != cls.fixed_scheduler:
        summary["scheduler_note"] = (
            f"{cls.name} fixes its own order ({cls.fixed_scheduler}); the scenario's scheduler "
            f"{s.scheduler.name!r} was not used"
        )
    if plans:
        uploads = trace[trace["phase"] == "adapter_upload"].groupby("round")["end_s"].max()
        for p, (start, _) in zip(plans, bounds, strict=False):
            p["realised_makespan_s"] = float(uploads.get(p["round"], start)) - start
        summary["plans"] = plans
    summary["wall_s"] = time.perf_counter() - t0
    return RunResult(summary, trace, memory, dump_scenario(s))
