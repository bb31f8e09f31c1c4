"""Trade-offs across many runs: time against memory, quality against solve time, sensitivity.

One run answers "how long, how much memory"; the design questions are about *trade-offs* between
runs: a smaller cut saves device memory but loads the server; an exact scheduler shortens the
round but costs solver time; a slow or uneven fleet stretches rounds, and some schemes suffer
more than others. This script turns a folder of run folders into one table (one row per
successful run, see :func:`collect_runs`) and draws three figures from it:

* ``time_vs_memory``: training time against server and device peak memory, one series per
  scheme, one point per cut layer (the cut is written next to each point);
* ``makespan_vs_solve``: each scheduler's makespan against the time it needed to plan the round
  (log scale), with the exact optimum (``carlier``) as a reference line when present;
* ``sensitivity``: mean round time against uplink bandwidth and against device heterogeneity
  (the coefficient of variation of the devices' effective FLOP/s), one line per scheme.

Usage::

    python analysis/tradeoffs.py --grid --out out/tradeoffs   # run the built-in grid, then plot
    python analysis/tradeoffs.py --runs out/tradeoffs/runs --out out/tradeoffs  # plot only

The built-in grid (see `analysis/tradeoff_grid.py`) is small on purpose (a few seconds).
Run folders from ``sfsim run`` work too: every column is derived from the files of a run folder,
and a ``sweep.json`` beside them (written by the grid) adds the sweep name and solve time.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from sfsim.costs.processors import catalogue, processor_from_dict
from sfsim.plotting.style import new_figure

GB = 1e9
COLUMNS = ["run", "sweep", "scenario", "scheme", "scheduler", "n_devices", "cut", "makespan_s",
           "round_s", "server_peak_gb", "device_peak_gb", "uplink_mbps", "compute_cv", "solve_s"]


# ---- the table --------------------------------------------------------------------------------


def _scenario_facts(yaml_text: str) -> dict[str, float]:
    """Mean fixed uplink rate and the CV of device FLOP/s, from a resolved scenario."""
    s = yaml.safe_load(yaml_text) or {}
    devices = s.get("devices") or []
    channel = s.get("channel") or {}
    procs = dict(catalogue())
    for name, d in (s.get("processors") or {}).items():
        procs[name] = processor_from_dict(name, d)
    dtype = (s.get("model") or {}).get("dtype", "fp32")
    speeds = [procs[d["processor"]].flops_per_s(dtype) for d in devices if d["processor"] in procs]
    rates = [float(d.get("uplink_mbps") or channel.get("uplink_mbps") or 0) for d in devices]
    fixed = channel.get("model", "fixed") == "fixed" and all(r > 0 for r in rates)
    cv = float(np.std(speeds) / np.mean(speeds)) if speeds else float("nan")
    return {"uplink_mbps": float(np.mean(rates)) if fixed and rates else float("nan"),
            "compute_cv": cv}


def run_row(folder: Path) -> dict[str, Any] | None:
    """One table row from a run folder (None when it is not a successful run folder)."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if summary.get("status") != "ok":
        return None
    sweep: dict[str, Any] = {}
    if (folder / "sweep.json").is_file():
        sweep = json.loads((folder / "sweep.json").read_text())
    facts = {"uplink_mbps": float("nan"), "compute_cv": float("nan")}
    if (folder / "scenario.resolved.yaml").is_file():
        facts = _scenario_facts((folder / "scenario.resolved.yaml").read_text())
    cuts = [d.get("cut") for d in summary.get("devices", {}).values() if d.get("cut") is not None]
    rounds = summary.get("round_s") or [summary.get("makespan_s", float("nan"))]
    plans = summary.get("plans") or []
    planned_solve = [p["solve_s"] for p in plans if "solve_s" in p]
    solve = sweep.get("solve_s")
    if solve is None:
        solve = sum(planned_solve) if planned_solve else float("nan")
    return {
        "run": folder.name,
        "sweep": sweep.get("sweep", ""),
        "scenario": summary.get("scenario", ""),
        "scheme": summary.get("scheme", ""),
        "scheduler": summary.get("scheduler", ""),
        "n_devices": summary.get("n_devices", len(summary.get("devices", {}))),
        "cut": float(np.mean(cuts)) if cuts else float("nan"),
        "makespan_s": float(summary["makespan_s"]),
        "round_s": float(np.mean(rounds)),
        "server_peak_gb": float(summary.get("server_peak_bytes", 0.0)) / GB,
        "device_peak_gb": max(summary.get("device_peak_bytes", {0: 0.0}).values()) / GB,
        "uplink_mbps": facts["uplink_mbps"],
        "compute_cv": facts["compute_cv"],
        "solve_s": float(solve),
    }


def collect_runs(runs_dir: str | Path) -> pd.DataFrame:
    """One row per successful run folder found under ``runs_dir`` (any depth)."""
    rows = [run_row(p.parent) for p in sorted(Path(runs_dir).rglob("summary.json"))]
    return pd.DataFrame([r for r in rows if r is not None], columns=COLUMNS)


def _sweep(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """Rows of the named grid sweep when the table has any, else every row."""
    part = table[table["sweep"] == name]
    return part if not part.empty else table


def _schemes(table: pd.DataFrame) -> list[str]:
    return sorted(str(s) for s in table["scheme"].unique())


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINES = ("-", "--", "-.", ":")


def _series_style(i: int) -> dict[str, Any]:
    """Marker and line style of the i-th series, so series that coincide stay visible."""
    return {"marker": _MARKERS[i % len(_MARKERS)], "linestyle": _LINES[i % len(_LINES)],
            "markersize": 7 - 1.5 * (i % 3)}


# ---- figures -----------------------------------------------------------------------------------


def plot_time_vs_memory(table: pd.DataFrame) -> Figure:
    """Training time against server and device peak memory; a series per scheme, cuts marked.

    Points that coincide (a scheme whose cut does not matter, or schemes with the same figures)
    get one label listing their cuts ("all cuts" when every swept cut lands there), and labels
    are moved off one another (see :func:`_place_labels`), so none is overprinted.
    """
    t = _sweep(table, "schemes")
    fig = new_figure(11.0, 4.5)
    axes = fig.subplots(1, 2, sharey=True)
    all_cuts = sorted({float(c) for c in t["cut"] if np.isfinite(c)})
    panels = []
    for ax, col, what in ((axes[0], "server_peak_gb", "server"),
                          (axes[1], "device_peak_gb", "largest device")):
        for i, scheme in enumerate(_schemes(t)):
            s = t[t["scheme"] == scheme].sort_values("cut")
            ax.plot(s[col], s["makespan_s"], label=scheme, **_series_style(i))
        points = t[np.isfinite(t["cut"].astype(float))]
        panels.append((ax, _cut_labels(points[col].to_numpy(float),
                                       points["makespan_s"].to_numpy(float),
                                       points["cut"].to_numpy(float), ax, all_cuts)))
        ax.set_xlabel(f"{what} peak memory (GB)")
        ax.grid(color="#eeeeee")
    axes[0].set_ylabel("training time (s)")
    axes[1].legend(title="scheme (labels: cut)", fontsize=8, title_fontsize=8)
    fig.suptitle("Training time vs peak memory, across schemes and cut layers")
    _place_labels(fig, panels)
    return fig


def _fmt_cuts(cuts: list[float], all_cuts: list[float]) -> str:
    if len(cuts) > 1 and cuts == all_cuts:
        return "all cuts"
    return ",".join(f"{c:g}" for c in cuts)


def _cut_labels(xs: np.ndarray, ys: np.ndarray, cuts: np.ndarray, ax: Any,
                all_cuts: list[float]) -> list[tuple[float, float, str]]:
    """One (x, y, text) per group of points that sit on one another (within 1% of the axes)."""
    if len(xs) == 0:
        return []
    ax.autoscale_view()
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    sx, sy = max(x1 - x0, 1e-12), max(y1 - y0, 1e-12)
    groups: list[tuple[float, float, set[float]]] = []
    for x, y, c in sorted(zip(xs, ys, cuts, strict=True)):
        for k, (gx, gy, gc) in enumerate(groups):
            if abs(x - gx) / sx < 0.01 and abs(y - gy) / sy < 0.01:
                groups[k] = (gx, gy, gc | {float(c)})
                break
        else:
            groups.append((float(x), float(y), {float(c)}))
    return [(x, y, _fmt_cuts(sorted(c), all_cuts)) for x, y, c in groups]


#: Where a label may go around its point, in points: right-above first, then the other corners.
_OFFSETS = ((4, 3), (4, -10), (-6, 3), (-6, -10), (4, 10), (-6, 10), (4, -17), (-6, -17),
            (12, 3), (-14, 3), (12, -10), (-14, -10))


def _place_labels(fig: Figure, panels: list[tuple[Any, list[tuple[float, float, str]]]]) -> None:
    """Annotate each group at the first offset whose box stays inside the axes and overlaps
    no label placed before.

    A small greedy version of what adjustText does: texts are measured on the figure's renderer
    after layout, tried at a fixed list of offsets, and the first free spot wins (the first
    offset again if none is free, which only happens when labels are packed very tightly).
    """
    fig.canvas.draw()  # fix the layout, so that text extents are final
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    for ax, labels in panels:
        placed: list[Any] = []
        frame = ax.get_window_extent(renderer)
        for x, y, text in labels:
            chosen = None
            for dx, dy in _OFFSETS:
                ha = "left" if dx >= 0 else "right"
                note = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy),
                                   fontsize=7, ha=ha)
                box = note.get_window_extent(renderer).padded(2)  # keep "1" "1" from reading 11
                inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 \
                    and box.y1 <= frame.y1
                if inside and not any(box.overlaps(other) for other in placed):
                    chosen = note
                    placed.append(box)
                    break
                note.remove()
            if chosen is None:  # nowhere free: keep the default spot
                note = ax.annotate(text, (x, y), textcoords="offset points", xytext=_OFFSETS[0],
                                   fontsize=7)
                placed.append(note.get_window_extent(renderer))


def plot_makespan_vs_solve(table: pd.DataFrame) -> Figure:
    """Makespan against planning time, one point per scheduler (mean over its runs)."""
    t = _sweep(table, "schedulers")
    g = t.groupby("scheduler")[["makespan_s", "solve_s"]].mean().reset_index()
    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    ok = g[np.isfinite(g["solve_s"]) & (g["solve_s"] > 0)]
    ax.scatter(ok["solve_s"], ok["makespan_s"], s=40, color="#4c9be8", zorder=3)
    for name, x, y in zip(ok["scheduler"], ok["solve_s"], ok["makespan_s"], strict=True):
        ax.annotate(str(name), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if "carlier" in set(g["scheduler"]):
        best = float(g.loc[g["scheduler"] == "carlier", "makespan_s"].iloc[0])
        ax.axhline(best, color="#2e9e5b", linestyle="--", linewidth=1, label="optimum (carlier)")
        ax.legend(fontsize=8)
    if not ok.empty:
        ax.set_xscale("log")
    ax.set_xlabel("time to plan a round (s, log scale)")
    ax.set_ylabel("makespan (s)")
    ax.set_title("Schedule quality vs solve time")
    ax.grid(color="#eeeeee")
    return fig


def plot_sensitivity(table: pd.DataFrame) -> Figure:
    """Mean round time against uplink bandwidth and against compute heterogeneity."""
    fig = new_figure(11.0, 4.5)
    axes = fig.subplots(1, 2)
    for ax, sweep, col, label in ((axes[0], "bandwidth", "uplink_mbps", "uplink (Mbit/s)"),
                                  (axes[1], "heterogeneity", "compute_cv",
                                   "device heterogeneity (CV of effective FLOP/s)")):
        t = _sweep(table, sweep)
        t = t[np.isfinite(t[col])]
        for i, scheme in enumerate(_schemes(t)):
            s = t[t["scheme"] == scheme].groupby(col)["round_s"].mean()
            if len(s) > 1:
                ax.plot(s.index, s.to_numpy(), label=scheme, **_series_style(i))
        if col == "uplink_mbps" and not t.empty:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("mean round time (s)")
        ax.grid(color="#eeeeee")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(title="scheme", fontsize=8, title_fontsize=8)
    fig.suptitle("Sensitivity of round time to bandwidth and to heterogeneity")
    return fig


FIGURES = {
    "time_vs_memory": plot_time_vs_memory,
    "makespan_vs_solve": plot_makespan_vs_solve,
    "sensitivity": plot_sensitivity,
}


def plot_all(table: pd.DataFrame, out: Path, fmt: str = "png", dpi: int = 110) -> list[Path]:
    """Write every figure and the table (``runs.csv``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "runs.csv", index=False)
    paths = [out / "runs.csv"]
    for name, fn in FIGURES.items():
        path = out / f"{name}.{fmt}"
        fn(table).savefig(path, format=fmt, dpi=dpi)
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=Path, help="folder of run folders to read")
    p.add_argument("--out", type=Path, required=True, help="folder for the figures")
    p.add_argument("--grid", action="store_true",
                   help="first run the built-in grid into OUT/runs (or --runs if given)")
    p.add_argument("--quick", action="store_true", help="with --grid: an even smaller grid")
    p.add_argument("--format", choices=["png", "svg"], default="png")
    args = p.parse_args(argv)
    runs = args.runs or (args.out / "runs" if args.grid else None)
    if runs is None:
        p.error("give --runs DIR, or --grid to run the built-in grid first")
    if args.grid:
        here = str(Path(__file__).resolve().parent)
        if here not in sys.path:
            sys.path.insert(0, here)
        from tradeoff_grid import run_grid  # a sibling module of this script

        run_grid(runs, quick=args.quick)
    elif not runs.is_dir():
        print(f"error: {runs}: no such folder", file=sys.stderr)
        return 2
    table = collect_runs(runs)
    if table.empty:
        print(f"error: {runs}: no successful run folders found", file=sys.stderr)
        return 2
    for path in plot_all(table, args.out, args.format):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
