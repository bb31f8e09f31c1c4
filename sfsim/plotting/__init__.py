"""Figures of a run: Gantt chart, memory timelines, per-round time breakdown.

Everything here is a layer on top of the simulator: it reads the tables a run produces (the
trace and the memory ledger, usually from a run folder written by ``sfsim run``) and draws
them with matplotlib on the Agg canvas. The simulator core never imports this package.

Each figure function takes DataFrames and returns ``(figure, data)``, the data being exactly what
was drawn (the Gantt layout, the memory levels per owner, the per-round table), so notebooks can
print it and tests can check it::

    from sfsim.plotting import load_run, gantt, memory_timeline, round_breakdown

    run = load_run("runs/quickstart")
    fig, layout = gantt(run.trace, run.devices, round_bounds=run.round_bounds)
    fig.savefig("gantt.png")

From the shell: ``sfsim plot RUN_DIR`` (see ``docs/plotting.md``). The names below are loaded
on first use, so importing ``sfsim.plotting.cli`` (which every ``sfsim`` command does to add
``sfsim plot``) does not pull in matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "critical_path": "breakdown",
    "round_breakdown": "breakdown",
    "round_table": "breakdown",
    "GanttData": "gantt",
    "gantt": "gantt",
    "gantt_bars": "gantt",
    "compare_curves": "learning",
    "learning_curve": "learning",
    "load_learning": "learning",
    "default_owners": "memory",
    "memory_levels": "memory",
    "memory_timeline": "memory",
    "peak_table": "memory",
    "RunData": "rundir",
    "load_run": "rundir",
    "new_figure": "style",
    "phase_colors": "style",
}

__all__ = [
    "GanttData",
    "RunData",
    "compare_curves",
    "critical_path",
    "default_owners",
    "gantt",
    "gantt_bars",
    "learning_curve",
    "load_learning",
    "load_run",
    "memory_levels",
    "memory_timeline",
    "new_figure",
    "peak_table",
    "phase_colors",
    "round_breakdown",
    "round_table",
]

if TYPE_CHECKING:
    from sfsim.plotting.breakdown import critical_path, round_breakdown, round_table
    from sfsim.plotting.gantt import GanttData, gantt, gantt_bars
    from sfsim.plotting.learning import compare_curves, learning_curve, load_learning
    from sfsim.plotting.memory import default_owners, memory_levels, memory_timeline, peak_table
    from sfsim.plotting.rundir import RunData, load_run
    from sfsim.plotting.style import new_figure, phase_colors


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'sfsim.plotting' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sfsim.plotting.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
