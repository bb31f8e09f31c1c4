"""The figure functions: the data behind each figure is checked, then the picture."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sfsim.engine import MEMORY_KINDS
from sfsim.export import pack_intervals
from sfsim.plotting import (
    critical_path,
    default_owners,
    gantt,
    gantt_bars,
    load_run,
    memory_levels,
    memory_timeline,
    peak_table,
    round_breakdown,
    round_table,
)
from sfsim.plotting.style import phase_colors

from .conftest import image_stats


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=80)
    return path


def test_gantt_has_one_lane_per_device_plus_server(run_dir: Path, tmp_path: Path) -> None:
    run = load_run(run_dir)
    fig, data = gantt(run.trace, run.devices, round_bounds=run.round_bounds)
    assert data.lanes == [*run.devices, "server"]
    assert len(data.lanes) == run.summary["n_devices"] + 1
    for dev in run.devices:
        assert data.rows[dev] == ["compute", "uplink", "downlink"]
    assert data.rows["server"] == ["busy", "queue"]
    assert len(data.bars) == len(run.trace)  # every span is a bar
    # server spans (forward, backward, aggregation, queue waits) all sit in the server lane
    on_server = run.trace["resource"].isin(["server", "server_queue"]).sum()
    assert (data.bars["lane"] == "server").sum() == on_server
    w, h, ink, std = image_stats(_save(fig, tmp_path / "g.png"))
    assert w > 600 and h > 300 and ink > 0.05 and std > 0.05


def test_gantt_overlapping_spans_get_sub_rows() -> None:
    trace = pd.DataFrame({
        "round": [0, 0, 0], "iteration": [0, 0, 0], "device": ["a", "b", "c"],
        "phase": ["queue_wait"] * 3, "resource": ["server_queue"] * 3,
        "start_s": [0.0, 1.0, 3.0], "end_s": [2.0, 3.0, 4.0], "bytes": 0.0, "flops": 0.0,
    })
    data = gantt_bars(trace, ["a", "b", "c"])
    q = data.bars.set_index("device")
    assert list(q["slot"]) == [0, 1, 0]  # b overlaps a; c starts when b ends and a is free
    assert set(q["n_slots"]) == {2}
    assert q.loc["a", "y"] != q.loc["b", "y"]


def test_new_phases_and_resources_get_colours_and_rows() -> None:
    trace = pd.DataFrame({
        "round": [0, 0], "iteration": [0, 0], "device": ["a", "a"],
        "phase": ["device_fwd", "cache_fill"], "resource": ["device", "cache_link"],
        "start_s": [0.0, 1.0], "end_s": [1.0, 2.0], "bytes": 0.0, "flops": 0.0,
    })
    data = gantt_bars(trace)
    assert data.rows["a"] == ["compute", "uplink", "downlink", "cache_link"]
    colors = phase_colors(["device_fwd", "cache_fill", "zz_new"])
    assert len(set(colors.values())) == 3
    assert colors == phase_colors(["zz_new", "cache_fill", "device_fwd"])  # stable


def test_memory_levels_stack_exactly_the_kinds_present(run_dir: Path, tmp_path: Path) -> None:
    run = load_run(run_dir)
    owners = default_owners(run.devices)
    assert owners == ["server", *run.devices[:4]]
    fig, levels = memory_timeline(run.memory, owners, end_s=run.end_s)
    for owner in owners:
        m = run.memory[run.memory["owner"] == owner]
        table = levels[owner]
        assert set(table.columns) == set(m["kind"])
        assert set(table.columns) <= set(MEMORY_KINDS)
        # the stacked top is the owner's total level after the last event of each instant
        total = m.sort_values("seq").groupby("time_s")["level_bytes"].last()
        stacked = table.sum(axis=1).loc[total.index]
        assert np.allclose(stacked.to_numpy(), total.to_numpy(), rtol=1e-9, atol=1.0)
        assert table.index[-1] == pytest.approx(run.end_s)
    assert {"weights", "activations", "boundary", "overhead"} <= set(levels["server"].columns)
    w, h, ink, std = image_stats(_save(fig, tmp_path / "m.png"))
    assert w > 600 and h > 400 and ink > 0.1 and std > 0.05


def test_peak_table_matches_summary_breakdown(run_dir: Path) -> None:
    run = load_run(run_dir)
    table = peak_table(run.memory)
    want = run.summary["server_peak_breakdown"]
    got = {k: v for k, v in table.loc["server"].items() if v}
    assert got == pytest.approx(want)
    assert table.loc["server"].sum() == pytest.approx(run.summary["server_peak_bytes"])


def test_memory_levels_of_unknown_owner_is_empty(run_dir: Path) -> None:
    assert memory_levels(load_run(run_dir).memory, "nobody").empty


def test_critical_path_tiles_each_round(run_dir: Path, tmp_path: Path) -> None:
    run = load_run(run_dir)
    fig, table = round_breakdown(run.trace, run.round_bounds)
    assert list(table.index) == list(range(run.summary["rounds"]))
    assert table.sum(axis=1).to_numpy() == pytest.approx(run.summary["round_s"])
    assert (table["uplink"] > 0).all() and (table["device compute"] > 0).all()
    start, end = run.round_bounds[0]
    path = critical_path(run.trace[run.trace["round"] == 0], start, end)
    assert path["start_s"].min() == pytest.approx(start)
    assert path["end_s"].max() == pytest.approx(end)
    assert np.allclose(path["start_s"].to_numpy()[:-1], path["end_s"].to_numpy()[1:])
    w, h, ink, std = image_stats(_save(fig, tmp_path / "r.png"))
    assert w > 300 and h > 200 and ink > 0.05 and std > 0.05


def test_busy_breakdown_sums_span_time(run_dir: Path) -> None:
    run = load_run(run_dir)
    table = round_table(run.trace, run.round_bounds, how="busy")
    assert "idle" not in table.columns
    total = float((run.trace["end_s"] - run.trace["start_s"]).sum())
    assert table.to_numpy().sum() == pytest.approx(total)
    with pytest.raises(ValueError, match="critical"):
        round_table(run.trace, how="nope")


def test_critical_path_charges_gaps_to_idle() -> None:
    trace = pd.DataFrame({
        "round": [0, 0], "iteration": [0, 0], "device": ["a", "a"],
        "phase": ["device_fwd", "uplink_activations"], "resource": ["device", "uplink"],
        "start_s": [0.0, 2.0], "end_s": [1.0, 3.0], "bytes": 0.0, "flops": 0.0,
    })
    table = round_table(trace, [(0.0, 4.0)])
    assert table.loc[0, "idle"] == pytest.approx(2.0)
    assert table.loc[0, "device compute"] == pytest.approx(1.0)
    assert table.loc[0, "uplink"] == pytest.approx(1.0)


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 10)), max_size=40))
def test_pack_intervals_never_overlaps(spans: list[tuple[float, float]]) -> None:
    starts = [s for s, _ in spans]
    ends = [s + d for s, d in spans]
    slots = pack_intervals(starts, ends)
    assert len(slots) == len(spans)
    for slot in set(slots):
        mine = sorted((starts[i], ends[i]) for i in range(len(spans)) if slots[i] == slot)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(mine))


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0.001, 10)), min_size=1, max_size=40))
def test_pack_intervals_uses_the_fewest_slots(spans: list[tuple[float, float]]) -> None:
    starts = [s for s, _ in spans]
    ends = [s + d for s, d in spans]
    slots = pack_intervals(starts, ends)
    # the fewest possible = the most intervals open at one instant (touching ones do not overlap)
    most = max(sum(1 for s, e in zip(starts, ends, strict=True) if s <= t < e) for t in starts)
    assert max(slots) + 1 == most
