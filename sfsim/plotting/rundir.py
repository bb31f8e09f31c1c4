"""Reading a run folder back: the only input the figures ever need.

``sfsim run`` writes a self-describing folder (see `sfsim.results.write_run_folder`)::

    RUN_DIR/
      summary.json            headline figures, per-device figures, round bounds, status
      trace.parquet           one row per span: round, iteration, device, phase, resource, ...
      memory.parquet          one row per allocate/free event: seq, time_s, owner, kind, ...
      scenario.resolved.yaml  the scenario with every default filled in (re-runs to the same result)
      trace.json              the same spans in the Chrome Trace Event format (`sfsim.export`)

Plots are made from these files alone, never by simulating again, so a figure always shows
exactly the run the summary describes. :func:`load_run` checks the folder once and turns
every way it can be wrong (no such folder, not a run folder, a failed run, a damaged file)
into an :class:`sfsim.errors.InputError` that names the folder and says what to do.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sfsim.errors import InputError

SERVER = "server"


@dataclass(frozen=True)
class RunData:
    """A run folder's contents: the summary and the two tables."""

    folder: Path
    summary: dict[str, Any]
    trace: pd.DataFrame
    memory: pd.DataFrame

    @property
    def devices(self) -> list[str]:
        """Device ids in the scenario's order (from the summary, else from the trace)."""
        listed = list(self.summary.get("devices", {}))
        if listed:
            return listed
        seen = self.trace.loc[self.trace["device"] != SERVER, "device"]
        return list(dict.fromkeys(str(d) for d in seen))

    @property
    def round_bounds(self) -> list[tuple[float, float]]:
        """(start_s, end_s) of every round."""
        bounds = self.summary.get("round_bounds_s")
        if bounds:
            return [(float(a), float(b)) for a, b in bounds]
        return round_bounds_from_trace(self.trace)

    @property
    def end_s(self) -> float:
        """The end of the run: the makespan, or the last span's end."""
        makespan = self.summary.get("makespan_s")
        if makespan:
            return float(makespan)
        return float(self.trace["end_s"].max()) if not self.trace.empty else 0.0


def round_bounds_from_trace(trace: pd.DataFrame) -> list[tuple[float, float]]:
    """Round bounds when the summary has none: first start to last end of each round's spans."""
    if trace.empty:
        return []
    g = trace.groupby("round")
    return [(float(a), float(b)) for a, b in zip(g["start_s"].min(), g["end_s"].max(), strict=True)]


#: Columns the figures read, and what each must hold ("text", "number" or "integer").
TRACE_NEEDS = {"device": "text", "phase": "text", "resource": "text", "round": "integer",
               "start_s": "number", "end_s": "number"}
MEMORY_NEEDS = {"seq": "integer", "time_s": "number", "owner": "text", "kind": "text",
                "delta_bytes": "number"}
_MAX_SUMMARY_BYTES = 64 * 1024 * 1024


def _read_json(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > _MAX_SUMMARY_BYTES:
            raise InputError(f"larger than {_MAX_SUMMARY_BYTES} bytes; not a summary", file=path)
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise InputError("cannot read: JSON nested too deeply", file=path) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read: {exc}", file=path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", file=path)
    return data


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _check_summary(summary: dict[str, Any], path: Path) -> None:
    """The summary keys the figures use have the right shape (each one is optional)."""
    devices = summary.get("devices")
    if devices is not None and not (
        isinstance(devices, dict) and all(isinstance(v, dict) for v in devices.values())
    ):
        raise InputError("expected an object of device id -> figures", file=path, key="devices")
    bounds = summary.get("round_bounds_s")
    if bounds is not None:
        ok = isinstance(bounds, list) and all(
            isinstance(b, list) and len(b) == 2 and all(_is_number(x) for x in b) and b[0] <= b[1]
            for b in bounds
        )
        if not ok:
            raise InputError("expected a list of [start, end] pairs of finite seconds", file=path,
                             key="round_bounds_s")
    makespan = summary.get("makespan_s")
    if makespan is not None and not (_is_number(makespan) and makespan >= 0):
        raise InputError(f"expected a finite number of seconds, got {makespan!r}", file=path,
                         key="makespan_s")


def _check_columns(df: pd.DataFrame, needs: dict[str, str], path: Path) -> pd.DataFrame:
    """Every needed column is there and holds what it should; text columns become str."""
    missing = [c for c in needs if c not in df.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}", file=path)
    df = df.copy()
    for col, kind in needs.items():
        values = df[col]
        if kind == "text":
            if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
                raise InputError(f"expected text, got {values.dtype}", file=path, key=col)
            if values.isna().any():
                raise InputError("has missing values", file=path, key=col)
            df[col] = values.astype(str)
            continue
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            raise InputError(f"expected numbers, got {values.dtype}", file=path, key=col)
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        if not np.isfinite(numbers).all():
            raise InputError("has missing or non-finite values", file=path, key=col)
        if kind == "integer" and not (numbers == np.round(numbers)).all():
            raise InputError("expected whole numbers", file=path, key=col)
    if "start_s" in needs and (df["end_s"] < df["start_s"]).any():
        raise InputError("a span ends before it starts", file=path, key="end_s")
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError("missing; the run folder is incomplete (run the scenario again)",
                         file=path)
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise InputError(f"cannot read Parquet: {exc}", file=path) from None


def load_run(folder: str | Path) -> RunData:
    """Read and check a run folder; InputError naming the folder when it cannot be plotted."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError("no such run folder", file=folder)
    if not folder.is_dir():
        raise InputError("is a file, not a run folder", file=folder)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise InputError(
            "not a run folder (no summary.json); make one with `sfsim run SCENARIO --out DIR`",
            file=folder,
        )
    summary = _read_json(summary_path)
    _check_summary(summary, summary_path)
    status = summary.get("status")
    if status != "ok":
        error = str(summary.get("error") or "no error message recorded").strip()
        lines = error.splitlines() or ["no error message recorded"]
        first = lines[-1] if "Traceback" in error else lines[0]
        raise InputError(f"the run did not succeed (status {status!r}: {first}); nothing to plot",
                         file=folder)
    trace = _check_columns(_read_parquet(folder / "trace.parquet"), TRACE_NEEDS,
                           folder / "trace.parquet")
    memory = _check_columns(_read_parquet(folder / "memory.parquet"), MEMORY_NEEDS,
                            folder / "memory.parquet")
    return RunData(folder, summary, trace, memory)
