"""The critical path charges a wait at the server to the work that caused it (issue 10).

A request that waits in the server queue while the server serves another device is waiting for
that service: the round is as long as it is because of server work, not because of queueing.
Only a wait during which nothing else on the path finishes (the server idle, e.g. an offline plan
holding a request back) stays ``queue``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sfsim.plotting.breakdown import critical_path, round_table

ROOT = Path(__file__).resolve().parents[2]


def _trace(rows: list[tuple[str, str, str, float, float]]) -> pd.DataFrame:
    dev, phase, res, start, end = zip(*rows, strict=True)
    return pd.DataFrame({
        "round": 0, "iteration": 0, "device": list(dev), "phase": list(phase),
        "resource": list(res), "start_s": list(start), "end_s": list(end),
        "bytes": 0.0, "flops": 0.0,
    })


def test_wait_behind_a_busy_server_is_server_time() -> None:
    # a and b are both queued at t=0; the server serves a on [0, 1] and b on [1, 2].
    trace = _trace([
        ("a", "queue_wait", "server_queue", 0.0, 0.0),
        ("a", "server_fwd", "server", 0.0, 1.0),
        ("b", "queue_wait", "server_queue", 0.0, 1.0),
        ("b", "server_fwd", "server", 1.0, 2.0),
    ])
    table = round_table(trace, [(0.0, 2.0)])
    assert table.loc[0, "server"] == pytest.approx(2.0)
    assert table.loc[0, "queue"] == pytest.approx(0.0)


def test_wait_with_the_server_idle_stays_queue() -> None:
    # b arrives at 0 but is held until 1.5 while the server finished a at 1.0: 0.5 s is queue.
    trace = _trace([
        ("a", "server_fwd", "server", 0.0, 1.0),
        ("b", "queue_wait", "server_queue", 0.0, 1.5),
        ("b", "server_fwd", "server", 1.5, 2.5),
    ])
    path = critical_path(trace, 0.0, 2.5)
    by_cat = (path["end_s"] - path["start_s"]).groupby(path["category"]).sum()
    assert by_cat["server"] == pytest.approx(1.0)
    assert by_cat["queue"] == pytest.approx(1.5)


def test_p001_cached_rounds_are_server_time(tmp_path: Path) -> None:
    """p001 without round barriers (docs/async.md): once the last batch is in the cache, the
    server trains from the cache without idling, and the breakdown charges that to the server."""
    from sfsim.run import resolve, simulate
    from sfsim.scenario import load_scenario

    result = simulate(resolve(load_scenario(ROOT / "scenarios/papers/p001_fedmobillm.yaml")))
    trace = result.trace
    bounds = [(float(a), float(b)) for a, b in result.summary["round_bounds_s"]]
    table = round_table(trace, bounds)
    last_arrival = float(trace[trace["resource"] == "uplink"]["end_s"].max())
    start, end = bounds[-1]
    assert start < last_arrival < end
    after = trace[(trace["resource"] == "server") & (trace["start_s"] >= last_arrival - 1e-9)]
    busy = float((after["end_s"] - after["start_s"]).sum())
    assert busy == pytest.approx(end - last_arrival, rel=1e-6)  # the premise: never idle
    assert table.loc[len(bounds) - 1, "server"] >= busy * (1 - 1e-6)
