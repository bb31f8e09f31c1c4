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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", file=path)
    return data


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
    status = summary.get("status")
    if status != "ok":
        error = str(summary.get("error") or "no error message recorded").strip()
        first = error.splitlines()[-1] if "Traceback" in error else error.splitlines()[0]
        raise InputError(f"the run did not succeed (status {status!r}: {first}); nothing to plot",
                         file=folder)
    trace = _read_parquet(folder / "trace.parquet")
    memory = _read_parquet(folder / "memory.parquet")
    for name, df, need in (
        ("trace.parquet", trace, ("device", "phase", "resource", "start_s", "end_s")),
        ("memory.parquet", memory, ("seq", "time_s", "owner", "kind", "delta_bytes")),
    ):
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise InputError(f"missing column(s) {', '.join(missing)}", file=folder / name)
    return RunData(folder, summary, trace, memory)
