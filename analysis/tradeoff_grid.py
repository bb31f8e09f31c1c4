"""The built-in parameter grid behind ``analysis/tradeoffs.py --grid``.

A grid is a list of scenarios, each a small edit of one base scenario, run exactly as
``sfsim run`` would (`sfsim.run.resolve`, `sfsim.run.simulate`, `sfsim.results.write_run_folder`
with the same extra writers) into ``OUT/<sweep>/<name>/``. Four sweeps, one question each:

* ``schemes``: every registered scheme × a few cut layers (all devices share the cut) — what
  does each scheme cost in time and in server / device memory?
* ``schedulers``: every registered scheduler on one heterogeneous round of ten devices (one
  local iteration, so the exact ``carlier`` applies) served by a modest edge GPU over fast links,
  so that the server is the bottleneck — how close is each to the optimum, and how long does it
  take to plan? The planning time is measured here, on the same estimated round instance the
  scheme hands the scheduler, as the best of three repetitions.
* ``bandwidth``: every scheme at uplink rates from 5 to 200 Mbit/s.
* ``heterogeneity``: every scheme on four devices whose effective FLOP/s are spread by a factor
  ``1 ± h`` around the same mean (h from 0 to 0.9), everything else equal.

Scheme and scheduler names come from the registries, so schemes and schedulers added later
join the grid without edits here. A combination a scheme refuses (a cut it cannot use, a
device that runs out of memory) is skipped and reported, as ``sfsim run`` would report it.
Each run folder gets a ``sweep.json`` with the sweep name, the swept value and the solve time.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sfsim.errors import InputError
from sfsim.export import RUN_WRITERS
from sfsim.progress import progress
from sfsim.results import write_run_folder
from sfsim.run import resolve, simulate
from sfsim.scenario import Scenario, parse_scenario
from sfsim.schedulers import available, dispatch, get_scheduler
from sfsim.schemes import scheme_class, schemes

#: Four real device classes, GPT-2 small, fixed-rate links: each run takes well under a second.
BASE: dict[str, Any] = {
    "name": "grid",
    "seed": 0,
    "model": {"arch": "gpt2", "dtype": "fp32", "seq_len": 128,
              "lora": {"rank": 8, "targets": ["q", "v"]}},
    "devices": [
        {"id": "orin-nano", "processor": "jetson-orin-nano-8gb", "batch_size": 4, "cut": 2,
         "uplink_mbps": 60},
        {"id": "phone", "processor": "snapdragon-8-gen-3", "batch_size": 4, "cut": 4,
         "uplink_mbps": 40},
        {"id": "pi5", "processor": "raspberry-pi-5-8gb", "batch_size": 2, "cut": 1,
         "uplink_mbps": 20},
        {"id": "agx", "processor": "jetson-agx-orin-64gb", "batch_size": 8, "cut": 3,
         "uplink_mbps": 80},
    ],
    "server": {"processor": "a100-80gb-sxm"},
    "channel": {"model": "fixed", "downlink_mbps": 200, "latency_ms": 5},
    "training": {"scheme": "memsfl", "rounds": 1, "local_iterations": 2},
    "scheduler": {"name": "schrage"},
}


def _per_device_sweep(
    sweep: str, key: str, tag: str, values: list[Any]
) -> Iterator[tuple[str, str, Any, dict[str, Any]]]:
    """Every scheme × every value of one device key, set alike on all devices."""
    for scheme in schemes():
        for value in values:
            s = copy.deepcopy(BASE)
            for d in s["devices"]:
                d[key] = value
            s["training"]["scheme"] = scheme
            yield sweep, f"{scheme}_{tag}{value:g}", value, s


def _schemes_sweep(cuts: list[int]) -> Iterator[tuple[str, str, Any, dict[str, Any]]]:
    return _per_device_sweep("schemes", "cut", "cut", cuts)


def _schedulers_sweep(n_devices: int) -> Iterator[tuple[str, str, Any, dict[str, Any]]]:
    procs = [d["processor"] for d in BASE["devices"]]
    for name in available():
        s = copy.deepcopy(BASE)
        # A modest edge GPU and fast links make the server the bottleneck, so the order matters.
        s["processors"] = {"edge-gpu": {"kind": "server", "peak_tflops": {"fp32": 2.0},
                                        "mem_bw_gbps": 300, "memory_gb": 24,
                                        "efficiency": 0.5}}
        s["server"] = {"processor": "edge-gpu"}
        s["devices"] = [
            {"id": f"d{i}", "processor": procs[i % len(procs)], "batch_size": (2, 4, 8)[i % 3],
             "cut": 1 + (i * 5) % 6, "uplink_mbps": (100, 200, 400, 150, 300)[i % 5]}
            for i in range(n_devices)
        ]
        s["training"]["local_iterations"] = 1
        s["scheduler"] = {"name": name}
        yield "schedulers", name, name, s


def _bandwidth_sweep(rates: list[float]) -> Iterator[tuple[str, str, Any, dict[str, Any]]]:
    return _per_device_sweep("bandwidth", "uplink_mbps", "up", rates)


def _heterogeneity_sweep(spreads: list[float]) -> Iterator[tuple[str, str, Any, dict[str, Any]]]:
    z = np.linspace(-1.0, 1.0, 4)
    for scheme in schemes():
        for h in spreads:
            s = copy.deepcopy(BASE)
            s["processors"] = {
                f"het{i}": {"kind": "device", "peak_tflops": {"fp32": 2.0 * (1 + h * zi)},
                            "mem_bw_gbps": 60.0 * (1 + h * zi), "memory_gb": 8,
                            "efficiency": 0.5}
                for i, zi in enumerate(z)
            }
            s["devices"] = [{"id": f"d{i}", "processor": f"het{i}", "batch_size": 4, "cut": 2,
                             "uplink_mbps": 50} for i in range(len(z))]
            s["training"]["scheme"] = scheme
            yield "heterogeneity", f"{scheme}_h{h:g}", h, s


def grid(quick: bool = False) -> list[tuple[str, str, Any, dict[str, Any]]]:
    """(sweep, run name, swept value, scenario dict) for every run of the grid."""
    if quick:
        return [*_schemes_sweep([2, 6]), *_schedulers_sweep(6), *_bandwidth_sweep([10, 100]),
                *_heterogeneity_sweep([0.0, 0.8])]
    return [*_schemes_sweep([1, 3, 6, 9, 11]), *_schedulers_sweep(10),
            *_bandwidth_sweep([5, 10, 20, 50, 100, 200]),
            *_heterogeneity_sweep([0.0, 0.3, 0.6, 0.9])]


def solve_time_s(s: Scenario, repeats: int = 3) -> float:
    """Seconds the scenario's scheduler needs to order its first round's estimated instance.

    NaN when the scheme picks its own order or does not expose its round estimate.
    """
    from sfsim.engine import Sim
    from sfsim.world import build_world

    cls = scheme_class(s.training.scheme)
    if not cls.uses_scheduler:
        return math.nan
    sched = get_scheduler(s.scheduler.name, **s.scheduler.params)
    scheme = cls(sched)
    sim = Sim(build_world(s))
    scheme.setup(sim)
    estimate = getattr(scheme, "estimate", None)
    if estimate is None:
        return math.nan
    instance = estimate(sim)
    best = math.inf
    for _ in range(repeats):
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        if sched.online:
            dispatch(instance, sched.select, rng)
        else:
            sched.plan(instance, rng)
        best = min(best, time.perf_counter() - t0)
    return best


def run_grid(out: str | Path, *, quick: bool = False) -> list[Path]:
    """Run the grid into ``out``; returns the run folders written (skipped runs are reported)."""
    out = Path(out)
    jobs = grid(quick)
    written: list[Path] = []
    skipped: list[str] = []
    with progress(len(jobs), "trade-off grid") as bar:
        for sweep, name, value, data in jobs:
            bar.describe(f"{sweep}: {name}")
            try:
                s = resolve(parse_scenario(data, file=f"<grid {sweep}/{name}>"))
                result = simulate(s)
                solve = solve_time_s(s) if sweep == "schedulers" else math.nan
            except InputError as exc:
                skipped.append(f"{sweep}/{name}: {exc.message}")
                bar.advance()
                continue
            folder = write_run_folder(out / sweep / name, result, list(RUN_WRITERS),
                                      overwrite=True)
            meta = {"sweep": sweep, "value": value,
                    "solve_s": None if math.isnan(solve) else solve}
            (folder / "sweep.json").write_text(json.dumps(meta, default=str) + "\n")
            written.append(folder)
            bar.advance()
    for line in skipped:
        print(f"skipped {line}")
    return written
