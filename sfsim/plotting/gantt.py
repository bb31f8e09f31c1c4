"""The Gantt chart: who was doing what, when.

Every span of the trace is one bar. The chart has one **lane** per device and one for the
server, and each lane is split into **rows**, one per resource the lane owns:

* a device lane: ``compute`` (the device's processor), ``uplink`` and ``downlink``;
* the server lane: ``busy`` (forward, backward, aggregation) and ``queue`` (the time a device's
  activations wait at the server before it serves them).

Bars are coloured by phase (`sfsim.plotting.style.PHASE_COLORS`). A row whose intervals can
overlap (several devices waiting in the queue at once; a scheme whose server serves devices in
parallel) is split into as many thin sub-rows as intervals are open at once, so no bar hides
another. Reading a memsfl chart: the server's ``busy`` row shows the order the scheduler chose;
gaps there while the ``queue`` row is empty mean the server waited for uploads, and bars in the
``queue`` row mean devices waited for the server.

:func:`gantt_bars` computes the layout (a table, one row per bar, with its lane, row and y
position), and :func:`gantt` draws it; tests check the layout, people look at the picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from sfsim.plotting.style import new_figure, pack_intervals, phase_colors

SERVER = "server"
DEVICE_ROWS = ("compute", "uplink", "downlink")
SERVER_ROWS = ("busy", "queue")
#: The row a span goes in, by its resource; an unknown resource gets a row of its own name.
ROW_OF_RESOURCE = {
    "device": "compute",
    "uplink": "uplink",
    "downlink": "downlink",
    "server": "busy",
    "server_queue": "queue",
}
SERVER_RESOURCES = ("server", "server_queue")
ROW_HEIGHT = 1.0
LANE_GAP = 0.6


@dataclass(frozen=True)
class GanttData:
    """The layout behind a Gantt chart.

    ``lanes``: lane names top to bottom (devices, then ``"server"``); ``rows``: each lane's rows;
    ``bars``: one row per span with ``lane, row, slot, n_slots, y, height, start_s, end_s,
    phase, device, round``; ``row_y``: the centre y of each (lane, row).
    """

    lanes: list[str]
    rows: dict[str, list[str]]
    bars: pd.DataFrame
    row_y: dict[tuple[str, str], float]


def _lane(device: str, resource: str) -> str:
    return SERVER if resource in SERVER_RESOURCES or device == SERVER else device


def gantt_bars(trace: pd.DataFrame, devices: Sequence[str] | None = None) -> GanttData:
    """Lay out the spans of ``trace``: a lane per device (in ``devices`` order), then the server."""
    t = trace.copy()
    t["lane"] = [_lane(str(d), str(r)) for d, r in zip(t["device"], t["resource"], strict=True)]
    t["row"] = [ROW_OF_RESOURCE.get(str(r), str(r)) for r in t["resource"]]
    seen = [str(x) for x in dict.fromkeys(t.loc[t["lane"] != SERVER, "lane"])]
    order = [d for d in (devices or []) if d != SERVER]
    lanes = [*order, *(d for d in seen if d not in order), SERVER]
    rows: dict[str, list[str]] = {}
    for lane in lanes:
        base = list(SERVER_ROWS if lane == SERVER else DEVICE_ROWS)
        extra = sorted(set(t.loc[t["lane"] == lane, "row"]) - set(base))
        rows[lane] = base + extra

    t["slot"], t["n_slots"] = 0, 1
    for _, idx in t.groupby(["lane", "row"]).groups.items():
        sub = t.loc[idx]
        slots = pack_intervals(sub["start_s"].tolist(), sub["end_s"].tolist())
        t.loc[idx, "slot"] = slots
        t.loc[idx, "n_slots"] = max(slots) + 1

    # y grows downwards from the first lane; each row is ROW_HEIGHT tall, lanes are separated.
    row_top: dict[tuple[str, str], float] = {}
    y = 0.0
    for lane in lanes:
        for row in rows[lane]:
            row_top[(lane, row)] = y
            y += ROW_HEIGHT
        y += LANE_GAP
    pad = 0.08 * ROW_HEIGHT
    heights, ys = [], []
    for lane, row, slot, n in zip(t["lane"], t["row"], t["slot"], t["n_slots"], strict=True):
        h = (ROW_HEIGHT - 2 * pad) / n
        heights.append(h)
        ys.append(row_top[(lane, row)] + pad + slot * h)
    t["y"], t["height"] = ys, heights
    cols = ["lane", "row", "slot", "n_slots", "y", "height", "start_s", "end_s", "phase",
            "device", "round"]
    bars = t[[c for c in cols if c in t.columns]].reset_index(drop=True)
    row_y = {k: v + ROW_HEIGHT / 2 for k, v in row_top.items()}
    return GanttData(lanes, rows, bars, row_y)


def gantt(
    trace: pd.DataFrame,
    devices: Sequence[str] | None = None,
    *,
    round_bounds: Sequence[tuple[float, float]] | None = None,
    title: str | None = None,
) -> tuple[Figure, GanttData]:
    """Draw the Gantt chart of ``trace``; returns the figure and its layout."""
    data = gantt_bars(trace, devices)
    n_rows = sum(len(r) for r in data.rows.values())
    fig = new_figure(12.0, min(2.0 + 0.32 * n_rows, 40.0))
    ax = fig.add_subplot()
    colors = phase_colors(data.bars["phase"].astype(str))
    drawn = data.bars[data.bars["end_s"] > data.bars["start_s"]]
    for (phase, y, h), grp in drawn.groupby(["phase", "y", "height"]):
        spans = list(zip(grp["start_s"], grp["end_s"] - grp["start_s"], strict=True))
        ax.broken_barh(spans, (float(y), float(h)),  # type: ignore[arg-type]
                       facecolors=colors[str(phase)], edgecolor="none")
    ticks, labels = [], []
    for lane in data.lanes:
        for i, row in enumerate(data.rows[lane]):
            ticks.append(data.row_y[(lane, row)])
            labels.append(f"{lane} · {row}" if i == 0 else row)
        last = data.row_y[(lane, data.rows[lane][-1])] + ROW_HEIGHT / 2
        ax.axhline(last + LANE_GAP / 2, color="#cccccc", linewidth=0.8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_ylim(ticks[-1] + ROW_HEIGHT, -LANE_GAP / 2)
    for start, _ in (round_bounds or [])[1:]:
        ax.axvline(start, color="#555555", linestyle=":", linewidth=0.9)
    end = float(trace["end_s"].max()) if not trace.empty else 1.0
    ax.set_xlim(0.0, end * 1.01 if end > 0 else 1.0)
    ax.set_xlabel("simulated time (s)")
    ax.set_title(title or "Gantt chart: device compute, links, server busy and queue")
    present = sorted(colors, key=lambda p: (p not in set(drawn["phase"]), p))
    handles = [Patch(facecolor=colors[p], label=p) for p in present]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
              title="phase", title_fontsize=8, frameon=False)
    ax.grid(axis="x", color="#eeeeee")
    ax.set_axisbelow(True)
    return fig, data
