"""What a shared cell costs the event loop: dedicated links, equal split and fluid sharing.

Workload: the fleet of ``scenarios/population_100k.yaml`` cut to N devices, all taking part
(memsfl, 2 rounds of K = 2, Llama-3.2-1B), on Shannon links (20 MHz, Rayleigh fading with a
10 ms coherence time), under ``channel.access: dedicated`` and ``shared`` with ``sharing:
equal`` and ``fluid``. Median wall time of ``--repeats`` runs of `sfsim.run` per cell (set-up,
event loop and summary; no run folder), the three modes alternating, in one process. From the
repository root::

    .venv/bin/python benchmarks/bench_channel.py                       # N = 10, 100, 1000
    .venv/bin/python benchmarks/bench_channel.py --sizes 100 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import sfsim

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "population_100k.yaml"
MODES = {"dedicated": {"channel.access": "dedicated"},
         "equal": {"channel.access": "shared", "channel.sharing": "equal"},
         "fluid": {"channel.access": "shared", "channel.sharing": "fluid"}}


def one(n: int, mode: str) -> tuple[float, float, int]:
    over = {"fleet.count": n, "fleet.participants": None, "training.rounds": 2,
            "channel.model": "shannon", "channel.fading": "rayleigh",
            "channel.coherence_ms": 10.0, **MODES[mode]}
    t0 = time.perf_counter()
    run = sfsim.run(SCENARIO, overrides=over)
    return time.perf_counter() - t0, float(run.summary["makespan_s"]), len(run.trace)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    one(10, "fluid")  # warm-up: imports and caches out of the timings
    print("| devices | spans | mode | simulated makespan s | wall s (median) | wall / dedicated |")
    print("|---|---|---|---|---|---|")
    for n in (int(x) for x in args.sizes.split(",")):
        walls: dict[str, list[float]] = {m: [] for m in MODES}
        seen: dict[str, tuple[float, int]] = {}
        for _ in range(args.repeats):
            for mode in MODES:
                wall, makespan, spans = one(n, mode)
                walls[mode].append(wall)
                seen[mode] = (makespan, spans)
        base = statistics.median(walls["dedicated"])
        for mode in MODES:
            med = statistics.median(walls[mode])
            makespan, spans = seen[mode]
            print(f"| {n} | {spans} | {mode} | {makespan:.3f} | {med:.2f} | {med / base:.2f}x |",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
