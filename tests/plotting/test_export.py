"""The Chrome Trace Event export: a schema check on the quickstart run's trace.json."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

from sfsim.export import RUN_WRITERS, chrome_trace, write_chrome_trace
from sfsim.plotting import load_run


@pytest.fixture(scope="module")
def doc(run_dir: Path) -> dict:
    return json.loads((run_dir / "trace.json").read_text())  # valid JSON, written by `sfsim run`


def test_every_run_folder_gets_a_trace_json() -> None:
    assert write_chrome_trace in RUN_WRITERS


def test_events_follow_the_trace_event_schema(doc: dict) -> None:
    events = doc["traceEvents"]
    assert events
    for e in events:
        assert {"ph", "ts", "pid", "tid", "name"} <= set(e), e
        assert e["ph"] in {"X", "M", "C"}
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert isinstance(e["ts"], int | float) and e["ts"] >= 0
        if e["ph"] == "X":
            assert isinstance(e["dur"], int | float) and e["dur"] >= 0
        if e["ph"] in {"M", "C"}:
            assert isinstance(e["args"], dict) and e["args"]


def test_one_process_per_device_and_one_for_the_server(doc: dict, run_dir: Path) -> None:
    run = load_run(run_dir)
    names = {e["pid"]: e["args"]["name"] for e in doc["traceEvents"]
             if e["ph"] == "M" and e["name"] == "process_name"}
    assert sorted(names.values()) == sorted(["server", *(f"device {d}" for d in run.devices)])
    threads = defaultdict(set)
    for e in doc["traceEvents"]:
        if e["ph"] == "M" and e["name"] == "thread_name":
            threads[names[e["pid"]]].add(e["args"]["name"])
    assert threads["server"] == {"busy", "queue"}
    for d in run.devices:
        assert threads[f"device {d}"] == {"compute", "uplink", "downlink"}


def test_spans_match_the_trace_in_microseconds(doc: dict, run_dir: Path) -> None:
    run = load_run(run_dir)
    spans = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert len(spans) == len(run.trace)
    end_us = max(e["ts"] + e["dur"] for e in spans)
    assert end_us == pytest.approx(run.summary["makespan_s"] * 1e6)
    total_us = sum(e["dur"] for e in spans)
    assert total_us == pytest.approx(float((run.trace["end_s"] - run.trace["start_s"]).sum()) * 1e6)


def test_complete_events_on_a_thread_never_overlap(doc: dict) -> None:
    by_thread = defaultdict(list)
    for e in doc["traceEvents"]:
        if e["ph"] == "X":
            by_thread[(e["pid"], e["tid"])].append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_thread.values():
        spans.sort()
        assert all(a[1] <= b[0] + 1e-6 for a, b in itertools.pairwise(spans))


def test_memory_counters_per_owner(doc: dict, run_dir: Path) -> None:
    run = load_run(run_dir)
    counters = [e for e in doc["traceEvents"] if e["ph"] == "C"]
    assert {e["pid"] for e in counters} == {e["pid"] for e in doc["traceEvents"]
                                            if e["ph"] == "M"}
    server_pid = next(e["pid"] for e in doc["traceEvents"]
                      if e["ph"] == "M" and e["args"].get("name") == "server")
    peak = max(sum(e["args"].values()) for e in counters if e["pid"] == server_pid)
    # counters hold the level after each instant; the ledger's peak can only be higher
    assert peak <= run.summary["server_peak_bytes"] / 1e9 + 1e-9
    assert peak > 0.5 * run.summary["server_peak_bytes"] / 1e9


def test_overlapping_spans_spill_to_numbered_threads() -> None:
    trace = pd.DataFrame({
        "round": [0, 0], "iteration": [0, 0], "device": ["a", "b"],
        "phase": ["queue_wait"] * 2, "resource": ["server_queue"] * 2,
        "start_s": [0.0, 0.5], "end_s": [1.0, 1.5], "bytes": 0.0, "flops": 0.0,
    })
    doc = chrome_trace(trace)
    names = sorted(e["args"]["name"] for e in doc["traceEvents"]
                   if e["ph"] == "M" and e["name"] == "thread_name")
    assert names == ["queue", "queue 2"]
    tids = {e["tid"] for e in doc["traceEvents"] if e["ph"] == "X"}
    assert len(tids) == 2


def test_empty_trace_gives_a_valid_document() -> None:
    doc = chrome_trace(pd.DataFrame(), pd.DataFrame())
    assert json.loads(json.dumps(doc))["traceEvents"][0]["name"] == "process_name"
