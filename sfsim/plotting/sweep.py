"""The trade-off figure of a sweep: a summary figure against a swept key, with 95 % CI bars.

It reads the aggregate table ``sfsim sweep`` writes (``aggregate.parquet``: one row per
configuration, ``FIELD_mean`` and ``FIELD_ci95`` over seeds) and draws ``FIELD`` against a swept
key, one line per value of the hue column (a scheme, a scheduler or another swept key)::

    sfsim plot-sweep sweeps/out --x training.local_iterations --y makespan_s --hue scheme

Every other column that varies must be pinned with ``--where KEY=VALUE`` (or chosen as the hue):
a line that silently averaged over, say, two channel models would be misleading, so that is an
error naming the column and its values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sfsim.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

#: Columns of the aggregate table that are not configuration columns.
_STATS = ("n", "n_failed")


def config_columns(agg: pd.DataFrame) -> list[str]:
    """The configuration columns of an aggregate table (swept keys, scheme, scheduler)."""
    cols = list(agg.columns)
    end = cols.index("n") if "n" in cols else len(cols)
    return [c for c in cols[:end] if c != "config"]


def figure_names(agg: pd.DataFrame) -> list[str]:
    return [c.removesuffix("_mean") for c in agg.columns if c.endswith("_mean")]


def _matches(value: Any, text: str) -> bool:
    import yaml

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return text.strip().lower() in ("null", "none", "~", "")
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError:
        parsed = text
    if isinstance(value, str) and not isinstance(parsed, str):
        return value == json.dumps(parsed, sort_keys=True) or value == text
    return bool(value == parsed) or str(value) == text


def select(agg: pd.DataFrame, where: Sequence[str]) -> pd.DataFrame:
    """Rows of ``agg`` matching every ``KEY=VALUE`` (values read as YAML)."""
    keys = config_columns(agg)
    for item in where:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"expected KEY=VALUE, got {item!r}", key="--where")
        if key not in keys:
            raise InputError(f"{key!r} is not a column of the sweep; choose from "
                             f"{', '.join(keys)}", key="--where")
        keep = [_matches(v, text) for v in agg[key]]
        if not any(keep):
            values = ", ".join(str(v) for v in agg[key].drop_duplicates())
            raise InputError(f"no configuration has {key}={text} (values: {values})",
                             key="--where")
        agg = agg[keep]
    return agg


def _pick_hue(agg: pd.DataFrame, x: str, hue: str | None) -> str | None:
    keys = config_columns(agg)
    varying = [c for c in keys if c != x and agg[c].nunique(dropna=False) > 1]
    if hue is None:
        for c in ("scheme", "scheduler", *keys):
            if c in varying:
                hue = c
                break
    elif hue not in keys:
        raise InputError(f"{hue!r} is not a column of the sweep; choose from {', '.join(keys)}",
                         key="--hue")
    elif hue == x:
        raise InputError("is the same column as --x", key="--hue")
    rest = [c for c in varying if c != hue]
    if rest:
        c = rest[0]
        values = ", ".join(str(v) for v in agg[c].drop_duplicates())
        raise InputError(f"{c!r} also varies ({values}); pin it with --where {c}=VALUE or "
                         f"draw it as --hue {c}", key="--x")
    return hue


def sweep_figure(
    agg: pd.DataFrame,
    x: str,
    y: str,
    *,
    hue: str | None = None,
    where: Sequence[str] = (),
    title: str | None = None,
    log_x: bool = False,
) -> tuple[Figure, pd.DataFrame]:
    """Draw ``y`` (a summary figure) against the swept key ``x``; returns the figure and the
    table drawn (hue, x, mean, ci95, n per point)."""
    import pandas as pd

    from sfsim.plotting.style import new_figure

    keys = config_columns(agg)
    if x not in keys:
        raise InputError(f"{x!r} is not a swept key of this sweep; choose from {', '.join(keys)}",
                         key="--x")
    field = y.removesuffix("_mean")
    if f"{field}_mean" not in agg.columns:
        raise InputError(f"no figure {y!r}; choose from {', '.join(figure_names(agg))}",
                         key="--y")
    agg = select(agg, where)
    hue = _pick_hue(agg, x, hue)
    numeric = pd.api.types.is_numeric_dtype(agg[x])
    drawn = pd.DataFrame({
        "hue": agg[hue].astype(str) if hue else "all",
        "x": agg[x],
        "mean": agg[f"{field}_mean"],
        "ci95": agg.get(f"{field}_ci95", pd.Series(math.nan, index=agg.index)),
        "n": agg["n"] if "n" in agg.columns else 0,
    }).reset_index(drop=True)
    if numeric:  # lines in the sweep's order of hue values, points along x
        order = {h: i for i, h in enumerate(dict.fromkeys(drawn["hue"]))}
        drawn = (drawn.assign(_h=drawn["hue"].map(order)).sort_values(["_h", "x"], kind="stable")
                 .drop(columns="_h").reset_index(drop=True))
    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    ticks = list(dict.fromkeys(drawn["x"])) if not numeric else []
    for label, g in drawn.groupby("hue", sort=False):
        xs = g["x"] if numeric else [ticks.index(v) for v in g["x"]]
        ax.errorbar(xs, g["mean"], yerr=g["ci95"].fillna(0.0), marker="o", capsize=3,
                    label=str(label))
    if not numeric:
        ax.set_xticks(range(len(ticks)), [str(t) for t in ticks])
    elif log_x:
        ax.set_xscale("log")
        values = sorted(set(drawn["x"]))
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
    ax.set_xlabel(x)
    ax.set_ylabel(field)
    n_min, n_max = int(drawn["n"].min()), int(drawn["n"].max())
    seeds = f"n = {n_min}" if n_min == n_max else f"n = {n_min}..{n_max}"
    ax.set_title(title or f"{field} vs {x} (mean, 95% CI over seeds, {seeds})", fontsize=10)
    if hue:
        ax.legend(title=hue, fontsize=8)
    ax.grid(True, alpha=0.3)
    return fig, drawn


def plot_sweep_folder(
    folder: str | Path,
    *,
    x: str,
    y: str,
    hue: str | None = None,
    where: Sequence[str] = (),
    out: str | Path | None = None,
    dpi: int = 120,
    log_x: bool = False,
) -> Path:
    """Read ``folder/aggregate.parquet``, draw the figure and write it (default:
    ``folder/plots/Y_vs_X.png``); returns the image path."""
    import pandas as pd

    folder = Path(folder)
    table = folder / "aggregate.parquet"
    if not folder.is_dir():
        raise InputError("no such sweep folder" if not folder.exists() else "is not a folder",
                         file=folder)
    if not table.is_file():
        raise InputError("not a sweep folder (no aggregate.parquet; run `sfsim sweep` first)",
                         file=folder)
    try:
        agg = pd.read_parquet(table)
    except Exception as exc:  # a truncated or foreign file
        raise InputError(f"cannot read: {exc}", file=table) from None
    fig, _ = sweep_figure(agg, x, y, hue=hue, where=where, log_x=log_x)
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in f"{y}_vs_{x}")
    path = Path(out) if out is not None else folder / "plots" / f"{safe}.png"
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt not in ("png", "svg", "pdf"):
        raise InputError("the image must end in .png, .svg or .pdf", key="--out")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=fmt, dpi=dpi)
    return path
