"""Colours, figure creation and interval packing shared by every sfsim figure.

A figure is only readable across runs if the same thing always has the same colour: the
server's forward pass is the same blue in a Gantt chart of ``memsfl`` and of ``sfl_v2``, and
"activations" is the same orange in every memory timeline. This module fixes those colours:

* **phases** (the ``phase`` column of the trace): a fixed colour for each phase the built-in
  schemes record; a phase added later by a new scheme gets a colour from a spare palette, chosen
  by the sorted order of the unknown names so it does not change from figure to figure;
* **memory kinds** (`sfsim.engine.MEMORY_KINDS`): one colour each;
* **time categories** of the per-round breakdown (device compute, uplink, queue, ...).

Figures are made with :func:`new_figure`, which builds a bare ``matplotlib.figure.Figure`` on
the non-interactive Agg canvas. Nothing here touches ``matplotlib.pyplot``, so no global figure
registry fills up during a sweep and no display is ever needed (CI, servers, notebooks alike).

:func:`pack_intervals` (defined in `sfsim.export`, which must not import matplotlib) is the
small algorithm both the Gantt chart and the Chrome trace export use when intervals on one row
may overlap (several devices waiting in the server queue at once): it gives each interval the
lowest-numbered slot that is free at its start, so overlapping intervals sit on separate
sub-rows (or threads) and non-overlapping ones share a slot.
"""

from __future__ import annotations

from collections.abc import Iterable

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sfsim.engine import MEMORY_KINDS
from sfsim.export import pack_intervals

#: Colours of the phases recorded by the built-in schemes (device blues/greens, links
#: oranges/purples, server reds, waits grey).
PHASE_COLORS: dict[str, str] = {
    "device_fwd": "#4c9be8",
    "device_bwd": "#1f5fa8",
    "uplink_activations": "#f5a04a",
    "adapter_upload": "#c46a12",
    "downlink_gradients": "#a98bd6",
    "adapter_download": "#6a4c9c",
    "server_fwd": "#e8605c",
    "server_bwd": "#a8231f",
    "aggregate": "#2e9e5b",
    "queue_wait": "#b8b8b8",
}

#: Spare colours for phases that new schemes add (assigned in sorted order of their names).
SPARE_COLORS: tuple[str, ...] = (
    "#17becf", "#bcbd22", "#e377c2", "#8c564b", "#7f7f7f", "#9edae5", "#dbdb8d", "#f7b6d2",
    "#c49c94", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
)

#: One colour per memory kind, in the ledger's order.
KIND_COLORS: dict[str, str] = dict(
    zip(
        MEMORY_KINDS,
        ("#6c7a89", "#2e9e5b", "#e8605c", "#a98bd6", "#f5a04a", "#4c9be8", "#17becf", "#d0d0d0"),
        strict=True,
    )
)

#: The per-round breakdown's categories, in stacking order (bottom first), with colours.
CATEGORY_COLORS: dict[str, str] = {
    "device compute": "#4c9be8",
    "uplink": "#f5a04a",
    "queue": "#b8b8b8",
    "server": "#e8605c",
    "downlink": "#a98bd6",
    "aggregation": "#2e9e5b",
    "other": "#8c564b",
    "idle": "#f0f0f0",
}

GB = 1e9

__all__ = ["CATEGORY_COLORS", "KIND_COLORS", "PHASE_COLORS", "kind_color", "new_figure",
           "pack_intervals", "phase_colors"]


def phase_colors(phases: Iterable[str]) -> dict[str, str]:
    """A colour for every phase: the fixed one if known, else a spare one (stable by name)."""
    names = sorted(set(phases))
    unknown = [p for p in names if p not in PHASE_COLORS]
    spare = {p: SPARE_COLORS[i % len(SPARE_COLORS)] for i, p in enumerate(unknown)}
    return {p: PHASE_COLORS.get(p, spare.get(p, "#000000")) for p in names}


def kind_color(kind: str) -> str:
    """The colour of a memory kind (black for a kind the ledger does not know)."""
    return KIND_COLORS.get(kind, "#000000")


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure on the Agg canvas (no pyplot, no display, nothing global)."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig
