"""Estimates vs realisations: what each ``scheduler.estimator`` plans, what the round realises,
and the regret against the ex-post optimum on realised times, over seeds.

    .venv/bin/python benchmarks/bench_estimators.py scenarios/memsfl_10dev.yaml \\
        --scheduler carlier --k 1 --seeds 20

Per estimator, over every round of every seed: the mean planned makespan, the mean realised
makespan, the mean relative planning error (planned − realised) / realised, the mean regret
(realised − ex-post optimum) and its share of the ex-post optimum, the share of rounds whose
ex-post optimum is proven, and the mean makespan of the whole run (with a Student-t 95% CI).
"""

from __future__ import annotations

import argparse
import statistics
import time

from sfsim.estimators import ESTIMATORS
from sfsim.run import resolve, simulate
from sfsim.scenario import load_scenario
from sfsim.stats import mean_ci


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario")
    ap.add_argument("--scheduler", default="carlier")
    ap.add_argument("--k", type=int, default=None, help="local iterations (default: scenario's)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--estimators", default=",".join(ESTIMATORS))
    ap.add_argument("--ex-post-limit", type=float, default=2.0)
    args = ap.parse_args()
    base = load_scenario(args.scenario)
    print(f"{args.scenario}  scheduler={args.scheduler}  K={args.k or 'scenario'}  "
          f"seeds=0..{args.seeds - 1}")
    print(f"{'estimator':10s} {'planned_s':>10s} {'realised_s':>10s} {'plan_err':>9s} "
          f"{'regret_s':>9s} {'regret%':>8s} {'proven':>7s} {'run_makespan_s (95% CI)':>24s} "
          f"{'wall_s':>7s}")
    for est in args.estimators.split(","):
        planned, realised, err, regret, share, proven, runs = [], [], [], [], [], [], []
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            s = resolve(base, scheduler=args.scheduler, seed=seed)
            training = s.training if args.k is None else s.training.model_copy(
                update={"local_iterations": args.k})
            sched = s.scheduler.model_copy(
                update={"estimator": est, "ex_post_time_limit_s": args.ex_post_limit})
            res = simulate(s.model_copy(update={"scheduler": sched, "training": training}))
            runs.append(res.summary["makespan_s"])
            for p in res.summary.get("plans", []):
                planned.append(p["planned_makespan_s"])
                realised.append(p["realised_makespan_s"])
                err.append((p["planned_makespan_s"] - p["realised_makespan_s"])
                           / p["realised_makespan_s"])
                regret.append(p["regret_s"])
                share.append(p["regret_s"] / p["ex_post_s"])
                proven.append(1.0 if p["ex_post_optimal"] else 0.0)
        wall = time.perf_counter() - t0
        m = statistics.fmean
        print(f"{est:10s} {m(planned):10.4f} {m(realised):10.4f} {100 * m(err):+8.2f}% "
              f"{m(regret):9.4f} {100 * m(share):7.2f}% {100 * m(proven):6.0f}% "
              f"{m(runs):14.4f} ± {mean_ci(runs)[1]:7.4f} {wall:7.1f}")


if __name__ == "__main__":
    main()
