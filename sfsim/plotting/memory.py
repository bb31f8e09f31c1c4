"""Memory timelines: how much each owner holds, of which kind, over simulated time.

The engine records memory as a ledger of allocate / free events (`sfsim.engine.MemoryLedger`):
``(seq, time_s, owner, kind, delta_bytes, label)``. Nothing else is stored, so a level is always
derived the same way: the level of kind k for owner o after event n is the sum of the deltas of
o's events of kind k up to n. This module turns that ledger into a step function per kind and
draws one panel per owner with the kinds stacked: what lives for the whole run at the bottom
(runtime overhead, frozen weights, adapters, optimizer state), then what comes and goes with
each iteration (LoRA gradients, saved activations, boundary tensors, caches).

Two details matter when reading the plot:

* Several events often share a timestamp (a task ends: its gradients, activations and boundary
  tensor are freed and the cut gradient allocated, all at the same instant). The plot shows the
  state *after* all events of an instant; the dashed line marks the peak the summary reports,
  which is taken over the events in order and can sit above the plotted steps when an
  allocation and a free land on the same instant.
* Levels hold from one event to the next (a "post" step), and the last level is held until the
  end of the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from sfsim.engine import MEMORY_KINDS
from sfsim.plotting.style import GB, kind_color, new_figure

SERVER = "server"
#: Stacking order, bottom first: what lives for the whole run, then what comes and goes.
STACK_ORDER = ("overhead", "weights", "adapters", "optimizer", "gradients", "activations",
               "boundary", "cache")


def default_owners(devices: Sequence[str], selected: Sequence[str] | None = None,
                   max_devices: int = 4) -> list[str]:
    """The server, then ``selected`` devices (default: the first ``max_devices`` devices)."""
    chosen = list(selected) if selected else list(devices)[:max_devices]
    return [SERVER, *(d for d in chosen if d != SERVER)]


def memory_levels(memory: pd.DataFrame, owner: str, *, end_s: float | None = None) -> pd.DataFrame:
    """Level (bytes) of each kind ``owner`` ever held, as a step function of time.

    Index: ``time_s`` (one row per distinct event time, the state after all its events, plus
    a last row at ``end_s`` when given); columns: the kinds, in the ledger's order.
    """
    m = memory[memory["owner"] == owner].sort_values("seq")
    if m.empty:
        return pd.DataFrame(index=pd.Index([], name="time_s", dtype="float64"))
    per_kind = m.groupby("kind")["delta_bytes"].cumsum()
    wide = pd.DataFrame({"time_s": m["time_s"].to_numpy(), "kind": m["kind"].to_numpy(),
                         "level": per_kind.to_numpy()})
    wide["n"] = range(len(wide))
    table = wide.pivot(index="n", columns="kind", values="level").ffill().fillna(0.0)
    table.index = pd.Index(wide["time_s"].to_numpy(), name="time_s")
    table = table.groupby(level=0).last()
    kinds = [k for k in STACK_ORDER if k in table.columns]
    kinds += sorted(str(k) for k in table.columns if k not in STACK_ORDER)
    table = table[kinds]
    table = table.loc[:, (table.abs() > 0).any(axis=0)]  # kinds that were only ever zero: drop
    table = table.clip(lower=0.0)  # float round-off after a full free
    table.columns.name = None
    if end_s is not None and end_s > float(table.index[-1]):
        table.loc[float(end_s)] = table.iloc[-1]
    return table


def peak_level(memory: pd.DataFrame, owner: str) -> float:
    """The owner's peak total level, over events in order (what the summary reports)."""
    m = memory[memory["owner"] == owner].sort_values("seq")
    return float(m["delta_bytes"].cumsum().max()) if not m.empty else 0.0


def memory_timeline(
    memory: pd.DataFrame,
    owners: Sequence[str],
    *,
    end_s: float | None = None,
    title: str | None = None,
) -> tuple[Figure, dict[str, pd.DataFrame]]:
    """One stacked step panel per owner; returns the figure and each owner's level table."""
    levels = {o: memory_levels(memory, o, end_s=end_s) for o in owners}
    fig = new_figure(11.0, 1.2 + 2.1 * max(len(owners), 1))
    axes = fig.subplots(max(len(owners), 1), 1, sharex=True, squeeze=False)[:, 0]
    kinds_seen: list[str] = []
    for ax, owner in zip(axes, owners, strict=False):
        table = levels[owner]
        if table.empty:
            ax.text(0.5, 0.5, f"{owner}: no memory events", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        x = table.index.to_numpy()
        bottom = 0.0 * x
        for kind in table.columns:
            top = bottom + table[kind].to_numpy() / GB
            ax.fill_between(x, bottom, top, step="post", color=kind_color(str(kind)),
                            linewidth=0, label=str(kind))
            bottom = top
            if kind not in kinds_seen:
                kinds_seen.append(str(kind))
        peak = peak_level(memory, owner) / GB
        ax.axhline(peak, color="#333333", linestyle="--", linewidth=0.8)
        ax.text(1.0, peak, f" peak {peak:.3g} GB", va="center", ha="left", fontsize=8,
                transform=ax.get_yaxis_transform())
        ax.set_ylim(0, peak * 1.12 if peak > 0 else 1.0)
        ax.set_ylabel("GB")
        ax.set_title(owner, loc="left", fontsize=10)
        ax.grid(axis="y", color="#eeeeee")
        ax.set_axisbelow(True)
    axes[-1].set_xlabel("simulated time (s)")
    right = max((float(t.index[-1]) for t in levels.values() if not t.empty), default=1.0)
    axes[-1].set_xlim(0.0, right if right > 0 else 1.0)
    kinds_seen.sort(key=lambda k: STACK_ORDER.index(k) if k in STACK_ORDER else 99)
    handles = [Patch(facecolor=kind_color(k), label=k) for k in reversed(kinds_seen)]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, title="kind",
               title_fontsize=8, frameon=False)
    fig.suptitle(title or "Memory in use, stacked by kind")
    return fig, levels


def peak_table(memory: pd.DataFrame, owners: Sequence[str] | None = None) -> pd.DataFrame:
    """Bytes of each kind held at each owner's peak (rows: owners; columns: kinds)."""
    names = list(owners) if owners is not None else list(dict.fromkeys(memory["owner"]))
    rows = {}
    for owner in names:
        m = memory[memory["owner"] == owner].sort_values("seq")
        if m.empty:
            continue
        at = int(m["delta_bytes"].cumsum().to_numpy().argmax())
        rows[owner] = m.iloc[: at + 1].groupby("kind")["delta_bytes"].sum()
    table = pd.DataFrame(rows).T.fillna(0.0)
    kinds = [k for k in MEMORY_KINDS if k in table.columns]
    return table[kinds] if not table.empty else table
