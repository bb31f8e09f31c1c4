"""How well offline plans foresee a shared cell: planned vs realised round time per estimator.

Scenario: ``scenarios/memsfl_10dev.yaml`` (ten devices, memsfl, Shannon links with fading) with
5 rounds of K = 2, planned by local_search and replayed strictly, on dedicated links and in one
shared cell (``channel.access: shared``, ``sharing: equal``). The estimators (docs/schedulers.md)
plan on dedicated links: ``mean`` (expected durations), ``last`` (each device's durations as
observed in the previous round, contention included) and ``oracle`` (a pilot run's realised
durations). Per seed: the mean round time of rounds 1-4 (round 0 has no history for ``last``)
and the mean |realised − planned| / realised makespan over those rounds; mean ± Student-t 95%
CI over seeds.

Usage::

    .venv/bin/python analysis/shared_plans.py            # seeds 1-10, about 15 s
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

import sfsim
from sfsim.stats import mean_ci

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "memsfl_10dev.yaml"
ESTIMATORS = ("mean", "last", "oracle")
ACCESS = ("dedicated", "shared")


def one(access: str, estimator: str, seed: int) -> tuple[float, float]:
    """(mean round time, mean relative plan error) over rounds 1.. of one run."""
    over: dict[str, Any] = {
        "seed": seed, "training.rounds": 5, "training.local_iterations": 2,
        "channel.access": access, "channel.sharing": "equal",
        "scheduler.name": "local_search", "scheduler.dispatch": "strict",
        "scheduler.estimator": estimator}
    s = sfsim.run(SCENARIO, overrides=over).summary
    plans = s["plans"][1:]
    error = [abs(p["realised_makespan_s"] - p["planned_makespan_s"]) / p["realised_makespan_s"]
             for p in plans]
    return float(np.mean(s["round_s"][1:])), float(np.mean(error))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    args = ap.parse_args(argv)
    print("| channel | estimator | round time s | abs(plan error) % |")
    print("|---|---|---|---|")
    for access in ACCESS:
        for est in ESTIMATORS:
            runs = [one(access, est, seed) for seed in range(1, args.seeds + 1)]
            m, h = mean_ci(r for r, _ in runs)
            e, eh = mean_ci(100.0 * e for _, e in runs)
            print(f"| {access} | {est} | {m:.3f} ± {h:.3f} | {e:.1f} ± {eh:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
