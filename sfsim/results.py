"""Results: flat tables from the trace and the memory ledger, a summary, and the run folder.

The trace and the memory events become two pandas DataFrames (one row per span / per event);
everything in ``summary.json`` is derived from them, so a plot or a notebook that reads the
Parquet files sees exactly what the summary reports. A run folder is written to a temporary
sibling and renamed into place, so it appears whole or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sfsim.engine import SERVER, MemEvent, Span

TRACE_COLUMNS = [f for f in Span.__dataclass_fields__]
MEMORY_COLUMNS = [f for f in MemEvent.__dataclass_fields__]


def trace_frame(spans: list[Span]) -> pd.DataFrame:
    df = pd.DataFrame([asdict(s) for s in spans], columns=TRACE_COLUMNS)
    return df.astype(
        {
            "round": "int64",
            "iteration": "int64",
            "start_s": "float64",
            "end_s": "float64",
            "bytes": "float64",
            "flops": "float64",
        }
    )


def memory_frame(events: list[MemEvent]) -> pd.DataFrame:
    df = pd.DataFrame([asdict(e) for e in events], columns=MEMORY_COLUMNS)
    df = df.astype({"seq": "int64", "time_s": "float64", "delta_bytes": "float64"})
    df["level_bytes"] = df.groupby("owner")["delta_bytes"].cumsum()
    return df


def peak_bytes(memory: pd.DataFrame) -> dict[str, float]:
    """Peak total level per owner (events applied in the order they happened)."""
    if memory.empty:
        return {}
    return {str(k): float(v) for k, v in memory.groupby("owner")["level_bytes"].max().items()}


def peak_breakdown(memory: pd.DataFrame, owner: str) -> dict[str, float]:
    """Level per memory kind at the moment ``owner`` reached its peak."""
    m = memory[memory["owner"] == owner]
    if m.empty:
        return {}
    at = m["level_bytes"].idxmax()
    upto = m.loc[:at]
    by_kind = upto.groupby("kind")["delta_bytes"].sum()
    return {str(k): float(v) for k, v in by_kind.items() if abs(v) > 0}


def union_length_s(spans: pd.DataFrame) -> float:
    """Time covered by at least one span (spans may overlap, e.g. a processor-shared server)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(zip(spans["start_s"], spans["end_s"], strict=True)):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def time_by_phase(trace: pd.DataFrame) -> dict[str, float]:
    d = (trace["end_s"] - trace["start_s"]).groupby(trace["phase"]).sum()
    return {str(k): float(v) for k, v in d.items()}


def link_bytes(trace: pd.DataFrame) -> dict[str, dict[str, float]]:
    t = trace[trace["resource"].isin(["uplink", "downlink"])]
    out: dict[str, dict[str, float]] = {}
    sums = t.groupby(["device", "resource"])["bytes"].sum()
    for row in sums.reset_index().itertuples(index=False):
        dev, res, b = str(row[0]), str(row[1]), float(row[2])
        out.setdefault(dev, {"uplink": 0.0, "downlink": 0.0})[res] = b
    return out


@dataclass
class RunResult:
    summary: dict[str, Any]
    trace: pd.DataFrame
    memory: pd.DataFrame
    scenario_yaml: str


def summarize(
    trace: pd.DataFrame,
    memory: pd.DataFrame,
    round_bounds: list[tuple[float, float]],
    header: dict[str, Any],
    devices: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    peaks = peak_bytes(memory)
    links = link_bytes(trace)
    busy_s = union_length_s(trace[trace["resource"] == "server"])
    makespan = round_bounds[-1][1] if round_bounds else 0.0
    per_device = {}
    for dev_id, info in devices.items():
        t = trace[trace["device"] == dev_id]
        dur = t["end_s"] - t["start_s"]
        per_device[dev_id] = {
            **info,
            "compute_s": float(dur[t["resource"] == "device"].sum()),
            "uplink_s": float(dur[t["resource"] == "uplink"].sum()),
            "downlink_s": float(dur[t["resource"] == "downlink"].sum()),
            "queue_wait_s": float(dur[t["resource"] == "server_queue"].sum()),
            "server_s": float(dur[t["resource"] == "server"].sum()),
            "peak_bytes": peaks.get(dev_id, 0.0),
            **links.get(dev_id, {"uplink": 0.0, "downlink": 0.0}),
        }
    return {
        **header,
        "status": "ok",
        "error": None,
        "makespan_s": makespan,
        "round_s": [e - s for s, e in round_bounds],
        "round_bounds_s": [list(b) for b in round_bounds],
        "server_peak_bytes": peaks.get(SERVER, 0.0),
        "server_peak_breakdown": peak_breakdown(memory, SERVER),
        "device_peak_bytes": {d: peaks.get(d, 0.0) for d in devices},
        "uplink_bytes": float(trace.loc[trace["resource"] == "uplink", "bytes"].sum()),
        "downlink_bytes": float(trace.loc[trace["resource"] == "downlink", "bytes"].sum()),
        "server_busy_s": busy_s,
        "server_utilisation": busy_s / makespan if makespan > 0 else 0.0,
        "time_by_phase_s": time_by_phase(trace),
        "devices": per_device,
    }


# ---- the run folder -----------------------------------------------------------------------------


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False, default=float) + "\n")


def write_run_folder(
    out: Path, result: RunResult, writers: list[Any] | None = None, *, overwrite: bool = False
) -> Path:
    """Write a run folder atomically: into a temporary sibling, then rename into place.

    ``writers`` are extra callables ``f(folder: Path, result)`` (e.g. the Chrome trace exporter).
    An existing ``out`` is replaced only with ``overwrite``, and only once the new folder is
    complete (the old one is moved aside, the new one renamed in, the old one deleted).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "scenario.resolved.yaml").write_text(result.scenario_yaml)
        if not result.trace.empty or result.summary.get("status") == "ok":
            result.trace.to_parquet(tmp / "trace.parquet", index=False)
            result.memory.to_parquet(tmp / "memory.parquet", index=False)
        for w in writers or []:
            w(tmp, result)
        _write_json(tmp / "summary.json", result.summary)
        if out.exists() and overwrite:
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.rename(out, old / "run")
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
