"""``sfsim plot``: the figures of one run folder, written as image files.

The command reads a run folder (`sfsim.plotting.rundir.load_run`) and writes, by default into
``RUN_DIR/plots/``:

* ``gantt.png``  — one lane per device (compute, uplink, downlink) and one for the server
  (busy, queue), coloured by phase;
* ``memory.png`` — memory in use over time, stacked by kind, for the server and up to four
  devices (``--devices a,b`` picks them);
* ``rounds.png`` — per-round stacked bars of where the time went (critical path by default,
  ``--breakdown busy`` for summed busy time);
* ``learning.png`` — held-out accuracy and training loss against simulated time, drawn by
  default when the folder holds ``learning.parquet`` (a run with ``learning.enabled``); asking
  for it (``--figures learning``) on a folder without that file is a user error.

It never simulates. A folder that is missing, is not a run folder, or holds a failed run is a
user error: one line ``error: ...`` on stderr and exit status 2. `sfsim.cli` finds this module
and calls :func:`register` to add the command; matplotlib is imported only when the command
runs, so other commands start as fast as before.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from sfsim.errors import InputError

if TYPE_CHECKING:
    from sfsim.plotting.rundir import RunData

FIGURES = ("gantt", "memory", "rounds", "learning")


class ImageFormat(StrEnum):
    png = "png"
    svg = "svg"


class Breakdown(StrEnum):
    critical = "critical"
    busy = "busy"


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def plot_run(
    run: RunData,
    out: Path,
    *,
    fmt: str = "png",
    devices: list[str] | None = None,
    figures: list[str] | None = None,
    how: str = "critical",
    dpi: int = 110,
) -> list[Path]:
    """Write the chosen figures of ``run`` into ``out``; returns the paths written."""
    from sfsim.plotting.breakdown import round_breakdown
    from sfsim.plotting.gantt import gantt
    from sfsim.plotting.learning import FILE as LEARNING_FILE
    from sfsim.plotting.memory import default_owners, memory_timeline

    wanted = figures or [f for f in FIGURES
                         if f != "learning" or (run.folder / LEARNING_FILE).is_file()]
    unknown = [f for f in wanted if f not in FIGURES]
    if unknown:
        raise InputError(f"unknown figure(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(FIGURES)}", key="--figures")
    known = run.devices
    bad = [d for d in devices or [] if d not in known and d != "server"]
    if bad:
        raise InputError(f"no device(s) {', '.join(bad)} in this run; devices: "
                         f"{', '.join(known)}", key="--devices")
    name = f"{run.summary.get('scenario', run.folder.name)} "
    name += f"({run.summary.get('scheme', '?')} / {run.summary.get('scheduler', '?')})"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for fig_name in wanted:
        if fig_name == "gantt":
            fig, _ = gantt(run.trace, known, round_bounds=run.round_bounds,
                           title=f"Gantt chart — {name}")
        elif fig_name == "memory":
            owners = default_owners(known, devices)
            fig, _ = memory_timeline(run.memory, owners, end_s=run.end_s,
                                     title=f"Memory in use, stacked by kind — {name}")
        elif fig_name == "learning":
            from sfsim.plotting.learning import learning_curve, load_learning

            target = (run.summary.get("learning") or {}).get("target_accuracy")
            target = float(target) if isinstance(target, int | float) else None
            fig, _ = learning_curve(load_learning(run.folder), target=target,
                                    title=f"Accuracy and loss against simulated time — {name}")
        else:
            fig, _ = round_breakdown(run.trace, run.round_bounds, how=how,
                                     round_energy_j=run.summary.get("round_energy_j"))
            fig.suptitle(name, fontsize=9)
        path = out / f"{fig_name}.{fmt}"
        fig.savefig(path, format=fmt, dpi=dpi)
        written.append(path)
    return written


def register(app: typer.Typer) -> None:
    """Add ``sfsim plot`` to the command line."""

    @app.command("plot")
    def plot(
        run_dir: Annotated[Path, typer.Argument(help="run folder written by `sfsim run`")],
        out: Annotated[Path | None, typer.Option(help="folder for the images "
                                                      "(default: RUN_DIR/plots)")] = None,
        fmt: Annotated[ImageFormat, typer.Option("--format", help="image format")] = (
            ImageFormat.png),
        devices: Annotated[str | None, typer.Option(
            help="devices for the memory figure, comma-separated (default: first 4)")] = None,
        figures: Annotated[str | None, typer.Option(
            help="which figures, comma-separated: gantt,memory,rounds,learning "
                 "(default: all; learning when the run has learning.parquet)")] = None,
        breakdown: Annotated[Breakdown, typer.Option(
            help="rounds figure: critical path or summed busy time")] = Breakdown.critical,
        dpi: Annotated[int, typer.Option(min=30, max=600, help="PNG resolution")] = 110,
    ) -> None:
        """Draw a run folder's Gantt chart, memory timeline and per-round time breakdown."""
        from sfsim.plotting.rundir import load_run

        err = Console(stderr=True)
        try:
            run = load_run(run_dir)
            paths = plot_run(run, out or run_dir / "plots", fmt=fmt.value,
                             devices=_split(devices), figures=_split(figures),
                             how=breakdown.value, dpi=dpi)
        except InputError as exc:
            err.print(f"error: {exc.message}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        for p in paths:
            print(p)
