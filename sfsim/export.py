"""Chrome Trace Event export: open a run in Perfetto (ui.perfetto.dev) or chrome://tracing.

The Trace Event format is a JSON object ``{"traceEvents": [...]}`` whose events share a few
fields: ``ph`` (the event type), ``ts`` (timestamp, microseconds), ``pid`` and ``tid`` (the
process and thread the event belongs to; viewers draw one track per thread, grouped by process),
``name`` and free-form ``args``. Three types are used here:

* ``"X"`` (complete event): a span with a start ``ts`` and a duration ``dur`` — one per trace span;
* ``"M"`` (metadata): ``process_name`` / ``thread_name`` (and sort indexes) label the tracks;
* ``"C"`` (counter): a value over time; one ``memory GB`` counter per owner with one series per
  memory kind, so the viewer shows the memory timeline under the owner's tracks.

Layout: process 1 is the server, with threads ``busy`` (forward, backward, aggregation) and
``queue`` (tasks waiting to be served); processes 2, 3, ... are the devices in the scenario's
order, with threads ``compute``, ``uplink`` and ``downlink``. Complete events on one thread must
not overlap (viewers expect them to nest), so when intervals on a thread overlap (several
devices waiting in the queue at once) they are spread over numbered threads ``queue``,
``queue 2``, ... — the fewest that keep each thread free of overlaps.

Every run folder written by ``sfsim run`` gets a ``trace.json``: `sfsim.cli` calls each writer
in :data:`RUN_WRITERS`. This module imports neither matplotlib nor the engine.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from sfsim.results import RunResult

SERVER = "server"
US_PER_S = 1e6
SERVER_PID = 1
#: Thread layout per process kind: (resource in the trace, thread name, tid base).
DEVICE_THREADS = (("device", "compute", 1), ("uplink", "uplink", 2), ("downlink", "downlink", 3))
SERVER_THREADS = (("server", "busy", 1), ("server_queue", "queue", 2))
OTHER_TID_BASE = 10  # a resource no built-in thread takes gets a thread of its own from here
SPILL_TID_STEP = 100  # overlapping intervals on one thread spill to tid + 100, + 200, ...


def pack_intervals(starts: Sequence[float], ends: Sequence[float]) -> list[int]:
    """Slot of each interval so that intervals sharing a slot never overlap.

    Intervals are taken in order of start; each gets the lowest slot whose last interval has
    ended by its start (touching intervals may share a slot). Returns one slot per input, in
    input order; the number of slots is the largest number of intervals open at once. The
    Gantt chart (`sfsim.plotting.gantt`) uses the same function for its sub-rows.
    """
    order = sorted(range(len(starts)), key=lambda i: (starts[i], ends[i]))
    free: list[int] = []  # slots free now (a min-heap, so the lowest is reused first)
    busy: list[tuple[float, int]] = []  # (end, slot) of intervals still open
    n_slots = 0
    out = [0] * len(starts)
    for i in order:
        while busy and busy[0][0] <= starts[i]:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            slot = heapq.heappop(free)
        else:
            slot, n_slots = n_slots, n_slots + 1
        out[i] = slot
        heapq.heappush(busy, (ends[i], slot))
    return out


def _meta(name: str, pid: int, tid: int | None, value: Any) -> dict[str, Any]:
    key = "sort_index" if name.endswith("sort_index") else "name"
    event: dict[str, Any] = {"ph": "M", "name": name, "pid": pid, "tid": tid or 0, "ts": 0,
                             "args": {key: value}}
    return event


def _device_order(trace: pd.DataFrame, devices: list[str] | None) -> list[str]:
    seen = [str(d) for d in dict.fromkeys(trace["device"]) if str(d) != SERVER]
    order = [d for d in (devices or []) if d != SERVER]
    return [*order, *(d for d in seen if d not in order)]


def chrome_trace(
    trace_df: pd.DataFrame,
    memory_df: pd.DataFrame | None = None,
    *,
    devices: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The run as a Trace Event JSON object (``{"traceEvents": [...], ...}``).

    Each column is read once into a Python list (no per-row pandas access); rows are grouped
    by (owner, resource) in one pass, in order of first appearance.
    """
    cols = ["device", "resource", "phase", "round", "iteration", "start_s", "end_s", "bytes",
            "flops"]
    t = trace_df if not trace_df.empty else pd.DataFrame(columns=cols)
    devs = _device_order(t, devices)
    pids = {SERVER: SERVER_PID, **{d: SERVER_PID + 1 + i for i, d in enumerate(devs)}}
    events: list[dict[str, Any]] = []
    for owner, pid in pids.items():
        label = "server" if owner == SERVER else f"device {owner}"
        events.append(_meta("process_name", pid, None, label))
        events.append(_meta("process_sort_index", pid, None, pid))

    device = [str(x) for x in t["device"].tolist()]
    resource = [str(x) for x in t["resource"].tolist()]
    phase = [str(x) for x in t["phase"].tolist()]
    rnd = [int(x) for x in t["round"].tolist()]
    iteration = [int(x) for x in t["iteration"].tolist()]
    start_s = [float(x) for x in t["start_s"].tolist()]
    end_s = [float(x) for x in t["end_s"].tolist()]
    nbytes = [float(x) for x in t["bytes"].tolist()]
    flops = [float(x) for x in t["flops"].tolist()]
    energy = ([float(x) for x in t["energy_j"].tolist()] if "energy_j" in t.columns
              else [0.0] * len(t))
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (dev, res) in enumerate(zip(device, resource, strict=True)):
        owner = SERVER if res in ("server", "server_queue") else dev
        rows = groups.get((owner, res))
        if rows is None:
            rows = groups[(owner, res)] = []
        rows.append(i)

    threads: dict[tuple[int, int], str] = {}
    for (owner, res), rows in groups.items():
        layout = SERVER_THREADS if owner == SERVER else DEVICE_THREADS
        base = {r: (name, tid) for r, name, tid in layout}
        name, tid = base.get(res, (res, OTHER_TID_BASE + len(threads)))
        pid = pids[owner]
        starts = [start_s[i] for i in rows]
        ends = [end_s[i] for i in rows]
        slots = pack_intervals(starts, ends)
        for slot in set(slots):
            threads[(pid, tid + SPILL_TID_STEP * slot)] = (
                name if slot == 0 else f"{name} {slot + 1}"
            )
        for i, slot, start, end in zip(rows, slots, starts, ends, strict=True):
            args: dict[str, Any] = {"phase": phase[i], "round": rnd[i],
                                    "iteration": iteration[i], "device": device[i]}
            if nbytes[i]:
                args["bytes"] = nbytes[i]
            if flops[i]:
                args["flops"] = flops[i]
            if energy[i]:
                args["energy_j"] = energy[i]
            events.append({
                "ph": "X", "name": phase[i], "cat": res, "pid": pid,
                "tid": tid + SPILL_TID_STEP * slot, "ts": start * US_PER_S,
                "dur": max(end - start, 0.0) * US_PER_S, "args": args,
            })
    for (pid, tid), name in sorted(threads.items()):
        events.append(_meta("thread_name", pid, tid, name))
        events.append(_meta("thread_sort_index", pid, tid, tid))

    if memory_df is not None and not memory_df.empty:
        events += _memory_counters(memory_df, pids)
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": metadata or {}}


def _memory_counters(memory: pd.DataFrame, pids: dict[str, int]) -> list[dict[str, Any]]:
    """One counter event per owner per distinct event time: the level (GB) of every kind.

    The levels after each event are running sums per kind (``numpy.cumsum``: the same additions
    in the same order as a loop over events); only the last event at each time becomes a
    counter. Each distinct level is rounded once, by Python's ``round`` (exact decimal rounding).
    """
    m = memory.sort_values("seq", kind="stable")
    owner_codes, owner_names = pd.factorize(m["owner"])
    kind_codes, kind_names = pd.factorize(m["kind"])
    all_deltas = m["delta_bytes"].to_numpy(dtype=np.float64)
    all_times = m["time_s"].to_numpy(dtype=np.float64)
    order = np.argsort(owner_codes, kind="stable")
    cuts = np.flatnonzero(np.diff(owner_codes[order])) + 1
    blocks: list[tuple[int, list[str], np.ndarray, np.ndarray]] = []
    for rows in np.split(order, cuts):
        pid = pids.get(str(owner_names[int(owner_codes[rows[0]])]))
        if pid is None:
            continue
        codes, used = pd.factorize(kind_codes[rows])  # this owner's kinds, first seen first
        deltas = np.zeros((len(rows), len(used)))
        deltas[np.arange(len(rows)), codes] = all_deltas[rows]
        levels = np.cumsum(deltas, axis=0)
        times = all_times[rows]
        # the last event at each distinct time, in order of each time's first appearance
        _, first = np.unique(times, return_index=True)
        _, last_rev = np.unique(times[::-1], return_index=True)
        last = (len(times) - 1 - last_rev)[np.argsort(first, kind="stable")]
        gb = np.maximum(levels[last], 0.0) / 1e9
        blocks.append((pid, [str(kind_names[int(k)]) for k in used], times[last], gb))
    if not blocks:
        return []
    distinct, inverse = np.unique(np.concatenate([g.ravel() for *_, g in blocks]),
                                  return_inverse=True)
    once = [round(v, 9) for v in distinct.tolist()]
    rounded = [once[i] for i in inverse.ravel().tolist()]
    out: list[dict[str, Any]] = []
    at = 0
    for pid, kinds, times, _ in blocks:
        n = len(kinds)
        for time_s in times.tolist():
            values = dict(zip(kinds, rounded[at : at + n], strict=True))
            out.append({"ph": "C", "name": "memory GB", "pid": pid, "tid": 0,
                        "ts": time_s * US_PER_S, "args": values})
            at += n
    return out


def write_chrome_trace(folder: Path, result: RunResult) -> Path:
    """Run-folder writer: ``trace.json`` from the result's trace and memory tables."""
    summary = result.summary
    keys = ("scenario", "scheme", "scheduler", "seed", "makespan_s", "version")
    meta: dict[str, Any] = {k: summary[k] for k in keys if k in summary}
    devices = list(summary.get("devices", {})) or None
    path = Path(folder) / "trace.json"
    doc = chrome_trace(result.trace, result.memory, devices=devices, metadata=meta)
    path.write_text(json.dumps(doc, separators=(",", ":"), default=str))
    return path


#: Writers `sfsim.cli` runs for every run folder it writes: ``f(folder, result)``.
RUN_WRITERS = [write_chrome_trace]
