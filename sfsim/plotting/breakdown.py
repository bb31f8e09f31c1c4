"""Where did a round's time go? Two ways to split it.

A round of split training runs many things at once (three devices computing while a fourth
uploads), so "time spent uploading" can mean two different things:

* ``how="critical"`` (default): the round's **critical path**. Walk backwards from the end of
  the round: take a span that ends exactly when the walk stands (preferring the device the walk
  is following, so a device's chain of forward → uplink → queue → server → downlink → backward is
  kept; a server-queue wait is taken only when no work ends there, since waiting behind a
  busy server is time the server's work takes), charge its duration to its category, and
  continue from its start. When no span ends there, the time back to the latest earlier
  span end is charged to ``idle``. The categories
  then add up to the round's length, and each bar answers "which activities made this round as
  long as it was" — shortening anything off the path would not shorten the round.
* ``how="busy"``: the busy time of each category summed over all devices (resource-seconds).
  It answers "how much work of each kind was done" and can exceed the round's length.

Categories: ``device compute`` (device resource), ``uplink``, ``downlink``, ``queue`` (waiting at
the server), ``server`` (server forward / backward), ``aggregation`` (the server's FedAvg step),
``other`` (a resource a new scheme adds) and, for the critical path only, ``idle``. The
functions take the trace table and the round bounds, nothing else, so they work on any scheme.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sfsim.plotting.rundir import round_bounds_from_trace
from sfsim.plotting.style import CATEGORY_COLORS, new_figure

CATEGORIES = tuple(CATEGORY_COLORS)
_BY_RESOURCE = {"device": "device compute", "uplink": "uplink", "downlink": "downlink",
                "server_queue": "queue", "server": "server"}
_AGGREGATION_PHASES = {"aggregate", "aggregation", "fedavg"}


def category(resource: str, phase: str) -> str:
    """The breakdown category of a span."""
    if resource == "server" and phase in _AGGREGATION_PHASES:
        return "aggregation"
    return _BY_RESOURCE.get(resource, "other")


def _categories(trace: pd.DataFrame) -> list[str]:
    return [category(str(r), str(p)) for r, p in zip(trace["resource"], trace["phase"],
                                                    strict=True)]


def critical_path(trace: pd.DataFrame, start_s: float, end_s: float) -> pd.DataFrame:
    """The segments of the critical path from ``end_s`` back to ``start_s`` (latest first).

    Columns: ``start_s, end_s, category, phase, device``; segments tile [start_s, end_s].
    """
    t = trace[trace["end_s"] > trace["start_s"]]
    starts, ends = t["start_s"].to_numpy(float), t["end_s"].to_numpy(float)
    devices, phases = t["device"].astype(str).to_numpy(), t["phase"].astype(str).to_numpy()
    cats = np.array(_categories(t), dtype=object)
    waits = cats == "queue"
    tol = 1e-9 * max(1.0, abs(end_s))
    segments: list[tuple[float, float, str, str, str]] = []
    now, following = end_s, ""
    while now > start_s + tol:
        hit = np.flatnonzero((np.abs(ends - now) <= tol) & (starts < now - tol))
        if hit.size:
            # A wait in the server queue that ends while the server finishes other work was
            # a wait *for* that work: follow the work. The wait is charged only when nothing
            # else ends there (the server was idle, e.g. an offline plan held the request).
            working = hit[~waits[hit]]
            if working.size:
                hit = working
            same = hit[devices[hit] == following]
            pool = same if same.size else hit
            i = int(pool[np.argmin(starts[pool])])
            begin = max(float(starts[i]), start_s)
            segments.append((begin, now, str(cats[i]), str(phases[i]), str(devices[i])))
            if devices[i] != "server" or not following:
                following = str(devices[i])
            now = begin
            continue
        earlier = np.flatnonzero(ends < now - tol)
        back_to = max(float(ends[earlier].max()), start_s) if earlier.size else start_s
        segments.append((back_to, now, "idle", "", ""))
        now = back_to
    return pd.DataFrame(segments, columns=["start_s", "end_s", "category", "phase", "device"])


def round_table(
    trace: pd.DataFrame,
    round_bounds: Sequence[tuple[float, float]] | None = None,
    how: str = "critical",
) -> pd.DataFrame:
    """Seconds per category (columns) for each round (index ``round``)."""
    if how not in ("critical", "busy"):
        raise ValueError(f"how must be 'critical' or 'busy', got {how!r}")
    bounds = list(round_bounds) if round_bounds else round_bounds_from_trace(trace)
    rows = []
    for r, (start, end) in enumerate(bounds):
        spans = trace[trace["round"] == r]
        if how == "critical":
            path = critical_path(spans, start, end)
            sums = (path["end_s"] - path["start_s"]).groupby(path["category"]).sum()
        else:
            dur = spans["end_s"] - spans["start_s"]
            sums = dur.groupby(pd.Series(_categories(spans), index=spans.index)).sum()
        rows.append({c: float(sums.get(c, 0.0)) for c in CATEGORIES})
    table = pd.DataFrame(rows, columns=list(CATEGORIES))
    table.index.name = "round"
    if how == "busy":
        table = table.drop(columns="idle")
    return table


def round_breakdown(
    trace: pd.DataFrame,
    round_bounds: Sequence[tuple[float, float]] | None = None,
    *,
    how: str = "critical",
    title: str | None = None,
    round_energy_j: Sequence[float] | None = None,
) -> tuple[Figure, pd.DataFrame]:
    """Stacked bars per round of :func:`round_table`; returns the figure and the table.

    ``round_energy_j`` (the summary's per-round energy, sfsim/energy.py), when given with one
    figure per round, adds a panel of joules per round below and an ``energy_j`` column.
    """
    table = round_table(trace, round_bounds, how)
    shown = [c for c in table.columns if table[c].sum() > 0]
    energy = [float(x) for x in round_energy_j or []
              if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)]
    width = max(6.0, min(0.45 * len(table) + 4.0, 18.0))
    if energy and len(energy) == len(table):
        fig = new_figure(width, 6.0)
        ax, ax_e = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        ax_e.bar(np.arange(len(table)), energy, color="#8c6d31", width=0.7)
        ax_e.set_ylabel("energy (J)")
        ax_e.set_xlabel("round")
        ax_e.grid(axis="y", color="#eeeeee")
        ax_e.set_axisbelow(True)
        table = table.assign(energy_j=energy)
    else:
        fig = new_figure(width, 4.5)
        ax = fig.add_subplot()
    x = np.arange(len(table))
    bottom = np.zeros(len(table))
    for c in shown:
        vals = table[c].to_numpy()  # energy_j is not in `shown`: it is no time category
        ax.bar(x, vals, bottom=bottom, color=CATEGORY_COLORS[c], label=c, width=0.7,
               edgecolor="white", linewidth=0.4)
        bottom += vals
    ax.margins(y=0.08)
    ax.set_xticks(x, [str(i) for i in table.index])
    ax.set_xlabel("round")
    if how == "critical":
        ax.set_ylabel("seconds on the critical path")
        default = "Where each round's time went (critical path)"
    else:
        ax.set_ylabel("busy seconds, summed over devices")
        default = "Busy time per round, by category"
    ax.set_title(title or default)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], loc="upper left", bbox_to_anchor=(1.0, 1.0),
              fontsize=8, frameon=False)
    ax.grid(axis="y", color="#eeeeee")
    ax.set_axisbelow(True)
    return fig, table
