"""Where order matters: makespan per scheduler on a server-bound family, over seeds (issue 11).

Two measurements, both with Student-t 95% confidence intervals over seeds (each seed draws a new
fleet, new links and new fading):

1. **Table** on ``scenarios/scheduling/edge_a100_200dev_k1.yaml`` (200 heterogeneous devices on
   one A100, K = 1, 2 rounds): the training time (makespan) of every configuration, and its
   change relative to FIFO on the same seed (mean and CI of the per-seed ratio - 1).
2. **Figure** ``docs/img/scheduling_vs_utilisation.png``: the same configurations on
   ``edge_target90_k1.yaml`` with ``fleet.target_utilisation`` at several levels (the fleet is
   sized to each estimated utilisation), makespan relative to FIFO against the *achieved* server
   utilisation of the FIFO run (mean over seeds), with CI bars. It also yields the
   target-vs-achieved table of the generator (``--targets``).

Configurations: fifo (online, by arrival); schrage online (non-delay, longest tail first);
offline plans of schrage, local_search, milp and carlier (K = 1) on the estimated instance,
replayed strictly; and, where this sfsim has them, each dispatch mode of the offline plans
(``scheduler.dispatch``: priority, rolling), the scheduler's estimators and the joint cut and
order (``training.cut_policy: joint``, devices without fixed cuts). A configuration this sfsim
cannot run is reported as such, not dropped silently.

Usage::

    .venv/bin/python analysis/scheduling_table.py                 # table (20 seeds) + figure
    .venv/bin/python analysis/scheduling_table.py --seeds 5 --fig-seeds 3 --no-figure  # quick

Prints markdown. The joint cut + order rows are slow (10-25 s a run: a local search over 200
devices' cuts), so they use ``--joint-seeds`` seeds (default 10) and stay out of the figure.
Runtime: 344-634 s with ``--jobs 2`` on the 2-core development machine shared with other work
(load ~4.5); about half of it the joint rows. ``--joint-seeds 3`` roughly halves it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sfsim.stats import mean_ci

ROOT = Path(__file__).resolve().parents[1]
TABLE_SCENARIO = ROOT / "scenarios" / "scheduling" / "edge_a100_200dev_k1.yaml"
FIG_SCENARIO = ROOT / "scenarios" / "scheduling" / "edge_target90_k1.yaml"
FIGURE = ROOT / "docs" / "img" / "scheduling_vs_utilisation.png"
#: The configurations drawn in the figure (fewer than the table's, to keep the run short).
FIGURE_LABELS = ("fifo", "schrage online", "local_search strict", "carlier strict",
                 "carlier priority", "carlier rolling", "carlier strict, mean_snr estimate")
SOLVE_LIMIT_S = 2.0  # per plan, for milp / carlier / local_search


def _features() -> dict[str, bool]:
    from typing import get_args

    from sfsim.scenario import SchedulerCfg, TrainingCfg

    fields = SchedulerCfg.model_fields
    policies = get_args(TrainingCfg.model_fields["cut_policy"].annotation)
    return {"dispatch": "dispatch" in fields, "estimator": "estimator" in fields,
            "joint": "joint" in policies}


def configurations(k: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """(label, scenario overrides) of every configuration this sfsim can express."""
    feats = _features()
    lim = {"time_limit_s": SOLVE_LIMIT_S}
    offline = [("schrage", {}), ("local_search", dict(lim)), ("milp", dict(lim))]
    if k == 1:
        offline.append(("carlier", dict(lim)))
    out: list[tuple[str, dict[str, Any]]] = [
        ("fifo", {"scheduler.name": "fifo"}),
        ("schrage online", {"scheduler.name": "schrage", "scheduler.params": {"online": True}}),
    ]
    for name, params in offline:
        base = {"scheduler.name": name, "scheduler.params": params}
        if feats["dispatch"]:
            out.append((f"{name} strict", {**base, "scheduler.dispatch": "strict"}))
            out.append((f"{name} priority", {**base, "scheduler.dispatch": "priority"}))
        else:
            out.append((f"{name} strict", base))
    if feats["dispatch"]:
        out.append(("carlier rolling" if k == 1 else "local_search rolling", {
            "scheduler.name": "carlier" if k == 1 else "local_search",
            "scheduler.params": {"time_limit_s": 0.05}, "scheduler.dispatch": "rolling",
            "scheduler.rolling": {"budget_s": 0.05}}))
    if feats["estimator"]:  # the default estimate is "mean"; compare what else plans see
        name = "carlier" if k == 1 else "local_search"
        for est in ("mean_snr", "quantile", "oracle"):
            out.append((f"{name} strict, {est} estimate",
                        {"scheduler.name": name, "scheduler.params": dict(lim),
                         "scheduler.estimator": est}))
    if feats["joint"]:
        out.append(("joint cut + order", {"scheduler.name": "local_search",
                                          "scheduler.params": dict(lim), "fleet.cut": None,
                                          "training.cut_policy": "joint"}))
        out.append(("max_fit cuts + fifo", {"scheduler.name": "fifo", "fleet.cut": None,
                                            "training.cut_policy": "max_fit"}))
    return out


def _one(job: tuple[str, str, dict[str, Any], int]) -> dict[str, Any]:
    """Run one (scenario, configuration, seed); errors come back as rows too."""
    from sfsim import api
    from sfsim.errors import InputError

    path, label, overrides, seed = job
    t0 = time.perf_counter()
    try:
        s = api.run(path, overrides={**overrides, "seed": seed}).summary
    except (InputError, ValueError) as exc:
        return {"label": label, "seed": seed, "error": str(exc).splitlines()[0],
                "target": overrides.get("fleet.target_utilisation")}
    if s.get("status") != "ok":
        return {"label": label, "seed": seed, "error": str(s.get("error")),
                "target": overrides.get("fleet.target_utilisation")}
    return {"label": label, "seed": seed, "makespan_s": float(s["makespan_s"]),
            "utilisation": float(s["server_utilisation"]), "n_devices": int(s["n_devices"]),
            "target": overrides.get("fleet.target_utilisation"),
            "wall_s": time.perf_counter() - t0}


def _map(jobs: list[tuple[str, str, dict[str, Any], int]], n_jobs: int) -> list[dict[str, Any]]:
    if n_jobs <= 1:
        return [_one(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=n_jobs) as pool:
        return list(pool.map(_one, jobs, chunksize=4))


def _by(rows: list[dict[str, Any]], label: str, target: Any = None) -> dict[int, dict[str, Any]]:
    return {r["seed"]: r for r in rows if r["label"] == label and r.get("target") == target
            and "makespan_s" in r}


def table(rows: list[dict[str, Any]], labels: list[str]) -> str:
    """Markdown: makespan and change vs FIFO (paired by seed), mean ± 95% CI."""
    fifo = _by(rows, "fifo")
    lines = ["| configuration | seeds | makespan s (mean ± 95% CI) | vs FIFO % (mean ± 95% CI) "
             "| server utilisation |", "|---|---|---|---|---|"]
    for label in labels:
        got = _by(rows, label)
        errors = [r["error"] for r in rows if r["label"] == label and "error" in r]
        if not got:
            why = errors[0] if errors else "not run"
            lines.append(f"| {label} | 0 | n/a ({why[:80]}) | | |")
            continue
        m, h = mean_ci(r["makespan_s"] for r in got.values())
        rel = [100 * (got[s]["makespan_s"] / fifo[s]["makespan_s"] - 1) for s in got if s in fifo]
        rm, rh = mean_ci(rel)
        u, _ = mean_ci(r["utilisation"] for r in got.values())
        lines.append(f"| {label} | {len(got)} | {m:.3f} ± {h:.3f} | {rm:+.1f} ± {rh:.1f} "
                     f"| {u:.2f} |")
    return "\n".join(lines)


def target_table(rows: list[dict[str, Any]], targets: list[float]) -> str:
    """Markdown: the generator's target vs the achieved utilisation (FIFO and Schrage runs)."""
    lines = ["| target | seeds | devices kept (mean, range) | achieved, schrage online "
             "| achieved, fifo |", "|---|---|---|---|---|"]
    for t in targets:
        fifo, sch = _by(rows, "fifo", t), _by(rows, "schrage online", t)
        n = [r["n_devices"] for r in fifo.values()]
        if not n:
            continue
        us, hs = mean_ci(r["utilisation"] for r in sch.values())
        uf, hf = mean_ci(r["utilisation"] for r in fifo.values())
        lines.append(f"| {t:.2f} | {len(n)} | {np.mean(n):.0f} ({min(n)}-{max(n)}) "
                     f"| {us:.3f} ± {hs:.3f} | {uf:.3f} ± {hf:.3f} |")
    return "\n".join(lines)


def figure(rows: list[dict[str, Any]], labels: list[str], targets: list[float],
           path: Path) -> None:
    """Makespan relative to FIFO against FIFO's achieved utilisation, one line per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    for i, label in enumerate(labels):
        xs, ys, es = [], [], []
        for t in targets:
            fifo, got = _by(rows, "fifo", t), _by(rows, label, t)
            rel = [100 * (got[s]["makespan_s"] / fifo[s]["makespan_s"] - 1)
                   for s in got if s in fifo]
            if not rel:
                continue
            xs.append(mean_ci(r["utilisation"] for r in fifo.values())[0])
            m, h = mean_ci(rel)
            ys.append(m)
            es.append(0.0 if math.isnan(h) else h)
        if xs:
            off = (i - len(labels) / 2) * 0.002  # keep coinciding CI bars apart
            ax.errorbar(np.array(xs) + off, ys, yerr=es, marker="o", ms=4, capsize=3,
                        label=label)
    ax.axhline(0, color="grey", lw=0.8)
    ax.axhline(-6, color="grey", lw=0.8, ls="--")
    ax.text(ax.get_xlim()[0], -6, " paper 000: -6%", va="bottom", fontsize=8, color="grey")
    ax.set_xlabel("server utilisation of the FIFO run (mean over seeds)")
    ax.set_ylabel("makespan vs FIFO, % (mean, 95% CI)")
    ax.set_title(f"{FIG_SCENARIO.stem}: fleet sized by fleet.target_utilisation")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=20, help="seeds of the table (default 20)")
    p.add_argument("--joint-seeds", type=int, default=10,
                   help="seeds of the joint cut + order rows (10-25 s a run at 200 devices)")
    p.add_argument("--fig-seeds", type=int, default=5, help="seeds per figure point (default 5)")
    p.add_argument("--targets", default="0.4,0.6,0.8,0.9,1.0",
                   help="fleet.target_utilisation levels of the figure")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--no-figure", action="store_true")
    p.add_argument("--out", type=Path, default=FIGURE, help="figure path")
    a = p.parse_args(argv)
    if a.seeds < 2 or a.fig_seeds < 2 or a.jobs < 1:
        p.error("--seeds and --fig-seeds need at least 2, --jobs at least 1")
    t0 = time.perf_counter()
    configs = configurations(k=1)
    labels = [label for label, _ in configs]
    jobs = [(str(TABLE_SCENARIO), label, ov, seed) for label, ov in configs
            for seed in range(1, 1 + (a.joint_seeds if "cuts" in label or "cut +" in label
                                      else a.seeds))]
    jobs.sort(key=lambda j: "cut" not in j[1])  # the slow joint runs first: better packing
    rows = _map(jobs, a.jobs)
    print(f"## {TABLE_SCENARIO.relative_to(ROOT)}, {a.seeds} seeds "
          f"({a.joint_seeds} for the cut-policy rows)\n")
    print(table(rows, labels))
    print(f"\nfeatures: {_features()}")
    if not a.no_figure:
        targets = [float(t) for t in a.targets.split(",")]
        fig_configs = [(lb, ov) for lb, ov in configs if lb in FIGURE_LABELS]
        fjobs = [(str(FIG_SCENARIO), label, {**ov, "fleet.target_utilisation": t}, seed)
                 for t in targets for label, ov in fig_configs
                 for seed in range(1, a.fig_seeds + 1)]
        frows = _map(fjobs, a.jobs)
        figure(frows, [lb for lb, _ in fig_configs if lb != "fifo"], targets, a.out)
        print(f"\n## fleet.target_utilisation: target vs achieved ({FIG_SCENARIO.name}, "
              f"{a.fig_seeds} seeds)\n")
        print(target_table(frows, targets))
        print(f"\nfigure: {a.out.relative_to(ROOT) if a.out.is_relative_to(ROOT) else a.out}")
    print(f"\nwall time: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
