"""Population scale: a run's cost grows with its participants, not with its population.

The workload is ``scenarios/population_100k.yaml`` (memsfl, Schrage, analytic costs, fixed-rate
links, 10 rounds of K = 2) with ``fleet.count`` (the population N) and ``fleet.participants``
(k per round) varied. Each configuration runs in a fresh Python process, so its peak resident
memory is its own; the process loads and resolves the scenario, simulates it and writes the run
folder (Parquet tables, summary, resolved scenario; no Chrome trace).

Columns (medians over ``--repeats``; peak RSS is the largest):

* ``build``: ``build_world`` alone (the population's columns; nothing per device);
* ``simulate``: the whole ``simulate()``; ``write``: writing the run folder;
* ``process``: the child process from start to exit (interpreter and imports included);
* ``peak RSS``: the child's peak resident set (``ru_maxrss``);
* ``resolved``: the size of ``scenario.resolved.yaml`` (the generator, not N devices).

Run from the repository root::

    .venv/bin/python benchmarks/bench_population.py                 # the default grid
    .venv/bin/python benchmarks/bench_population.py --grid 100000:100 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "population_100k.yaml"
DEFAULT_GRID = "1000:100,10000:100,100000:100,1000000:100,100000:10,100000:1000"

CHILD = """
import json, resource, sys, tempfile, time
from pathlib import Path
t0 = time.perf_counter()
import yaml
from sfsim.results import write_run_folder
from sfsim.run import resolve, simulate
from sfsim.scenario import parse_scenario
from sfsim.world import build_world
n, k, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
data = yaml.safe_load(Path(path).read_text())
data["fleet"]["count"], data["fleet"]["participants"] = n, k
s = resolve(parse_scenario(data, file=path))
t1 = time.perf_counter(); build_world(s); t2 = time.perf_counter()
res = simulate(s)
t3 = time.perf_counter()
out = Path(tempfile.mkdtemp()) / "run"
write_run_folder(out, res)
t4 = time.perf_counter()
print(json.dumps({"build": t2 - t1, "simulate": t3 - t2, "write": t4 - t3,
                  "resolved": (out / "scenario.resolved.yaml").stat().st_size,
                  "devices": len(res.summary["devices"]), "spans": len(res.trace),
                  "makespan": res.summary["makespan_s"],
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_child(n: int, k: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), str(k), str(SCENARIO)],
            capture_output=True, text=True, cwd=tmp, check=False,
        )
    if proc.returncode != 0:
        raise SystemExit(f"N={n} k={k} failed:\n{proc.stderr}")
    out: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process"] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", default=DEFAULT_GRID, help="N:k pairs, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    grid = [tuple(int(x) for x in pair.split(":")) for pair in args.grid.split(",")]
    print(f"{'population':>10} {'k':>5} {'devices':>7} {'spans':>7} {'build s':>8} "
          f"{'simulate s':>10} {'write s':>8} {'process s':>9} {'peak RSS MB':>11} "
          f"{'resolved B':>10}")
    for n, k in grid:
        runs = [run_child(n, k) for _ in range(args.repeats)]
        med = {key: statistics.median(r[key] for r in runs)
               for key in ("build", "simulate", "write", "process")}
        print(f"{n:>10} {k:>5} {int(runs[0]['devices']):>7} {int(runs[0]['spans']):>7} "
              f"{med['build']:>8.3f} {med['simulate']:>10.3f} {med['write']:>8.3f} "
              f"{med['process']:>9.2f} {max(r['rss_mb'] for r in runs):>11.0f} "
              f"{int(runs[0]['resolved']):>10}", flush=True)
    own = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"(largest child peak RSS: {own:.0f} MB)")


if __name__ == "__main__":
    main()
