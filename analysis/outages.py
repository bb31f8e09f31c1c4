"""What link outages and server slowdowns cost each scheme: training time against episode rate.

Schemes: memsfl, sfl_v2, fedlora, splitfrozen and fedmobillm. Two kinds of episode
(docs/faults.md), each Poisson with exponential lengths of mean 2 s, drawn from the faults seed,
at 60, 240 and 720 an hour, each on a scenario where it can matter:

* link outages on ``scenarios/memsfl_10dev.yaml`` (ten heterogeneous devices, Llama-3.2-1B,
  Shannon links with fading, 3 rounds of K = 2: link- and device-bound): per device, a transfer
  pauses until the outage ends;
* server slowdowns on ``scenarios/scheduling/edge_4090_100dev_k1.yaml`` (100 devices on one
  RTX 4090, 2 rounds of K = 1: server-bound), during which the server computes 3 times slower.

For each seed the same scenario runs without episodes; the figure is the training time with
episodes over the time without (paired by seed: one fleet, one channel draw), mean and Student-t
95% CI over seeds, with the time transfers sat paused (``transfer_paused_s``) and the extra
server time (``server_extra_s``) from the summary's ``faults`` block.

Usage::

    .venv/bin/python analysis/outages.py                # 10 seeds, 2 processes, about 20 s
    .venv/bin/python analysis/outages.py --seeds 10 --jobs 1 --no-figure
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from sfsim.stats import mean_ci

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = {"link_outage": ROOT / "scenarios" / "memsfl_10dev.yaml",
             "server_slowdown": ROOT / "scenarios" / "scheduling" / "edge_4090_100dev_k1.yaml"}
SCHEMES = ("memsfl", "sfl_v2", "fedlora", "splitfrozen", "fedmobillm")
RATES = (0.0, 60.0, 240.0, 720.0)  # episodes per hour
MEAN_S = 2.0
FACTOR = 3.0
KINDS = ("link_outage", "server_slowdown")
FIGURE = ROOT / "docs" / "img" / "outage_cost.png"


def _one(job: tuple[str, str, float, int]) -> dict[str, Any]:
    import sfsim

    kind, scheme, rate, seed = job
    over: dict[str, Any] = {"seed": seed}
    if rate > 0:
        over[f"faults.{kind}.rate_per_hour"] = rate
        over[f"faults.{kind}.mean_duration_s"] = MEAN_S
        if kind == "server_slowdown":
            over[f"faults.{kind}.factor"] = FACTOR
    s = sfsim.run(SCENARIOS[kind], scheme=scheme, overrides=over).summary
    f = s.get("faults", {})
    return {"kind": kind, "scheme": scheme, "rate": rate, "seed": seed,
            "makespan_s": float(s["makespan_s"]),
            "paused_s": float(f.get("transfer_paused_s", 0.0)),
            "extra_s": float(f.get("server_extra_s", 0.0))}


def _ratios(rows: list[dict[str, Any]], kind: str, scheme: str, rate: float) -> list[float]:
    base = {r["seed"]: r["makespan_s"] for r in rows
            if r["kind"] == kind and r["scheme"] == scheme and r["rate"] == 0.0}
    return [r["makespan_s"] / base[r["seed"]] for r in rows
            if r["kind"] == kind and r["scheme"] == scheme and r["rate"] == rate]


def table(rows: list[dict[str, Any]], kind: str) -> str:
    what = "paused_s" if kind == "link_outage" else "extra_s"
    out = ["| scheme | " + " | ".join(f"{r:g}/h" for r in RATES[1:]) + " |",
           "|---|" + "---|" * (len(RATES) - 1)]
    for scheme in SCHEMES:
        cells = []
        for rate in RATES[1:]:
            m, h = mean_ci(_ratios(rows, kind, scheme, rate))
            cost = np.mean([r[what] for r in rows if r["kind"] == kind
                            and r["scheme"] == scheme and r["rate"] == rate])
            cells.append(f"{m:.3f} ± {h:.3f} ({cost:.1f} s)")
        out.append(f"| {scheme} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def figure(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.0), dpi=120)
    titles = {"link_outage": f"link outages (mean {MEAN_S:g} s), 10 devices",
              "server_slowdown": f"server slowdowns ({FACTOR:g}x slower, mean {MEAN_S:g} s), "
                                 "100 devices"}
    for ax, kind in zip(axes, KINDS, strict=True):
        for i, scheme in enumerate(SCHEMES):
            stats = [mean_ci(_ratios(rows, kind, scheme, rate)) if rate else (1.0, 0.0)
                     for rate in RATES]
            x = np.array(RATES) + (i - 2) * 8.0  # a small dodge so the bars do not overlap
            ax.errorbar(x, [m for m, _ in stats], yerr=[h for _, h in stats], marker="o",
                        capsize=3, label=scheme)
        ax.set_xlabel("episodes per hour")
        ax.set_ylabel("training time / time without episodes")
        ax.set_title(titles[kind], fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Cost of outages (memsfl_10dev) and server slowdowns (edge_4090_100dev_k1) "
                 "per scheme, mean and 95% CI over seeds", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--no-figure", action="store_true")
    args = ap.parse_args(argv)
    seeds = range(1, args.seeds + 1)
    jobs = [(kind, scheme, rate, seed) for kind in KINDS for rate in RATES
            for seed in seeds for scheme in SCHEMES]
    if args.jobs <= 1:
        rows = [_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            rows = list(pool.map(_one, jobs, chunksize=2))
    for kind in KINDS:
        what = "transfer time paused" if kind == "link_outage" else "extra server time"
        print(f"\n{kind}: training time / time without episodes, mean ± 95% CI over "
              f"{args.seeds} seeds (mean {what}); {SCENARIOS[kind].relative_to(ROOT)}\n")
        print(table(rows, kind))
    if not args.no_figure:
        figure(rows, FIGURE)
        print(f"\nfigure: {FIGURE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
