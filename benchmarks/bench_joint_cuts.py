"""Cut policies compared: estimated and simulated round makespans of max_fit, balanced,
min_time and joint on one fleet (docs/schemes.md, "Cut policies").

    .venv/bin/python benchmarks/bench_joint_cuts.py [SCENARIO] [--count N] [--k K]
        [--scheduler NAME] [--set KEY=VALUE ...]

Estimated: the chosen cuts' round instance (``round_instance``) under the scenario's scheduler's
order (what that scheduler will plan) and under Schrage's order (what ``min_time`` ranks by);
joint's own figure is its optimum. Simulated: the run's makespan of one round (FedAvg and
broadcast included). Every run is deterministic: the figures reproduce exactly.
"""

from __future__ import annotations

import argparse

import numpy as np

import sfsim
from sfsim.schedulers import get_scheduler, makespan
from sfsim.schemes.split import round_instance, split_costs
from sfsim.world import build_world

POLICIES = ("max_fit", "balanced", "min_time", "joint")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", nargs="?", default="scenarios/papers/p000_memsfl.yaml")
    ap.add_argument("--count", type=int, default=6, help="fleet.count (devices)")
    ap.add_argument("--k", type=int, default=1, help="local iterations")
    ap.add_argument("--scheduler", default="carlier")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    over = {"fleet.count": args.count, "training.local_iterations": args.k,
            "training.rounds": 1, "scheduler.name": args.scheduler}
    for item in args.set:
        key, value = item.split("=", 1)
        over[key] = value
    print(f"{args.scenario} {over}")
    print(f"{'policy':9} {'est. sched':>11} {'est. schrage':>12} {'simulated':>10} "
          f"{'run wall s':>10}  notes / cuts")
    rng = np.random.default_rng(0)
    for policy in POLICIES:
        run = sfsim.run(args.scenario, overrides={**over, "training.cut_policy": policy})
        s = run.summary
        cuts = {d: v["cut"] for d, v in s["devices"].items()}
        world = build_world(run.scenario)
        inst = round_instance(world, {d.id: split_costs(world, d, cuts[d.id])
                                      for d in world.devices})
        est = makespan(inst, get_scheduler(args.scheduler).order(inst, rng))
        schrage = makespan(inst, get_scheduler("schrage").order(inst, rng))
        notes = s["scheme_notes"].get("cuts", {})
        extra = ""
        if policy == "joint":
            extra = (f"joint={notes['estimated_round_s']:.4f} {notes['method']} "
                     f"proven={notes['proven_optimal']} ")
        print(f"{policy:9} {est:11.4f} {schrage:12.4f} {s['makespan_s']:10.4f} "
              f"{s['wall_s']:10.2f}  {extra}{sorted(cuts.values())}")


if __name__ == "__main__":
    main()
