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
    """The run as a Trace Event JSON object (``{"traceEvents": [...], ...}``)."""
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

    threads: dict[tuple[int, int], str] = {}
    owner_col = [SERVER if str(r) in ("server", "server_queue") else str(d)
                 for d, r in zip(t["device"], t["resource"], strict=True)]
    frame = t.assign(_owner=owner_col)
    for key, grp in frame.groupby(["_owner", "resource"], sort=False):
        owner, resource = (str(k) for k in key)
        layout = SERVER_THREADS if owner == SERVER else DEVICE_THREADS
        base = {res: (name, tid) for res, name, tid in layout}
        name, tid = base.get(resource, (resource, OTHER_TID_BASE + len(threads)))
        pid = pids[owner]
        starts = [float(x) for x in grp["start_s"]]
        ends = [float(x) for x in grp["end_s"]]
        slots = pack_intervals(starts, ends)
        rows = zip(slots, starts, ends, grp["phase"].astype(str), grp["round"].astype(int),
                   grp["iteration"].astype(int), grp["device"].astype(str),
                   grp["bytes"].astype(float), grp["flops"].astype(float), strict=True)
        for slot, start, end, phase, rnd, it, dev, nbytes, flops in rows:
            tid_here = tid + SPILL_TID_STEP * slot
            threads[(pid, tid_here)] = name if slot == 0 else f"{name} {slot + 1}"
            args: dict[str, Any] = {"phase": phase, "round": rnd, "iteration": it,
                                    "device": dev}
            if nbytes:
                args["bytes"] = nbytes
            if flops:
                args["flops"] = flops
            events.append({
                "ph": "X", "name": phase, "cat": resource, "pid": pid, "tid": tid_here,
                "ts": start * US_PER_S, "dur": max(end - start, 0.0) * US_PER_S, "args": args,
            })
    for (pid, tid), name in sorted(threads.items()):
        events.append(_meta("thread_name", pid, tid, name))
        events.append(_meta("thread_sort_index", pid, tid, tid))

    if memory_df is not None and not memory_df.empty:
        events += _memory_counters(memory_df, pids)
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": metadata or {}}


def _memory_counters(memory: pd.DataFrame, pids: dict[str, int]) -> list[dict[str, Any]]:
    """One counter event per owner per distinct event time: the level (GB) of every kind."""
    out: list[dict[str, Any]] = []
    for owner, m in memory.sort_values("seq").groupby("owner", sort=False):
        pid = pids.get(str(owner))
        if pid is None:
            continue
        kinds = list(dict.fromkeys(str(k) for k in m["kind"]))
        level = dict.fromkeys(kinds, 0.0)
        last: dict[float, dict[str, float]] = {}
        for time_s, kind, delta in zip(m["time_s"], m["kind"], m["delta_bytes"], strict=True):
            level[str(kind)] += float(delta)
            last[float(time_s)] = {k: round(max(v, 0.0) / 1e9, 9) for k, v in level.items()}
        for time_s, values in last.items():
            out.append({"ph": "C", "name": "memory GB", "pid": pid, "tid": 0,
                        "ts": time_s * US_PER_S, "args": values})
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
