"""Makespan per scheduler and dispatch mode on one scenario, over seeds (mean and 95% CI).

Run from the repository root::

    .venv/bin/python benchmarks/bench_dispatch.py scenarios/scheduling/edge_target90_k1.yaml \
        --seeds 10 --rounds 1

Each combination ``scheduler:mode`` (``--combos``) runs the scenario once per seed with
``scheduler.dispatch`` set to the mode; it prints the mean makespan with a Student-t 95%
confidence interval, the paired difference to ``--baseline`` (same seeds; mean and
95% CI), the server utilisation, the re-solves per run (rolling) and the wall time
per run. The ex-post optimum of each round is switched off (``ex_post_time_limit_s: 0``, where
the scenario has that key): it does not change the makespan and would dominate the wall time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run without installing sfsim


from sfsim.run import resolve, simulate
from sfsim.scenario import Scenario, load_scenario
from sfsim.stats import mean_ci

DEFAULT_COMBOS = (
    "fifo:online,schrage:online,carlier:strict,carlier:priority,carlier:rolling,"
    "local_search:strict,local_search:priority"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", type=Path)
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds per run (default 1)")
    ap.add_argument("--combos", default=DEFAULT_COMBOS, help="scheduler:mode,... to compare")
    ap.add_argument("--baseline", default="carlier:strict",
                    help="combination the paired differences are taken against")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    base = load_scenario(args.scenario)
    print("| scheduler | dispatch | makespan (s), mean ± 95% CI | vs baseline, paired (s) "
          "| server util. | re-solves/run | wall/run (s) |")
    print("|---|---|---|---|---|---|---|")
    combos = args.combos.split(",")
    if args.baseline in combos:  # run the baseline first
        combos.remove(args.baseline)
    combos.insert(0, args.baseline)
    base_vals: list[float] = []
    for combo in combos:
        name, mode = combo.split(":")
        vals, walls, solves, utils = [], [], [], []
        for seed in range(args.seeds):
            d = resolve(base, scheduler=name, seed=seed).model_dump()
            d["training"]["rounds"] = args.rounds
            d["scheduler"]["dispatch"] = mode
            if "ex_post_time_limit_s" in d["scheduler"]:
                d["scheduler"]["ex_post_time_limit_s"] = 0.0
            t0 = time.perf_counter()
            res = simulate(Scenario.model_validate(d))
            walls.append(time.perf_counter() - t0)
            vals.append(res.summary["makespan_s"])
            utils.append(res.summary.get("server_utilisation", float("nan")))
            solves.append(res.summary.get("rolling", {}).get("re_solves", 0))
        if not base_vals:
            base_vals = vals
        diffs = [v - b for v, b in zip(vals, base_vals, strict=True)]
        mean, half = mean_ci(vals)
        dmean, dhalf = mean_ci(diffs)
        print(f"| {name} | {mode} | {mean:.4f} ± {half:.4f} | {dmean:+.4f} ± {dhalf:.4f} "
              f"| {statistics.mean(utils):.3f} | {statistics.mean(solves):.0f} "
              f"| {statistics.mean(walls):.2f} |", flush=True)


if __name__ == "__main__":
    main()
