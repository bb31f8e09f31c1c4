"""Engine speed: sfsim against a bare SimPy model of the same workload, side by side.

The workload (issue 9): memsfl, FIFO, analytic costs, fixed-rate links; per device and round,
K iterations of device forward, uplink, server forward + backward on ONE capacity-1 server,
downlink, device backward; then the adapter upload, the server's FedAvg and the broadcast.

The bare model is written straight on SimPy with the durations sfsim computes (the same
`split_costs` and links), does the same event work (a timeout per phase, a request on the
capacity-1 server resource per iteration, a process per device per round) and records nothing.
Its makespan must equal sfsim's (checked on every run), so both sides simulate the same thing.

Columns (medians over ``--repeats``):

* ``bare``: the bare SimPy model, ``env.run()`` only;
* ``loop``: sfsim's event loop only (``env.run()`` inside `sfsim.run.simulate`);
* ``simulate``: the whole ``simulate()`` (world, scheme set-up, event loop, frames, summary);
* ``write``: writing the run folder (Parquet tables, ``trace.json``, summary, scenario);
* ratios ``loop/bare``, ``simulate/bare`` and ``write/simulate``; ``µs/span`` = simulate time
  per trace span (flat when the cost is linear in spans).

Run from the repository root::

    .venv/bin/python benchmarks/bench_engine.py                  # 10, 100, 1000, 10000 devices
    .venv/bin/python benchmarks/bench_engine.py --sizes 10,100 --repeats 3
    .venv/bin/python benchmarks/bench_engine.py --profile 1000    # cProfile of one simulate()

Sizes up to 1000 run 10 rounds of K = 2; 10000 devices run 1 round of K = 1.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing sfsim

import simpy

from sfsim.export import RUN_WRITERS
from sfsim.results import write_run_folder
from sfsim.run import resolve, simulate
from sfsim.scenario import Scenario, parse_scenario
from sfsim.schemes.split import split_costs
from sfsim.world import build_world

GB = 1e9


def scenario(n: int, rounds: int, k: int, scheduler: str = "fifo") -> Scenario:
    """The benchmark scenario: ``n`` heterogeneous devices, memsfl, analytic costs, fixed links."""
    d: dict[str, Any] = {
        "name": f"bench-{n}",
        "seed": 0,
        "model": {
            "arch": "gpt2",
            "dtype": "fp32",
            "seq_len": 128,
            "lora": {"rank": 8, "targets": ["q", "v"]},
        },
        "costs": {"model": "analytic"},
        "fleet": {
            "count": n,
            "mix": {
                "jetson-orin-nano-8gb": 3,
                "snapdragon-8-gen-3": 3,
                "apple-a17-pro": 2,
                "jetson-agx-orin-64gb": 2,
            },
            "batch_size": [2, 4],
            "cut": [1, 2, 3, 4],
            "uplink_mbps": {"min": 20, "max": 100},
        },
        "server": {"processor": "a100-80gb-sxm", "memory_gb": 10_000},
        "channel": {"model": "fixed", "downlink_mbps": 200, "latency_ms": 5},
        "training": {"scheme": "memsfl", "rounds": rounds, "local_iterations": k},
        "scheduler": {"name": scheduler},
    }
    return resolve(parse_scenario(d))


def shape(n: int) -> tuple[int, int]:
    """(rounds, K) for a fleet size: 10 × 2 up to 1000 devices, 1 × 1 beyond."""
    return (10, 2) if n <= 1000 else (1, 1)


# ---- the bare SimPy model -------------------------------------------------------------------


def bare_model(s: Scenario) -> tuple[simpy.Environment, Callable[[], float]]:
    """The same workload on bare SimPy; returns the environment and a makespan getter.

    Durations come from sfsim's own cost functions (`split_costs`, the links' ``duration_s``),
    computed before the clock starts, as any hand-written SimPy model would.
    """
    world = build_world(s)
    rounds, k_iter = world.rounds, world.local_iterations
    steps = []
    total_adapter = 0.0
    for d in world.devices:
        assert d.cut is not None
        c = split_costs(world, d, d.cut)
        total_adapter += c.adapter_bytes
        steps.append(
            (
                c.dev_fwd_s,
                d.uplink.duration_s(c.up_bytes, 0.0),
                c.srv_fwd_s,
                c.srv_bwd_s,
                d.downlink.duration_s(c.down_bytes, 0.0),
                c.dev_bwd_s,
                d.uplink.duration_s(c.adapter_bytes, 0.0),
                d.downlink.duration_s(c.adapter_bytes, 0.0),
            )
        )
    agg_s = 2.0 * total_adapter / 4 / world.server.processor.flops_per_s("fp32")
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    end = [0.0]

    def device(st: tuple[float, ...]) -> Any:
        fwd, up, sfwd, sbwd, down, bwd, adapter_up, _ = st
        for _ in range(k_iter):
            yield env.timeout(fwd)
            yield env.timeout(up)
            with server.request() as req:
                yield req
                yield env.timeout(sfwd)
                yield env.timeout(sbwd)
            yield env.timeout(down)
            yield env.timeout(bwd)
        yield env.timeout(adapter_up)

    def broadcast(st: tuple[float, ...]) -> Any:
        yield env.timeout(st[7])

    def main() -> Any:
        for _ in range(rounds):
            yield env.all_of([env.process(device(st)) for st in steps])
            yield env.timeout(agg_s)
            yield env.all_of([env.process(broadcast(st)) for st in steps])
        end[0] = env.now

    env.process(main())
    return env, lambda: end[0]


# ---- measuring ------------------------------------------------------------------------------


def measure(n: int, out_dir: Path) -> dict[str, float]:
    rounds, k = shape(n)
    s = scenario(n, rounds, k)
    env, makespan = bare_model(s)
    t0 = time.perf_counter()
    env.run()
    bare_s = time.perf_counter() - t0

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    result = simulate(s, timings=timings)
    sim_s = time.perf_counter() - t0
    rel = abs(result.summary["makespan_s"] - makespan()) / makespan()
    if rel > 1e-9:
        raise SystemExit(
            f"{n} devices: sfsim makespan {result.summary['makespan_s']} != bare {makespan()}"
        )
    folder = out_dir / f"run-{n}"
    t0 = time.perf_counter()
    write_run_folder(folder, result, list(RUN_WRITERS), overwrite=True)
    write_s = time.perf_counter() - t0
    trace_mb = (folder / "trace.json").stat().st_size / 1e6
    shutil.rmtree(folder)
    return {
        "bare": bare_s,
        "loop": timings["event_loop_s"],
        "simulate": sim_s,
        "write": write_s,
        "spans": float(len(result.trace)),
        "trace_mb": trace_mb,
    }


def table(rows: dict[int, dict[str, float]]) -> str:
    head = (
        "| devices × rounds × K | spans | bare SimPy s | sfsim loop s | simulate() s | write s "
        "| loop/bare | simulate/bare | write/simulate | µs/span |"
    )
    lines = [head, "|" + " --- |" * 10]
    for n, m in rows.items():
        rounds, k = shape(n)
        lines.append(
            f"| {n} × {rounds} × {k} | {int(m['spans'])} | {m['bare']:.3f} | {m['loop']:.3f} "
            f"| {m['simulate']:.3f} | {m['write']:.3f} | {m['loop'] / m['bare']:.2f}× "
            f"| {m['simulate'] / m['bare']:.2f}× | {m['write'] / m['simulate']:.2f}× "
            f"| {1e6 * m['simulate'] / m['spans']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="10,100,1000,10000", help="device counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=3, help="runs per size (medians reported)")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile one run of N")
    args = ap.parse_args(argv)

    if args.profile:
        rounds, k = shape(args.profile)
        s = scenario(args.profile, rounds, k)
        prof = cProfile.Profile()
        prof.enable()
        simulate(s)
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return

    sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    rows: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sfsim-bench-") as tmp:
        for n in sizes:
            runs = [measure(n, Path(tmp)) for _ in range(args.repeats)]
            rows[n] = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            m = rows[n]
            print(
                f"{n} devices: bare {m['bare']:.3f}s, loop {m['loop']:.3f}s, simulate "
                f"{m['simulate']:.3f}s, write {m['write']:.3f}s "
                f"({m['trace_mb']:.1f} MB trace.json)",
                file=sys.stderr,
                flush=True,
            )
    print(table(rows))


if __name__ == "__main__":
    main()
