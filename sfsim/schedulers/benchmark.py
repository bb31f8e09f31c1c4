"""Benchmarking schedulers: instance families, gaps to the optimum, solve times.

**Families.** Server times have mean 1 s; releases and tails have mean ``n / 2`` s, so the
devices' arrivals spread over about as long as the server needs for all of them: the
contended regime in which the order matters. Each quantity is its mean times a positive factor
of mean 1 and a coefficient of variation (cv), uniform when cv <= 1/sqrt(3), else lognormal:

* ``low``: cv 0.2 for everything (similar devices and links);
* ``high``: cv 1 for everything, lognormal (stragglers, a few very slow links or devices);
* ``wide``: releases and tails uniform on [0, n] s, server times uniform on [0.5, 1.5] s; the
  classic random family of Carlier (1982) in its hardest regime.

With ``k > 1`` every device is a chain of k server tasks with lags of mean ``n / 4`` s drawn
like the releases.

**Measures.** For each instance the reference is the proven optimum when some scheduler proved
one (``carlier`` for K = 1; ``milp`` when it finishes), else the best lower bound; the gap of
a scheduler is ``makespan / reference - 1`` (an upper bound on its true gap when no optimum is
known). Solve time is the wall time of the scheduler alone; on a shared, noisy machine compare
medians. The core of this module imports no plotting library: :func:`plot` imports matplotlib
when called.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sfsim.schedulers.base import Instance, Job
from sfsim.schedulers.registry import get_scheduler
from sfsim.schedulers.result import REL_TOL, solve

# family -> coefficients of variation of (releases, tails and lags), (server times)
FAMILIES = {"low": (0.2, 0.2), "high": (1.0, 1.0), "wide": (3**-0.5, 0.5 * 3**-0.5)}
DEFAULT_SIZES = (5, 10, 20, 50, 100, 1000)
DEFAULT_SCHEDULERS = (
    "fifo",
    "random",
    "spt",
    "lpt",
    "longest_tail",
    "schrage",
    "local_search",
    "carlier",
    "milp",
)


def _factors(rng: np.random.Generator, cv: float, size: int) -> np.ndarray:
    """Positive random factors with mean 1 and coefficient of variation ``cv``."""
    if cv <= 3**-0.5:
        half = cv * np.sqrt(3.0)  # uniform on [1 - half, 1 + half], half <= 1
        return rng.uniform(1.0 - half, 1.0 + half, size)
    sigma2 = np.log1p(cv**2)
    return rng.lognormal(-sigma2 / 2.0, np.sqrt(sigma2), size)


def random_instance(n: int, family: str, rng: np.random.Generator, k: int = 1) -> Instance:
    """One random round of ``n`` devices from ``family`` (a key of :data:`FAMILIES`)."""
    cv_edge, cv_server = FAMILIES[family]
    mean_edge_s = n / 2.0
    release = mean_edge_s * _factors(rng, cv_edge, n)
    tail = mean_edge_s * _factors(rng, cv_edge, n)
    server = _factors(rng, cv_server, n * k).reshape(n, k)
    lag = (n / 4.0) * _factors(rng, cv_edge, n * max(k - 1, 0)).reshape(n, max(k - 1, 0))
    width = len(str(n - 1))
    return Instance(
        tuple(
            Job(
                id=f"d{j:0{width}d}",
                release_s=float(release[j]),
                server_s=tuple(float(v) for v in server[j]),
                lag_s=tuple(float(v) for v in lag[j]),
                tail_s=float(tail[j]),
            )
            for j in range(n)
        )
    )


def run(
    sizes: Sequence[int] = DEFAULT_SIZES,
    reps: int = 5,
    schedulers: Sequence[str] = DEFAULT_SCHEDULERS,
    *,
    families: Sequence[str] = tuple(FAMILIES),
    k: int = 1,
    milp_max_n: int = 40,
    time_limit_s: float = 60.0,
    milp_solver: str = "cbc",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """One row per (size, family, rep, scheduler); see the module docstring for the columns."""
    rows: list[dict[str, Any]] = []
    root = np.random.SeedSequence(seed)
    cells = [(n, fam, rep) for n in sizes for fam in families for rep in range(reps)]
    for (n, fam, rep), child in zip(cells, root.spawn(len(cells)), strict=True):
        inst_rng, sched_rng = (np.random.default_rng(s) for s in child.spawn(2))
        instance = random_instance(n, fam, inst_rng, k)
        results = []
        for name in schedulers:
            if name == "milp" and n > milp_max_n:
                continue
            if name == "carlier" and k > 1:
                continue
            params: dict[str, Any] = {}
            if name in ("milp", "carlier"):
                params["time_limit_s"] = time_limit_s
            if name == "milp":
                params["solver"] = milp_solver
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # milp fallback is recorded
                res = solve(get_scheduler(name, **params), instance, sched_rng)
            results.append(res)
        proven = [r.makespan_s for r in results if r.optimal]
        reference = min(proven) if proven else max(r.lower_bound_s for r in results)
        for res in results:
            rows.append(
                {
                    "n": n,
                    "family": fam,
                    "k": k,
                    "rep": rep,
                    "scheduler": res.scheduler,
                    "makespan_s": res.makespan_s,
                    "lower_bound_s": res.lower_bound_s,
                    "reference_s": reference,
                    "reference_is_optimum": bool(proven),
                    "gap_pct": 100.0 * (res.makespan_s / reference - 1.0) if reference else 0.0,
                    "optimal": res.optimal,
                    "solve_s": res.solve_s,
                    "status": res.status,
                }
            )
        if progress is not None:
            progress(f"n={n} family={fam} rep={rep} done")
    df = pd.DataFrame(rows)
    if not df.empty:  # rounding noise below the tolerance is not a gap
        df.loc[df["gap_pct"].abs() < 100 * REL_TOL, "gap_pct"] = 0.0
    return df


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """Per (n, family, scheduler): mean and max gap, share proven optimal, median solve time."""
    grouped = df.groupby(["n", "family", "scheduler"], sort=True)
    return grouped.agg(
        mean_gap_pct=("gap_pct", "mean"),
        max_gap_pct=("gap_pct", "max"),
        proven_optimal=("optimal", "mean"),
        median_solve_s=("solve_s", "median"),
        instances=("rep", "count"),
    ).reset_index()


def write(df: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """Write the raw rows (CSV and Parquet), the summary (CSV) and the plot (PNG)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "schedulers.csv", out / "schedulers.parquet", out / "summary.csv"]
    df.to_csv(paths[0], index=False)
    df.to_parquet(paths[1], index=False)
    summarise(df).to_csv(paths[2], index=False)
    paths.append(plot(df, out / "schedulers.png"))
    return paths


def plot(df: pd.DataFrame, path: str | Path) -> Path:
    """Mean gap and median solve time against n, one line per scheduler (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = df.groupby(["n", "scheduler"]).agg(
        gap=("gap_pct", "mean"), solve=("solve_s", "median")
    )
    fig, (ax_gap, ax_time) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, part in summary.groupby(level="scheduler"):
        n = part.index.get_level_values("n")
        ax_gap.plot(n, part["gap"].clip(lower=1e-3), marker="o", label=name)
        ax_time.plot(n, part["solve"].clip(lower=1e-5), marker="o", label=name)
    ax_gap.set(xscale="log", yscale="log", xlabel="devices n", ylabel="mean gap to optimum (%)")
    ax_time.set(xscale="log", yscale="log", xlabel="devices n", ylabel="median solve time (s)")
    ax_gap.set_title("gap (0 shown as 1e-3 %)", fontsize=9)
    ax_time.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
