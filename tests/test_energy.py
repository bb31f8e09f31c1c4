"""Energy (sfsim/energy.py): power × time per device, the server, and per round, checked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sfsim.costs import AnalyticCostModel, Op, Workload, get_arch
from sfsim.energy import _merged, _weighted_overlap
from sfsim.errors import InputError
from sfsim.run import resolve, simulate
from sfsim.scenario import parse_scenario

POWER = {"dev-fast": (12.0, 2.0), "dev-slow": (5.0, 0.5), "srv": (300.0, 40.0)}
RADIO = {"tx_w": 2.2, "rx_w": 1.1}


def _powered(tiny: dict) -> dict:
    for name, (busy, idle) in POWER.items():
        tiny["processors"][name].update(power_busy_w=busy, power_idle_w=idle)
    tiny["channel"]["radio"] = dict(RADIO)
    return tiny


def test_energy_is_power_times_busy_time_on_a_hand_checked_run(tiny) -> None:
    """Busy times from the analytic cost model and the fixed-rate links, worked out here."""
    res = simulate(resolve(parse_scenario(_powered(tiny))))
    s = res.summary
    arch, cm = get_arch("gpt2"), AnalyticCostModel()
    from sfsim.costs.processors import processor_from_dict

    procs = {n: processor_from_dict(n, p) for n, p in tiny["processors"].items()}
    L, h, rank, seq = arch.n_layers, arch.hidden, 4, 32

    def t(op: Op, b: int, proc) -> float:
        return cm.time_s(op, Workload(arch, b, seq, "fp32", rank, ("q", "v")), proc)

    devs = {"a": (2, 2, "dev-fast", 100e6), "b": (1, 6, "dev-slow", 10e6)}
    down_bps = 100e6
    makespan = s["makespan_s"]  # checked by hand in tests/test_engine.py
    expected_total = 0.0
    adapters = {n: c * rank * 4 * h * 4 for n, (_, c, _, _) in devs.items()}
    server_busy = 0.0
    for name, (b, c, pname, up_bps) in devs.items():
        proc = procs[pname]
        compute = (t(Op.EMBED_FWD, b, proc) + c * t(Op.BLOCK_FWD, b, proc)
                   + t(Op.BLOCK_BWD_NO_INPUT_GRAD, b, proc) + (c - 1) * t(Op.BLOCK_BWD, b, proc)
                   + c * t(Op.OPT_STEP, b, proc))
        boundary, labels = b * seq * h * 4, b * seq * 8
        uplink_s = 8 * (boundary + labels) / up_bps + 8 * adapters[name] / up_bps
        downlink_s = 8 * boundary / down_bps + 8 * adapters[name] / down_bps
        busy_w, idle_w = POWER[pname]
        parts = {
            "compute_energy_j": busy_w * compute,
            "idle_energy_j": idle_w * (makespan - compute),
            "radio_tx_energy_j": RADIO["tx_w"] * uplink_s,
            "radio_rx_energy_j": RADIO["rx_w"] * downlink_s,
        }
        got = s["devices"][name]
        for key, value in parts.items():
            assert got[key] == pytest.approx(value, rel=1e-9), (name, key)
        assert got["energy_j"] == pytest.approx(sum(parts.values()), rel=1e-9)
        expected_total += sum(parts.values())
        n = L - c
        srv = procs["srv"]
        server_busy += (n * t(Op.BLOCK_FWD, b, srv) + t(Op.HEAD_FWD, b, srv)
                        + t(Op.HEAD_BWD, b, srv) + n * t(Op.BLOCK_BWD, b, srv)
                        + n * t(Op.OPT_STEP, b, srv))
    server_busy += 2 * (sum(adapters.values()) / 4) / 10e12  # FedAvg on the server
    busy_w, idle_w = POWER["srv"]
    server = busy_w * server_busy + idle_w * (makespan - server_busy)
    assert s["server_energy_j"] == pytest.approx(server, rel=1e-9)
    assert s["total_energy_j"] == pytest.approx(expected_total + server, rel=1e-9)
    assert s["round_energy_j"] == [pytest.approx(expected_total + server, rel=1e-9)]


def test_rounds_add_up_to_the_total_and_power_scales_energy(tiny) -> None:
    tiny = _powered(tiny)
    tiny["training"]["rounds"] = 3
    s = simulate(resolve(parse_scenario(tiny))).summary
    assert len(s["round_energy_j"]) == 3
    assert sum(s["round_energy_j"]) == pytest.approx(s["total_energy_j"], rel=1e-9)
    assert s["total_energy_j"] == pytest.approx(s["device_energy_j"] + s["server_energy_j"])
    doubled = _powered(parse_scenario(tiny).model_dump(mode="json"))
    for p in doubled["processors"].values():
        p["power_busy_w"] *= 2
        p["power_idle_w"] *= 2
    doubled["channel"]["radio"] = {k: 2 * v for k, v in RADIO.items()}
    s2 = simulate(resolve(parse_scenario(doubled))).summary
    assert s2["makespan_s"] == s["makespan_s"]  # power never changes a time
    assert s2["total_energy_j"] == pytest.approx(2 * s["total_energy_j"], rel=1e-12)


def test_zero_radio_power_leaves_only_processor_energy(tiny) -> None:
    tiny = _powered(tiny)
    tiny["channel"]["radio"] = {"tx_w": 0.0, "rx_w": 0.0}
    s = simulate(resolve(parse_scenario(tiny))).summary
    for d in s["devices"].values():
        assert d["radio_tx_energy_j"] == 0.0 == d["radio_rx_energy_j"]
        assert d["energy_j"] == pytest.approx(d["compute_energy_j"] + d["idle_energy_j"])


def test_overlapping_server_spans_count_once() -> None:
    starts, ends = np.array([0.0, 1.0, 5.0]), np.array([2.0, 3.0, 6.0])
    s, e = _merged(starts, ends)
    assert s.tolist() == [0.0, 5.0] and e.tolist() == [3.0, 6.0]
    # overlap of weighted spans with windows: [0,2] w=1 and [1,4] w=10, windows [0,1], [1,4]
    got = _weighted_overlap(np.array([0.0, 1.0]), np.array([2.0, 4.0]), np.array([1.0, 10.0]),
                            [(0.0, 1.0), (1.0, 4.0)])
    assert got.tolist() == pytest.approx([1.0, 1.0 + 30.0])


def test_sfl_v1_server_energy_uses_the_union_of_its_spans(tiny) -> None:
    tiny = _powered(tiny)
    tiny["training"]["scheme"] = "sfl_v1"
    res = simulate(resolve(parse_scenario(tiny)))
    srv = res.trace[res.trace["resource"] == "server"]
    s, e = _merged(srv["start_s"].to_numpy(float), srv["end_s"].to_numpy(float))
    busy = float((e - s).sum())
    assert busy == pytest.approx(res.summary["server_busy_s"], rel=1e-12)
    busy_w, idle_w = POWER["srv"]
    mk = res.summary["makespan_s"]
    assert res.summary["server_energy_j"] == pytest.approx(busy_w * busy + idle_w * (mk - busy))


@pytest.mark.parametrize(("radio", "problem"), [
    ({"tx_w": -1.0}, "greater than or equal"),
    ({"tx_w": 1e9}, "less than or equal"),
    ({"watts": 1.0}, "Extra inputs"),
])
def test_radio_power_is_bounded(tiny, radio, problem) -> None:
    tiny["channel"]["radio"] = radio
    with pytest.raises(InputError) as exc:
        parse_scenario(tiny)
    assert "channel.radio" in str(exc.value)


def test_idle_above_busy_is_refused(tiny) -> None:
    tiny["processors"]["srv"].update(power_busy_w=10.0, power_idle_w=20.0)
    with pytest.raises(InputError, match="power_idle_w"):
        parse_scenario(tiny)



def test_round_breakdown_shows_energy_per_round(tiny, tmp_path) -> None:
    from sfsim.plotting.breakdown import round_breakdown
    from sfsim.plotting.cli import plot_run
    from sfsim.plotting.rundir import load_run
    from sfsim.results import write_run_folder

    tiny = _powered(tiny)
    tiny["training"]["rounds"] = 2
    res = simulate(resolve(parse_scenario(tiny)))
    bounds = [tuple(b) for b in res.summary["round_bounds_s"]]
    fig, table = round_breakdown(res.trace, bounds, round_energy_j=res.summary["round_energy_j"])
    assert len(fig.axes) == 2
    assert table["energy_j"].tolist() == res.summary["round_energy_j"]
    fig, table = round_breakdown(res.trace, bounds)  # without energy: as before
    assert len(fig.axes) == 1 and "energy_j" not in table
    fig, table = round_breakdown(res.trace, bounds, round_energy_j=["x", None])  # damaged
    assert len(fig.axes) == 1
    write_run_folder(tmp_path / "run", res)
    paths = plot_run(load_run(tmp_path / "run"), tmp_path / "plots", figures=["rounds"])
    assert [p.name for p in paths] == ["rounds.png"] and paths[0].stat().st_size > 0


def test_population_counts_the_devices_that_took_part(tiny) -> None:
    tiny = _powered(tiny)
    tiny.pop("devices")
    tiny["fleet"] = {"count": 50, "mix": {"dev-fast": 2, "dev-slow": 1}, "cut": [1, 2],
                     "uplink_mbps": 50, "overhead_mb": 0, "participants": 4}
    tiny["training"]["rounds"] = 3
    s = simulate(resolve(parse_scenario(tiny))).summary
    took_part = set(s["devices"])
    assert 4 <= len(took_part) <= 12
    assert all("energy_j" in d and d["energy_j"] > 0 for d in s["devices"].values())
    assert s["device_energy_j"] == pytest.approx(
        sum(d["energy_j"] for d in s["devices"].values()), rel=1e-12)
    # per round, only the round's participants compute; idle runs over every counted device
    assert sum(s["round_energy_j"]) == pytest.approx(s["total_energy_j"], rel=1e-9)


@pytest.mark.parametrize("scheme", ["memsfl", "sfl_v1", "fedlora"])
def test_span_energies_add_up_to_the_summary(tiny, scheme) -> None:
    from sfsim.energy import span_energy_j
    from sfsim.world import build_world

    tiny = _powered(tiny)
    tiny["training"]["scheme"] = scheme
    s = resolve(parse_scenario(tiny))
    res = simulate(s)
    e = span_energy_j(res.trace, build_world(s))
    assert len(e) == len(res.trace) and (e >= 0).all()
    for dev, d in res.summary["devices"].items():
        mine = e[(res.trace["device"] == dev) & (res.trace["resource"] != "server")
                 & (res.trace["resource"] != "server_queue")].sum()
        active = d["compute_energy_j"] + d["radio_tx_energy_j"] + d["radio_rx_energy_j"]
        assert mine == pytest.approx(active, rel=1e-9)
    server = e[res.trace["resource"] == "server"].sum()
    assert server == pytest.approx(res.summary["server_compute_energy_j"], rel=1e-9)


def test_the_trace_carries_each_spans_energy(tiny, tmp_path) -> None:
    """energy_j in Run.trace, trace.parquet and trace.json's args, adding up to the summary."""
    import json

    import sfsim

    run = sfsim.run(_powered(tiny))
    t = run.trace
    assert "energy_j" in t.columns and (t["energy_j"] >= 0).all()
    for dev, d in run.summary["devices"].items():
        mine = t.loc[(t["device"] == dev) & t["resource"].isin(["device", "uplink", "downlink"]),
                     "energy_j"].sum()
        assert mine == pytest.approx(d["compute_energy_j"] + d["radio_tx_energy_j"]
                                     + d["radio_rx_energy_j"], rel=1e-9)
    folder = run.write(tmp_path / "run")
    back = sfsim.load_run(folder)
    pd.testing.assert_series_equal(back.trace["energy_j"], t["energy_j"], check_names=False)
    events = json.loads((folder / "trace.json").read_text())["traceEvents"]
    spans = [e for e in events if e.get("ph") == "X"]
    assert sum(e["args"].get("energy_j", 0.0) for e in spans) == pytest.approx(
        float(t["energy_j"].sum()), rel=1e-9)
