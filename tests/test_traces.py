"""Trace files (sfsim/traces.py): piecewise integration by hand, strict reading, the FedScale
importer with its safe unpickler, and runs that follow a compute trace."""

from __future__ import annotations

import copy
import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sfsim.errors import InputError
from sfsim.run import resolve, simulate
from sfsim.scenario import load_scenario, parse_scenario
from sfsim.traces import (
    Piecewise,
    SpeedProfile,
    TraceLink,
    load_availability,
    load_links,
    load_speed,
)
from sfsim.traces_cli import import_fedscale, load_plain_pickle
from sfsim.world import build_world


def _csv(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ---- piecewise integration, checked by hand -----------------------------------------------------


def test_speed_across_pieces_by_hand():
    # speed 1 on [0, 2), 0.5 from 2 on
    prof = SpeedProfile(Piecewise(np.array([0.0, 2.0]), np.array([1.0, 0.5])))
    assert prof.duration_s(1.0, 0.0) == 1.0  # inside the first piece
    assert prof.duration_s(3.0, 0.0) == 4.0  # 2 s of work by t=2, then 1 s of work at half speed
    assert prof.duration_s(1.0, 2.5) == 2.0  # all at half speed
    assert prof.duration_s(1.0, 1.5) == 1.5  # 0.5 at full speed, 0.5 at half
    assert prof.duration_s(0.0, 5.0) == 0.0


def test_speed_with_repeat_by_hand():
    # period 4: speed 1 on [0, 2), 0.5 on [2, 4): 3 s of work per period
    prof = SpeedProfile(Piecewise(np.array([0.0, 2.0]), np.array([1.0, 0.5]), 4.0))
    assert prof.duration_s(3.0, 0.0) == 4.0  # exactly one period
    assert prof.duration_s(4.0, 0.0) == 5.0  # one period, then 1 s at full speed
    assert prof.duration_s(7.0, 1.0) == 9.0  # 1 + 1 (to t=4), one whole period (3), then 2
    assert prof.duration_s(1.0, 3.5) == 1.25  # 0.25 work by t=4, then 0.75 at full speed
    assert prof.duration_s(0.5, 6.5) == 1.0  # t=6.5 is phase 2.5: half speed


def test_speed_matches_a_fine_time_step():
    rng = np.random.default_rng(0)
    for period in (None, 4.0):
        pw = Piecewise(np.array([0.0, 1.0, 2.5]), np.array([2.0, 0.5, 1.5]), period)
        prof = SpeedProfile(pw)
        for _ in range(10):
            work, start = rng.uniform(0, 8), rng.uniform(0, 10)
            t, done, dt = start, 0.0, 1e-4
            while done < work:
                done += pw.value_at(t) * dt
                t += dt
            assert prof.duration_s(work, start) == pytest.approx(t - start, abs=2e-3)


def test_constant_speed_one_changes_nothing():
    prof = SpeedProfile(Piecewise(np.array([0.0]), np.array([1.0])))
    for s, t in ((0.1, 0.2), (1e-9, 123.456), (3.3, 0.7)):
        assert prof.duration_s(s, t) == s  # bit for bit, not start + s - start


def test_link_across_pieces_by_hand(tmp_path):
    p = _csv(tmp_path, "l.csv", "device,time_s,uplink_mbps,downlink_mbps\n"
             "a,0,8,16\na,1,4,16\n")
    up, down = load_links(p, latency_s=0.1)["a"]
    # 1.5 MB = 12 Mbit from t=0.1: 7.2 Mbit by t=1 at 8 Mbit/s, 4.8 Mbit at 4 Mbit/s = 1.2 s
    assert up.duration_s(1.5e6, 0.0) == pytest.approx(2.2, rel=1e-12)
    assert down.duration_s(1.5e6, 0.0) == pytest.approx(0.1 + 12 / 16, rel=1e-12)
    assert up.duration_s(0, 3.0) == 0.0
    # planning rate: the time average from 0 to the last change (no repeat): the first piece
    assert up.expected_rate_bps() == 8e6


def test_link_with_repeat_by_hand():
    # 8 Mbit/s on [0, 1), 4 Mbit/s on [1, 3), period 3: 16 Mbit per period
    link = TraceLink(Piecewise(np.array([0.0, 1.0]), np.array([8e6, 4e6]), 3.0))
    assert link.expected_rate_bps() == pytest.approx(16e6 / 3)
    # 40 Mbit from t=0: two periods (32 Mbit, t=6), then 8 Mbit in the first piece: t=7
    assert link.duration_s(5e6, 0.0) == pytest.approx(7.0, rel=1e-12)
    # from t=2.5 (phase 2.5): 2 Mbit by t=3, then 8 Mbit by t=4
    assert link.duration_s(1.25e6, 2.5) == pytest.approx(1.5, rel=1e-12)
    assert link.rate_bps(3.5) == 8e6 and link.rate_bps(5.0) == 4e6


def test_repeat_reads_period_from_file(tmp_path):
    p = _csv(tmp_path, "c.csv", "device,time_s,speed,period_s\nb,0,1,4\nb,2,0.5,4\n")
    once = load_speed(p, repeat=False)["b"]
    loop = load_speed(p, repeat=True)["b"]
    assert once.duration_s(3.0, 4.0) == 6.0  # half speed holds after t=2
    assert loop.duration_s(3.0, 4.0) == 4.0  # t=4 starts a new period at full speed


# ---- bad files ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("device,time_s\nb,0\n", "speed", "missing column"),
        ("device,time_s,speed\nb,0,nan\n", "speed, row 1", "not a finite number"),
        ("device,time_s,speed\nb,0,1\nb,2,\n", "speed, row 2", "not a finite number"),
        ("device,time_s,speed\nb,0,1\nb,3,1\nb,2,1\n", "time_s, row 3", "increase strictly"),
        ("device,time_s,speed\nb,0,1\nb,2,-1\n", "speed, row 2", "at least 0.001"),
        ("device,time_s,speed\nb,-1,1\n", "time_s, row 1", "at least 0"),
        ("device,time_s,speed\nb,1,1\n", "time_s, row 1", "starts at time_s = 0"),
        ("device,time_s,speed,extra\nb,0,1,2\n", "extra", "unknown column"),
        ("device,time_s,speed\nb,0,inf\n", "speed, row 1", "not a finite number"),
        ("device,time_s,speed\nb/../x,0,1\n", "device, row 1", "may use only"),
    ],
)
def test_bad_compute_files_name_file_column_row(tmp_path, text, key, words):
    p = _csv(tmp_path, "c.csv", text)
    with pytest.raises(InputError) as err:
        load_speed(p)
    assert err.value.file == str(p)
    assert err.value.key == key
    assert words in err.value.problem


def test_not_a_csv_and_unknown_format(tmp_path):
    p = tmp_path / "c.csv"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe garbage")
    with pytest.raises(InputError, match=r"not a CSV|not a readable CSV|missing column"):
        load_speed(p)
    q = _csv(tmp_path, "c.txt", "device,time_s,speed\nb,0,1\n")
    with pytest.raises(InputError, match="unknown trace format"):
        load_speed(q)
    with pytest.raises(InputError, match="not a regular file"):
        load_speed(tmp_path)
    with pytest.raises(InputError, match="no such file"):
        load_speed(tmp_path / "missing.csv")


def test_repeat_needs_a_period(tmp_path):
    p = _csv(tmp_path, "c.csv", "device,time_s,speed\nb,0,1\nb,2,0.5\n")
    with pytest.raises(InputError) as err:
        load_speed(p, repeat=True)
    assert err.value.key == "period_s"
    q = _csv(tmp_path, "d.csv", "device,time_s,speed,period_s\nb,0,1,2\nb,2,0.5,2\n")
    with pytest.raises(InputError, match="after its last change"):
        load_speed(q, repeat=True)


def test_availability_windows(tmp_path):
    p = _csv(tmp_path, "a.csv", "device,start_s,end_s,period_s\n"
             "a,0,5,20\na,5,8,20\na,12,20,20\nb,1,2,20\n")
    av = load_availability(p, repeat=True)
    assert av["a"].windows == ((0.0, 8.0), (12.0, 20.0))  # touching windows merged
    assert av["a"].online(7.9) and not av["a"].online(8.0) and av["a"].online(21.0)
    # repeated: the window over the period's end joins the next period's first one
    assert av["a"].windows_until(30.0) == [(0.0, 8.0), (12.0, 28.0)]
    once = load_availability(p, repeat=False)
    assert not once["a"].online(21.0)  # offline after its last window
    bad = _csv(tmp_path, "b.csv", "device,start_s,end_s\na,0,5\na,3,8\n")
    with pytest.raises(InputError) as err:
        load_availability(bad)
    assert err.value.key == "start_s, row 2"
    empty = _csv(tmp_path, "e.csv", "device,start_s,end_s\na,5,5\n")
    with pytest.raises(InputError) as err:
        load_availability(empty)
    assert err.value.key == "end_s, row 1"


def test_parquet_trace(tmp_path):
    p = tmp_path / "c.parquet"
    pd.DataFrame({"device": ["b", "b"], "time_s": [0.0, 2.0], "speed": [1.0, 0.5]}).to_parquet(p)
    assert load_speed(p)["b"].duration_s(3.0, 0.0) == 4.0
    q = tmp_path / "d.parquet"
    pd.DataFrame({"device": ["b"], "time_s": [0.0], "speed": ["fast"]}).to_parquet(q)
    with pytest.raises(InputError) as err:
        load_speed(q)
    assert err.value.key == "speed" and err.value.file == str(q)


# ---- the scenario's traces ----------------------------------------------------------------------


def test_unknown_device_is_an_input_error(tiny, tmp_path):
    p = _csv(tmp_path, "c.csv", "device,time_s,speed\nzz,0,1\n")
    tiny["traces"] = {"compute": str(p)}
    with pytest.raises(InputError) as err:
        build_world(parse_scenario(tiny))
    assert err.value.file == str(p) and "'zz' is not in the scenario" in err.value.problem


def test_paths_are_relative_to_the_scenario_file(tiny, tmp_path, write_yaml):
    sub = tmp_path / "traces"
    sub.mkdir()
    _csv(sub, "c.csv", "device,time_s,speed\nb,0,0.5\n")
    tiny["traces"] = {"compute": "traces/c.csv"}
    s = load_scenario(write_yaml(tiny))
    assert s.traces.compute == str(sub / "c.csv")
    world = build_world(s)
    assert world.device("b").speed_profile is not None
    assert world.device("a").speed_profile is None


def test_cli_reports_a_bad_trace_with_status_2(tiny, tmp_path, write_yaml, cli):
    _csv(tmp_path, "c.csv", "device,time_s,speed\nb,0,1\nb,1,abc\n")
    tiny["traces"] = {"compute": "c.csv"}
    result = cli("validate", write_yaml(tiny))
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'c.csv'}: speed, row 2: 'abc' is not a finite number" in (
        result.output)


def _spans(run, device):
    t = run.trace
    t = t[(t.device == device) & (t.resource == "device")]
    return {(r.round, r.iteration, r.phase): (r.start_s, r.end_s) for r in t.itertuples()}


def test_halved_speed_after_T_slows_later_spans(tiny, tmp_path):
    tiny["training"]["rounds"] = 4
    base = simulate(resolve(parse_scenario(copy.deepcopy(tiny))))
    T = 0.5
    p = _csv(tmp_path, "c.csv", f"device,time_s,speed\nb,0,1\nb,{T},0.5\n")
    tiny["traces"] = {"compute": str(p)}
    slow = simulate(resolve(parse_scenario(tiny)))
    nominal, traced = _spans(base, "b"), _spans(slow, "b")
    assert nominal.keys() == traced.keys()
    before = after = 0
    for key, (s, e) in traced.items():
        d0 = nominal[key][1] - nominal[key][0]
        if e <= T:
            assert e - s == d0
            before += 1
        elif s >= T:
            assert e - s == pytest.approx(2 * d0, rel=1e-12)
            after += 1
    assert before and after
    # device a is not in the trace: its compute spans keep their nominal durations
    for key, (s, e) in _spans(slow, "a").items():
        s0, e0 = _spans(base, "a")[key]
        assert e - s == pytest.approx(e0 - s0, rel=1e-12)
    assert slow.summary["makespan_s"] > base.summary["makespan_s"]


def test_link_trace_replaces_the_channel(tiny, tmp_path):
    p = _csv(tmp_path, "l.csv", "device,time_s,uplink_mbps,downlink_mbps\na,0,1,2\n")
    tiny["traces"] = {"links": str(p)}
    run = simulate(resolve(parse_scenario(tiny)))
    t = run.trace
    ups = t[(t.device == "a") & (t.resource == "uplink")]
    for r in ups.itertuples():
        assert r.end_s - r.start_s == pytest.approx(8 * r.bytes / 1e6, rel=1e-12)
    downs = t[(t.device == "b") & (t.resource == "downlink") & (t.bytes > 0)]
    for r in downs.itertuples():  # b keeps the channel's 100 Mbit/s
        assert r.end_s - r.start_s == pytest.approx(8 * r.bytes / 100e6, rel=1e-12)


def test_world_availability(tiny, tmp_path):
    p = _csv(tmp_path, "a.csv", "device,start_s,end_s\nb,0,1\nb,2,3\n")
    tiny["traces"] = {"availability": str(p)}
    world = build_world(parse_scenario(tiny))
    assert world.availability("b") == [(0.0, 1.0), (2.0, 3.0)]
    assert world.availability("a") is None
    assert world.availability(world.device("b")) == [(0.0, 1.0), (2.0, 3.0)]


def test_a_speed_trace_has_no_closed_form(tiny, tmp_path):
    tiny["scheduler"]["name"] = "schrage"  # offline, replayed strictly: a closed form
    assert simulate(resolve(parse_scenario(tiny)), fast="auto").summary["engine_path"] == (
        "closed_form")
    p = _csv(tmp_path, "c.csv", "device,time_s,speed\nb,0,0.5\n")
    tiny["traces"] = {"compute": str(p)}
    s = resolve(parse_scenario(tiny))
    assert simulate(s, fast="auto").summary["engine_path"] == "event"
    with pytest.raises(ValueError, match="compute-speed trace"):
        simulate(s, fast=True)


# ---- FedScale import ----------------------------------------------------------------------------


def _fedscale(tmp_path: Path) -> tuple[Path, Path]:
    cap = {101: {"computation": 100.0, "communication": 5000.0},
           102: {"computation": 50.0, "communication": 1000.0},
           103: {"computation": 200.0, "communication": 20000.0}}
    beh = {7: {"duration": 100, "inactive": [30, 80], "finish_time": 100, "active": [10, 50],
               "model": "x"},
           8: {"duration": 100, "inactive": [60, 60, 90], "finish_time": 120,
               "active": [0, 60, 60], "model": "y"},
           9: {"duration": 1, "inactive": [5], "finish_time": 10, "active": [1], "model": "z"}}
    c, b = tmp_path / "cap.pkl", tmp_path / "beh.pkl"
    c.write_bytes(pickle.dumps(cap))
    b.write_bytes(pickle.dumps(beh))
    return c, b


def test_fedscale_round_trip(tmp_path):
    c, b = _fedscale(tmp_path)
    out = tmp_path / "out"
    r = import_fedscale(c, b, out, reference_ms=100.0)
    assert r.devices == 3 and r.dropped_windows == 1 and r.merged_windows == 1
    speeds = load_speed(out / "compute.csv")
    clients = pd.read_csv(out / "clients.csv", dtype=str)
    by_dev = dict(zip(clients.device, clients.capacity_client, strict=True))
    ms = {"101": 100.0, "102": 50.0, "103": 200.0}
    for dev, prof in speeds.items():  # speed = reference / ms per sample
        assert prof.duration_s(1.0, 0.0) == pytest.approx(ms[by_dev[dev]] / 100.0)
    links = load_links(out / "links.csv")
    kbps = {"101": 5000.0, "102": 1000.0, "103": 20000.0}
    for dev, (up, down) in links.items():
        assert up.expected_rate_bps() == pytest.approx(kbps[by_dev[dev]] * 1024)
        assert down.expected_rate_bps() == up.expected_rate_bps()
    av = load_availability(out / "availability.csv", repeat=True)
    beh_of = dict(zip(clients.device, clients.behaviour_client, strict=True))
    dev7 = next(d for d, k in beh_of.items() if k == "7")
    dev8 = next(d for d, k in beh_of.items() if k == "8")
    assert av[dev7].windows == ((10.0, 30.0), (50.0, 80.0)) and av[dev7].period_s == 100.0
    assert av[dev8].windows == ((0.0, 90.0),)  # [0,60] and [60,90] merged, [60,60] dropped
    # a scenario with these ids (a generated fleet of 3, prefix dev) runs with all three files
    assert sorted(speeds) == ["dev0", "dev1", "dev2"]


def test_fedscale_sample_is_seeded_and_refuses_overwrite(tmp_path):
    c, b = _fedscale(tmp_path)
    import_fedscale(c, b, tmp_path / "x", devices=2, seed=5)
    import_fedscale(c, b, tmp_path / "y", devices=2, seed=5)
    for name in ("compute.csv", "links.csv", "availability.csv", "clients.csv"):
        assert (tmp_path / "x" / name).read_text() == (tmp_path / "y" / name).read_text()
    before = (tmp_path / "x" / "compute.csv").read_text()
    with pytest.raises(InputError, match="--overwrite"):
        import_fedscale(c, None, tmp_path / "x", devices=3, seed=1)
    assert (tmp_path / "x" / "compute.csv").read_text() == before


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_pickle_is_refused(tmp_path, cli):
    p = tmp_path / "evil.pkl"
    p.write_bytes(pickle.dumps({1: {"computation": _Boom(), "communication": 1.0}}))
    with pytest.raises(InputError, match="refused: the pickle asks for"):
        load_plain_pickle(p)
    result = cli("traces", "import-fedscale", "--capacity", p, "--out", tmp_path / "o")
    assert result.exit_code == 2 and "refused" in result.output
    assert not (tmp_path / "o").exists() and not Path("PWNED").exists()
    # a numpy array is a class too: refused, not built
    q = tmp_path / "np.pkl"
    q.write_bytes(pickle.dumps({1: {"computation": np.float64(1.0), "communication": 1.0}}))
    with pytest.raises(InputError, match="refused"):
        load_plain_pickle(q)
    r = tmp_path / "junk.pkl"
    r.write_bytes(b"not a pickle at all")
    with pytest.raises(InputError, match=r"not a readable pickle|refused"):
        load_plain_pickle(r)


def test_fedscale_cli(tmp_path, cli):
    c, b = _fedscale(tmp_path)
    result = cli("traces", "import-fedscale", "--capacity", c, "--behaviour", b,
                 "--out", tmp_path / "o", "--devices", "2", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "2 devices" in result.output
    bad = cli("traces", "import-fedscale", "--capacity", c, "--out", tmp_path / "p",
              "--devices", "9")
    assert bad.exit_code == 2 and "only 3 clients" in bad.output


# ---- the shipped synthetic traces ---------------------------------------------------------------

TRACES = Path(__file__).resolve().parents[1] / "scenarios" / "traces"


def test_make_traces_rewrites_the_same_files(tmp_path):
    from tests.conftest import load_module

    mod = load_module(TRACES / "make_traces.py", "make_traces")
    mod.main(tmp_path)
    for name in ("compute.csv", "links.csv", "availability.csv"):
        assert (tmp_path / name).read_bytes() == (TRACES / "synthetic" / name).read_bytes()


@pytest.mark.parametrize("name", ["compute_trace.yaml", "link_trace.yaml", "all_traces.yaml"])
def test_trace_scenarios_run_and_differ_from_nominal(name):
    s = load_scenario(TRACES / name)
    traced = simulate(resolve(s))
    nominal = simulate(resolve(s.model_copy(update={"traces": type(s.traces)()})))
    assert traced.summary["makespan_s"] != nominal.summary["makespan_s"]
    world = build_world(s)
    assert world.device("orin-nano").speed_profile is None  # not in any file: nominal


def test_sweep_base_and_set_paths(tiny, tmp_path, write_yaml, monkeypatch):
    from sfsim import api
    from sfsim.sweep import load_sweep

    (tmp_path / "base").mkdir()
    tiny["traces"] = {"compute": "c.csv"}
    base = write_yaml(tiny, "base/s.yaml")
    sweep = write_yaml({"base": "base/s.yaml", "grid": {"seed": [1, 2]}}, "sw.yaml")
    loaded = load_sweep(sweep)
    assert loaded.base["traces"]["compute"] == str(tmp_path / "base" / "c.csv")
    # --set: relative to the current folder, like any path given on the command line
    monkeypatch.chdir(tmp_path)
    s = api.load_scenario(base, overrides={"traces.compute": "other.csv"})
    assert s.traces.compute == str(tmp_path / "other.csv")
    assert api.load_scenario(base, overrides={"seed": 4}).traces.compute == str(
        tmp_path / "base" / "c.csv")


def test_bom_header_and_population_refused(tiny, tmp_path):
    p = tmp_path / "c.csv"
    p.write_bytes("device,time_s,speed\nb,0,0.5\n".encode("utf-8-sig"))
    assert load_speed(p)["b"].duration_s(1.0, 0.0) == 2.0
    tiny["devices"] = []
    tiny["fleet"] = {"count": 20, "mix": {"dev-fast": 1}, "participants": 2}
    tiny["traces"] = {"compute": str(p)}
    with pytest.raises(InputError, match=r"fleet\.participants"):
        build_world(parse_scenario(tiny))
