"""Learning curves: held-out accuracy and training loss against *simulated* time.

A run with ``learning: {enabled: true}`` writes ``learning.parquet`` (columns
`sfsim.learning.LEARNING_COLUMNS`): one row per training step of the proxy model (``device``
set, ``train_loss`` finite) and one row per evaluation point (``device`` empty, ``eval_accuracy``
and ``eval_loss`` finite). The x axis of every figure here is the simulated clock of the run,
so two schemes that learn the same per step but differ in time per step separate on the plot.

* :func:`learning_curve` — one run: accuracy (top) and training loss (bottom) against time,
  with the target accuracy and the time it was first reached when given;
* :func:`compare_curves` — several schemes in one figure, one line per scheme; when a scheme has
  several runs (seeds) the line is the mean over seeds and the band its 95% confidence interval
  (Student t) on a common time grid, each run's accuracy held at its last evaluation.

Both return ``(figure, data)`` like every sfsim figure; :func:`load_learning` reads and checks the
file of a run folder. Nothing here simulates or imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

from sfsim.errors import InputError
from sfsim.plotting.style import SPARE_COLORS, new_figure

FILE = "learning.parquet"
#: Columns the learning figures read (the file written by `sfsim.learning`).
NEEDS = ("time_s", "round", "step", "device", "train_loss", "eval_accuracy", "eval_loss")
#: Points of the common time grid used to average several seeds.
GRID_POINTS = 400

#: One colour per built-in scheme, so a scheme looks the same in every comparison.
SCHEME_COLORS: dict[str, str] = {
    "memsfl": "#1f5fa8", "sfl_v1": "#e8605c", "sfl_v2": "#f5a04a", "splitlora": "#c46a12",
    "fedlora": "#2e9e5b", "splitfrozen": "#6a4c9c", "fedmobillm": "#17becf",
}


def scheme_color(name: str, others: Sequence[str] = ()) -> str:
    """The scheme's fixed colour; an unknown one gets a spare colour by its sorted position."""
    if name in SCHEME_COLORS:
        return SCHEME_COLORS[name]
    unknown = sorted({n for n in [*others, name] if n not in SCHEME_COLORS})
    return SPARE_COLORS[unknown.index(name) % len(SPARE_COLORS)]


def check_learning(df: pd.DataFrame, path: Path | str = FILE) -> pd.DataFrame:
    """The learning table has its columns, finite times and finite metrics where they belong."""
    missing = [c for c in NEEDS if c not in df.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}", file=path)
    for col in ("time_s", "train_loss", "eval_accuracy", "eval_loss"):
        if not pd.api.types.is_numeric_dtype(df[col]) or pd.api.types.is_bool_dtype(df[col]):
            raise InputError(f"expected numbers, got {df[col].dtype}", file=path, key=col)
    t = df["time_s"].to_numpy(dtype=float)
    if not (np.isfinite(t).all() and (t >= 0).all()):
        raise InputError("expected finite, non-negative seconds", file=path, key="time_s")
    acc = df["eval_accuracy"].to_numpy(dtype=float)
    ok = np.isnan(acc) | ((acc >= 0) & (acc <= 1))
    if not ok.all():
        raise InputError("expected accuracies in [0, 1] (or empty)", file=path,
                         key="eval_accuracy")
    return df.sort_values("time_s", kind="stable").reset_index(drop=True)


def load_learning(folder: str | Path) -> pd.DataFrame:
    """``RUN_DIR/learning.parquet``, checked; InputError naming the file when it is absent."""
    path = Path(folder) / FILE
    if not path.is_file():
        raise InputError(
            "missing: this run did not train a model; set `learning: {enabled: true}` in the "
            "scenario and run it again", file=path)
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"cannot read Parquet: {exc}", file=path) from None
    return check_learning(df, path)


def evaluations(frame: pd.DataFrame) -> pd.DataFrame:
    """The evaluation points (time_s, round, eval_accuracy, eval_loss), in time order."""
    ev = frame[frame["eval_accuracy"].notna()]
    return ev[["time_s", "round", "eval_accuracy", "eval_loss"]].sort_values(
        "time_s", kind="stable").reset_index(drop=True)


def first_reach(frame: pd.DataFrame, target: float) -> float | None:
    """Simulated time of the first evaluation at or above ``target`` (None: never reached)."""
    ev = evaluations(frame)
    hit = ev[ev["eval_accuracy"] >= target]
    return float(hit["time_s"].iloc[0]) if not hit.empty else None


def held(frame: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """Accuracy at each grid time: the last evaluation at or before it (NaN before the first)."""
    ev = evaluations(frame)
    times = ev["time_s"].to_numpy(dtype=float)
    acc = ev["eval_accuracy"].to_numpy(dtype=float)
    idx = np.searchsorted(times, grid, side="right") - 1
    out = np.full(grid.shape, np.nan)
    ok = idx >= 0
    out[ok] = acc[idx[ok]]
    return out


def band(frames: Sequence[pd.DataFrame], grid: np.ndarray) -> pd.DataFrame:
    """Mean accuracy over runs on ``grid`` with its 95% CI (Student t over the runs present)."""
    values = np.vstack([held(f, grid) for f in frames])
    n = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(values, axis=0) / np.maximum(n, 1), np.nan)
        dev = np.where(n > 0, values - mean, 0.0)
        var = np.where(n > 1, np.nansum(dev**2, axis=0) / np.maximum(n - 1, 1), 0.0)
        half = np.where(n > 1, stats.t.ppf(0.975, np.maximum(n - 1, 1)) * np.sqrt(var / n), 0.0)
    return pd.DataFrame({"time_s": grid, "mean": mean, "lo": mean - half, "hi": mean + half,
                         "runs": n})


def _target_line(ax: object, target: float | None) -> None:
    if target is not None:
        ax.axhline(target, color="#555555", lw=0.8, ls="--",  # type: ignore[attr-defined]
                   label=f"target {target:.0%}")


def learning_curve(frame: pd.DataFrame, *, target: float | None = None,
                   title: str = "Learning curve") -> tuple[Figure, pd.DataFrame]:
    """One run: accuracy and training loss against simulated time; returns the eval points."""
    fig = new_figure(8.0, 6.0)
    ax_acc, ax_loss = fig.subplots(2, 1, sharex=True)
    ev = evaluations(frame)
    ax_acc.plot(ev["time_s"], ev["eval_accuracy"], marker="o", ms=3, color="#1f5fa8",
                label="held-out accuracy")
    _target_line(ax_acc, target)
    reached = first_reach(frame, target) if target is not None else None
    if reached is not None:
        ax_acc.axvline(reached, color="#2e9e5b", lw=0.8, ls=":",
                       label=f"target reached at {reached:.1f} s")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.legend(loc="lower right", fontsize=8)
    ax_acc.grid(alpha=0.3)
    train = frame[frame["train_loss"].notna()].sort_values("time_s", kind="stable")
    ax_loss.plot(train["time_s"], train["train_loss"], ".", ms=2, color="#b8b8b8",
                 label="one step")
    if len(train) >= 2:
        window = max(1, len(train) // 25)
        smooth = train["train_loss"].rolling(window, min_periods=1).mean()
        ax_loss.plot(train["time_s"], smooth, color="#a8231f", lw=1.2,
                     label=f"mean of {window} steps")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_xlabel("simulated time (s)")
    ax_loss.legend(loc="upper right", fontsize=8)
    ax_loss.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return fig, ev


def compare_curves(curves: Mapping[str, Sequence[pd.DataFrame]], *,
                   target: float | None = None,
                   title: str = "Accuracy against simulated time") -> tuple[Figure, pd.DataFrame]:
    """One line per scheme (mean over its runs) with a 95% CI band when it has several runs.

    Returns the drawn table: scheme, time_s, mean, lo, hi, runs (long format).
    """
    fig = new_figure(8.0, 4.8)
    ax = fig.subplots()
    names = [n for n, frames in curves.items() if frames]
    end = max((float(f["time_s"].max()) for n in names for f in curves[n] if not f.empty),
              default=0.0)
    tables = []
    for name in names:
        frames = [f for f in curves[name] if not evaluations(f).empty]
        if not frames:
            continue
        last = max(float(f["time_s"].max()) for f in frames)
        grid = np.linspace(0.0, last, GRID_POINTS)
        b = band(frames, grid)
        color = scheme_color(name, names)
        label = name if len(frames) == 1 else f"{name} (mean of {len(frames)} seeds, 95% CI)"
        ax.plot(b["time_s"], b["mean"], color=color, lw=1.5, label=label)
        if len(frames) > 1:
            ax.fill_between(b["time_s"], b["lo"].clip(0, 1), b["hi"].clip(0, 1), color=color,
                            alpha=0.2, lw=0)
        tables.append(b.assign(scheme=name))
    _target_line(ax, target)
    ax.set_xlim(0, end if end > 0 else 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("held-out accuracy")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=10)
    cols = ["scheme", "time_s", "mean", "lo", "hi", "runs"]
    table = pd.concat(tables, ignore_index=True)[cols] if tables else pd.DataFrame(columns=cols)
    return fig, table
