"""Round time vs dropout rate per scheduler (issue 12): how the server's order copes with drops.

Scenario: ``scenarios/scheduling/edge_4090_100dev_k1.yaml`` (100 heterogeneous devices on one
RTX 4090 under memsfl, K = 1, 2 rounds: server-bound, where the order matters). Each device drops
out *during* each round with probability p (``faults.dropout.during``, at a time uniform over its
expected round span; docs/faults.md), p in 0, 0.1, 0.2, 0.3. Schedulers: fifo and schrage
dispatching online, and the offline plans of schrage and local_search replayed strictly (a
dropped device's tasks leave the plan, the order of the others is kept). Each seed draws a new
fleet, links and dropouts; the dropouts of a seed are the same for every scheduler (the faults
stream does not depend on the order).

Round time: the mean of a run's round times; reported as mean and Student-t 95% CI over seeds,
with the mean fraction of devices that completed their round. Writes
``docs/img/round_time_vs_dropout.png`` and prints a markdown table.

Usage::

    .venv/bin/python analysis/dropout.py              # 5 seeds, 2 processes
    .venv/bin/python analysis/dropout.py --seeds 10 --jobs 1 --no-figure
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sfsim.stats import mean_ci  # noqa: E402

SCENARIO = ROOT / "scenarios" / "scheduling" / "edge_4090_100dev_k1.yaml"
RATES = (0.0, 0.1, 0.2, 0.3)
CONFIGS: dict[str, dict[str, Any]] = {
    "fifo (online)": {"name": "fifo"},
    "schrage (online)": {"name": "schrage"},
    "schrage plan (strict)": {"name": "schrage", "dispatch": "strict"},
    "local_search plan (strict)": {"name": "local_search", "dispatch": "strict"},
}
FIGURE = ROOT / "docs" / "img" / "round_time_vs_dropout.png"


def _one(job: tuple[str, float, int]) -> dict[str, Any]:
    from sfsim.run import resolve, simulate
    from sfsim.scenario import Scenario, load_scenario

    label, rate, seed = job
    s = load_scenario(SCENARIO)
    data = s.model_dump()
    data["seed"] = seed
    data["scheduler"] = {**data["scheduler"], "params": {}, "dispatch": "auto",
                         **CONFIGS[label]}
    data["faults"]["dropout"]["during"] = rate
    res = simulate(resolve(Scenario.model_validate(data)))
    summary = res.summary
    f = summary.get("faults")
    completed = 1.0 if f is None else f["devices_completed"] / f["devices_scheduled"]
    return {"label": label, "rate": rate, "seed": seed,
            "round_s": float(np.mean(summary["round_s"])), "completed": completed}


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| scheduler | " + " | ".join(f"p = {p:g}" for p in RATES) + " |",
           "|---|" + "---|" * len(RATES)]
    for label in CONFIGS:
        cells = []
        for p in RATES:
            sel = [r for r in rows if r["label"] == label and r["rate"] == p]
            m, h = mean_ci(r["round_s"] for r in sel)
            done = np.mean([r["completed"] for r in sel])
            cells.append(f"{m:.3f} ± {h:.3f} s ({done:.0%} done)")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def figure(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for i, label in enumerate(CONFIGS):
        stats = [mean_ci(r["round_s"] for r in rows if r["label"] == label and r["rate"] == p)
                 for p in RATES]
        x = np.array(RATES) + (i - 1.5) * 0.004  # a small dodge so the bars do not overlap
        ax.errorbar(x, [m for m, _ in stats], yerr=[h for _, h in stats], marker="o",
                    capsize=3, label=label)
    ax.set_xlabel("dropout probability per device and round (during the round)")
    ax.set_ylabel("mean round time (s)")
    ax.set_title("memsfl, 100 devices on one RTX 4090: round time vs dropout\n"
                 "mean and 95% CI over seeds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-figure", action="store_true")
    args = ap.parse_args(argv)
    jobs = [(label, p, seed) for seed in range(1, args.seeds + 1) for p in RATES
            for label in CONFIGS]
    if args.jobs <= 1:
        rows = [_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(_one, jobs, chunksize=2))
    print(f"Mean round time (s), mean ± 95% CI over {args.seeds} seeds; "
          f"{SCENARIO.relative_to(ROOT)}; dropout during the round with probability p\n")
    print(table(rows))
    if not args.no_figure:
        figure(rows, FIGURE)
        print(f"\nfigure: {FIGURE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
