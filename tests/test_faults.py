"""Faults (sfsim/faults.py): dropouts, deadlines, partial aggregation, outages, re-planning."""

from __future__ import annotations

import copy
import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sfsim import faults
from sfsim.engine import SERVER, Sim
from sfsim.errors import InputError
from sfsim.faults import Episodes, RoundFaults
from sfsim.run import resolve, simulate
from sfsim.scenario import Scenario
from sfsim.world import Seeds, build_world
from tests.conftest import ROOT, TINY

SYNC_SCHEMES = ("memsfl", "sfl_v2", "splitlora", "sfl_v1", "fedlora")


def fleet(n: int = 5, *, scheme: str = "memsfl", rounds: int = 2, k: int = 2) -> dict[str, Any]:
    """TINY with ``n`` devices alternating fast / slow, ``rounds`` rounds of ``k`` iterations."""
    d = copy.deepcopy(TINY)
    proto = d["devices"]
    d["devices"] = [dict(proto[i % 2], id=f"d{i}", cut=2 + i % 3) for i in range(n)]
    d["training"] = {"scheme": scheme, "rounds": rounds, "local_iterations": k}
    return d


def run(d: dict[str, Any], **kw: Any) -> Any:
    return simulate(resolve(Scenario.model_validate(d)), **kw)


def by_round(events: Any, kind: str) -> dict[int, set[str]]:
    e = events[events["kind"] == kind]
    out: dict[int, set[str]] = {}
    for r, dev in zip(e["round"], e["device"], strict=True):
        out.setdefault(int(r), set()).add(str(dev))
    return out


# ---- no faults: nothing changes ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", SYNC_SCHEMES)
def test_zero_faults_change_nothing(scheme: str) -> None:
    d = fleet(scheme=scheme)
    plain = run(d)
    zero = copy.deepcopy(d)
    zero["faults"] = {"dropout": {"before": 0.0, "during": 0.0},
                      "link_outage": {"rate_per_hour": 0.0}}
    zero["training"]["aggregation"] = "all"
    same = run(zero)
    assert "faults" not in same.summary
    assert same.summary["round_s"] == plain.summary["round_s"]
    assert same.trace.equals(plain.trace)
    assert same.memory.equals(plain.memory)


def test_aggregation_all_with_deadline_is_refused() -> None:
    d = fleet()
    d["training"]["round_deadline_s"] = 1.0
    with pytest.raises(ValueError, match="aggregation: partial"):
        Scenario.model_validate(d)


@pytest.mark.parametrize("scheme", ["splitfrozen", "fedmobillm"])
def test_streaming_schemes_refuse_faults(scheme: str) -> None:
    d = fleet(scheme=scheme)
    d["faults"] = {"dropout": {"during": 0.5}}
    from sfsim.schemes import scheme_class

    if scheme_class(scheme).supports_faults:
        pytest.skip(f"{scheme} models faults now")
    with pytest.raises(InputError) as err:
        run(d)
    assert err.value.key == "faults.dropout"
    assert "link outages and server slowdowns apply" in err.value.problem


ANY_OUTAGE_AND_SLOWDOWN = {
    "link_outage": {"rate_per_hour": 1.0, "mean_duration_s": 1.0},
    "server_slowdown": {"rate_per_hour": 1.0, "mean_duration_s": 1.0, "factor": 3.0}}


def fixed_episodes(monkeypatch: pytest.MonkeyPatch, outage: list[tuple[float, float]],
                   server: list[tuple[float, float]]) -> None:
    """Every device's link outages and the server's slowdowns at the given windows."""
    from sfsim.faults import FaultPlan

    real_init = FaultPlan.__init__

    def init(self: FaultPlan, *args: Any, **kw: Any) -> None:
        real_init(self, *args, **kw)
        self.server = Episodes.fixed(server)

    monkeypatch.setattr(FaultPlan, "__init__", init)
    monkeypatch.setattr(FaultPlan, "outage",
                        lambda self, device: Episodes.fixed(outage))


@pytest.mark.parametrize("scheme", ["splitfrozen", "fedmobillm"])
def test_streaming_schemes_take_outages_and_slowdowns(scheme: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    d = fleet(3, scheme=scheme, rounds=3)
    calm = run(d)
    d["faults"] = ANY_OUTAGE_AND_SLOWDOWN
    fixed_episodes(monkeypatch, [(0.01, 0.05)], [(0.0, 100.0)])
    rough = run(d)
    f = rough.summary["faults"]
    assert f["transfer_paused_s"] > 0 and f["server_extra_s"] > 0
    assert "per_round" not in f  # no rounds of devices that can drop: nothing to reconcile
    assert rough.summary["makespan_s"] > calm.summary["makespan_s"]


# ---- sample accounting ------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.floats(0.0, 1.0), during=st.floats(0.0, 1.0), seed=st.integers(0, 2**31),
    scheme=st.sampled_from(SYNC_SCHEMES), n=st.integers(1, 5),
)
def test_samples_reconcile_exactly(before: float, during: float, seed: int, scheme: str,
                                   n: int) -> None:
    d = fleet(n, scheme=scheme)
    d["seed"] = seed
    d["faults"] = {"dropout": {"before": before, "during": during}}
    d["training"]["aggregation"] = "partial"  # a fault plan even when both are 0
    res = run(d)
    f = res.summary["faults"]
    assert f["reconciles"]
    for row in f["per_round"]:
        assert row["samples_scheduled"] == row["samples_trained"] + sum(
            row["samples_dropped"].values())
        assert all(isinstance(v, int) for v in row["samples_dropped"].values())
        assert row["devices_scheduled"] == row["devices_completed"] + sum(
            row["devices_dropped"].values())
    # samples: iterations × batch per device and round, from the drop events too
    world = build_world(resolve(Scenario.model_validate(d)))
    want = {dev.id: world.iterations(dev) * dev.batch for dev in world.devices}
    drops = res.events[res.events["kind"] == "drop"]
    for dev, value in zip(drops["device"], drops["value"], strict=True):
        assert value == want[dev]
    # no device is both aggregated and dropped in a round; every scheduled device is one of them
    agg, dropped = by_round(res.events, "aggregate"), by_round(res.events, "drop")
    for r in range(2):
        assert not agg.get(r, set()) & dropped.get(r, set())
        assert agg.get(r, set()) | dropped.get(r, set()) == set(want)
    # nothing a dropped device held this round is left behind
    m = res.memory
    for owner in [*want, SERVER]:
        for kind in ("activations", "boundary", "gradients"):
            level = m.loc[(m["owner"] == owner) & (m["kind"] == kind), "delta_bytes"].sum()
            assert abs(level) < 1e-3, (owner, kind, level)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples=st.lists(st.integers(1, 23), min_size=2, max_size=4), seed=st.integers(0, 2**31),
       epochs=st.sampled_from([0.5, 1.0, 2.0]), scheme=st.sampled_from(SYNC_SCHEMES))
def test_epoch_rounds_count_the_partial_last_batch_as_the_data_summary_does(
        samples: list[int], seed: int, epochs: float, scheme: str) -> None:
    """With ``local_work: epochs`` a pass ends on a partial batch: the faults block and the
    per-device data counts (docs/data.md) agree on every sample."""
    d = fleet(len(samples), scheme=scheme)
    for dev, n in zip(d["devices"], samples, strict=True):
        dev["samples"] = n
    d["seed"] = seed
    d["training"].update(local_work="epochs", local_epochs=epochs, aggregation="partial")
    d["faults"] = {"dropout": {"during": 0.4}}
    res = run(d)
    f, devs = res.summary["faults"], res.summary["devices"]
    assert f["reconciles"]
    assert f["samples_trained"] == sum(v["samples_trained"] for v in devs.values())
    per_round = sum(v["samples_per_round"] for v in devs.values())
    assert f["samples_scheduled"] == per_round * d["training"]["rounds"]


@pytest.mark.parametrize("scheme", SYNC_SCHEMES)
def test_mid_round_drop_never_aggregated(scheme: str) -> None:
    d = fleet(4, scheme=scheme, rounds=3)
    d["faults"] = {"dropout": {"during": 0.6}}
    res = run(d)
    ev = res.events
    mid = ev[(ev["kind"] == "drop") & (ev["detail"] == "during_round")]
    assert len(mid) > 0
    agg = by_round(ev, "aggregate")
    for r, dev, t in zip(mid["round"], mid["device"], mid["time_s"], strict=True):
        assert dev not in agg.get(int(r), set())
        start, end = res.summary["round_bounds_s"][int(r)]
        assert start < t < end  # dropped during the round
        # its round stops at the drop: nothing of it after that moment, no adapter upload
        spans = res.trace[(res.trace["round"] == r) & (res.trace["device"] == dev)
                          & (res.trace["resource"] != "server")]
        assert (spans["end_s"] <= t + 1e-12).all()
        assert "adapter_upload" not in set(spans["phase"]) or \
            spans.loc[spans["phase"] == "adapter_upload", "end_s"].max() <= t


# ---- deadline, partial vs all -----------------------------------------------------------------


def test_deadline_cuts_late_devices_off() -> None:
    d = fleet(4, rounds=1, k=3)
    full = run(d)
    per_dev = full.trace[full.trace["phase"] == "adapter_upload"].groupby("device")["end_s"].max()
    deadline = float(np.median(per_dev))  # about half the devices finish in time
    d["training"].update(round_deadline_s=deadline, aggregation="partial")
    res = run(d)
    ev = res.events
    cut = ev[(ev["kind"] == "drop") & (ev["detail"] == "deadline")]
    assert set(cut["device"]) == {dev for dev, t in per_dev.items() if t > deadline}
    assert np.allclose(cut["time_s"], deadline)
    assert set(by_round(ev, "aggregate")[0]) == {dev for dev, t in per_dev.items()
                                                 if t <= deadline}
    assert res.summary["round_s"][0] < full.summary["round_s"][0]
    f = res.summary["faults"]
    assert f["devices_dropped"]["deadline"] == len(cut)
    assert f["wasted_device_s"] > 0


def test_partial_without_drops_equals_all() -> None:
    d = fleet(3)
    d["faults"] = {"link_outage": {"rate_per_hour": 0.0}}
    a = run(d)
    d["training"]["aggregation"] = "partial"
    p = run(d)
    assert p.summary["round_s"] == a.summary["round_s"]
    assert p.summary["faults"]["devices_completed"] == 6


def test_all_waits_for_stragglers_partial_cuts_them() -> None:
    d = fleet(4, rounds=1, k=3)
    d["training"].update(round_deadline_s=1e-3, aggregation="partial")
    p = run(d)
    assert p.summary["faults"]["devices_completed"] == 0
    assert p.summary["faults"]["samples_trained"] == 0
    d["training"].pop("round_deadline_s")
    d["training"]["aggregation"] = "all"
    a = run(d)
    assert len(by_round(a.events, "aggregate")[0]) == 4
    assert a.summary["round_s"][0] > p.summary["round_s"][0]


# ---- outages and server slowdown --------------------------------------------------------------


def test_episode_arithmetic() -> None:
    ep = Episodes.fixed([(1.0, 3.0), (5.0, 6.0)])
    assert ep.stretch(0.0, 0.5) == 0.5
    assert ep.stretch(0.0, 2.0) == 4.0  # 1 s, pause 2 s, 1 s
    assert ep.stretch(2.0, 1.0) == 2.0  # starts inside: waits until 3
    assert ep.stretch(0.0, 4.0) == 7.0  # both windows
    assert ep.work_duration(0.0, 2.0, 2.0) == 3.0  # 1 s, then 1 s of work at half speed: 2 s
    assert ep.work_duration(2.0, 2.0, 4.0) == 2.75  # 0.25 of work in [2, 3), 1.75 after
    assert ep.work_duration(0.0, 4.5, 2.0) == 6.0  # 1 + 1 (in [1,3)) + 2 + 0.5 at half speed
    drawn = Episodes(0.5, 0.2, np.random.default_rng(1))
    ws = drawn.windows_until(1000.0)
    assert all(a < b for a, b in ws)
    assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(ws))
    assert 350 < len(ws) < 650  # Poisson, rate 0.5/s over ~1000 s


def test_outage_stretches_a_transfer_by_its_length() -> None:
    d = fleet(1)
    d["faults"] = {"link_outage": {"rate_per_hour": 1.0}}  # a plan; windows replaced below
    world = build_world(resolve(Scenario.model_validate(d)))
    sim = Sim(world)
    assert sim.faults is not None
    sim.faults._outages["d0"] = Episodes.fixed([(0.05, 1.30)])
    nbytes = 1.0e6  # 100 Mbit/s uplink: 0.08 s alone
    sim.env.process(sim.send("d0", "uplink", "x", nbytes, round=0))
    sim.env.run()
    span = sim.trace.spans[0]
    assert span.end_s - span.start_s == pytest.approx(8 * nbytes / 100e6 + 1.25, abs=1e-12)


def test_server_slowdown_episode_hand_checked() -> None:
    d = fleet(1)
    d["faults"] = {"server_slowdown": {"rate_per_hour": 1.0, "factor": 4.0}}
    sim = Sim(build_world(resolve(Scenario.model_validate(d))))
    assert sim.faults is not None
    sim.faults.server = Episodes.fixed([(0.5, 1.5)])
    sim.env.process(sim.compute(SERVER, "x", 1.0, round=0, resource="server", vary=False))
    sim.env.process(sim.compute("d0", "y", 1.0, round=0, vary=False))  # devices: unaffected
    sim.env.run()
    device, server = sorted(sim.trace.spans, key=lambda sp: sp.end_s)
    assert server.resource == "server"
    # 0.5 s of work by 0.5; 1 s at quarter speed does 0.25; the last 0.25 ends at 1.75
    assert server.end_s == pytest.approx(1.75, abs=1e-12)
    assert device.end_s == pytest.approx(1.0, abs=1e-12)


def test_server_slowdown_lengthens_rounds() -> None:
    d = fleet(3, rounds=4, k=10)
    base = run(d)
    d["faults"] = {"server_slowdown": {"rate_per_hour": 3600.0, "mean_duration_s": 1e3,
                                       "factor": 4.0}}
    slow = run(d)
    assert slow.summary["makespan_s"] > base.summary["makespan_s"]


# ---- re-planning after a drop -----------------------------------------------------------------


@pytest.mark.parametrize(("scheduler", "dispatch"), [
    ("schrage", "strict"), ("schrage", "priority"), ("schrage", "rolling"), ("fifo", "online"),
    ("local_search", "strict"),
])
def test_replanning_keeps_the_server_busy(monkeypatch: pytest.MonkeyPatch, scheduler: str,
                                          dispatch: str) -> None:
    d = fleet(4, rounds=1, k=3)
    d["scheduler"] = {"name": scheduler, "dispatch": dispatch}
    plain = run(d)
    plans = plain.summary.get("plans")
    first = plans[0]["order"][0] if plans else "d0"
    # the plan's first device drops just after the round starts, before its first task
    monkeypatch.setattr(faults.FaultPlan, "round",
                        lambda self, r, devs: RoundFaults(frozenset(), {first: 1e-6}))
    d["faults"] = {"dropout": {"during": 0.5}}  # any value: the plan is forced above
    res = run(d)
    ev = res.events
    assert list(ev.loc[ev["kind"] == "drop", "device"]) == [first]
    tr = res.trace
    busy = tr[tr["resource"] == "server"].sort_values("start_s")
    waits = tr[(tr["resource"] == "server_queue") & (tr["end_s"] > tr["start_s"])]
    # whenever another device's task waits, the server is busy (no gap waiting for `first`)
    for a, b in zip(waits["start_s"], waits["end_s"], strict=True):
        inside = busy[(busy["end_s"] > a) & (busy["start_s"] < b)]
        covered = np.minimum(inside["end_s"], b) - np.maximum(inside["start_s"], a)
        assert covered.sum() == pytest.approx(b - a, abs=1e-9)
    assert first not in set(busy["device"])
    assert len(busy[busy["phase"] == "server_fwd"]) == 3 * 3  # the three others' tasks


def test_fast_path_falls_back_under_faults() -> None:
    d = fleet(3)
    d["scheduler"] = {"name": "schrage", "dispatch": "strict"}
    d["faults"] = {"dropout": {"during": 0.5}}
    res = run(d, fast="auto")
    assert res.summary["engine_path"] == "event"
    assert "faults" in res.summary


# ---- availability windows (traces.availability, faults.availability) -------------------------


def test_availability_windows_drop_devices(tmp_path: Any) -> None:
    csv = tmp_path / "availability.csv"
    csv.write_text("device,start_s,end_s\nd0,0,0.01\nd1,5,10\n")
    d = fleet(3, rounds=1, k=3)
    d["traces"] = {"availability": str(csv)}
    quiet = run(d)  # windows read, not acted on
    assert "faults" not in quiet.summary
    d["faults"] = {"availability": True}
    res = run(d)
    ev = res.events
    drops = ev[ev["kind"] == "drop"].set_index("device")
    assert drops.loc["d0", "detail"] == "offline"
    assert drops.loc["d0", "time_s"] == pytest.approx(0.01)
    assert drops.loc["d1", "detail"] == "offline" and drops.loc["d1", "time_s"] == 0.0
    assert by_round(ev, "aggregate")[0] == {"d2"}
    assert res.summary["faults"]["devices_dropped"]["offline"] == 2
    assert not (res.trace["device"] == "d1").any()  # never started


def test_availability_needs_a_trace() -> None:
    d = fleet(2)
    d["faults"] = {"availability": True}
    with pytest.raises(ValueError, match=r"traces\.availability"):
        Scenario.model_validate(d)


FAULT_SCENARIOS = sorted((ROOT / "scenarios" / "faults").glob("*.yaml"))


@pytest.mark.parametrize("path", FAULT_SCENARIOS, ids=[p.stem for p in FAULT_SCENARIOS])
def test_fault_scenarios_run(path: Any) -> None:
    from sfsim.scenario import load_scenario

    s = load_scenario(path)
    res = simulate(resolve(s))
    f = res.summary["faults"]
    assert f["reconciles"]
    dropped = f["devices_dropped"]
    kind = path.stem
    if kind == "dropout_before":
        assert dropped["before_round"] > 0
    elif kind == "dropout_during":
        assert dropped["during_round"] > 0 and f["wasted_device_s"] > 0
    elif kind == "deadline_partial":
        assert dropped["deadline"] > 0
        assert max(res.summary["round_s"]) < 1.2 + 0.5
    else:  # outages, slowdowns: nobody drops, rounds get longer than without the faults
        assert sum(dropped.values()) == 0
        plain = simulate(resolve(s.model_copy(update={"faults": type(s.faults)()})))
        assert res.summary["makespan_s"] > plain.summary["makespan_s"]


def test_fault_scenarios_exist() -> None:
    assert {p.stem for p in FAULT_SCENARIOS} >= {
        "dropout_before", "dropout_during", "link_outage", "server_slowdown", "deadline_partial"}


def test_validate_refuses_faults_for_streaming_schemes(tiny: dict[str, Any], write_yaml: Any,
                                                        cli: Any) -> None:
    from sfsim.schemes import scheme_class

    if scheme_class("fedmobillm").supports_faults:
        pytest.skip("fedmobillm models faults now")
    tiny["training"]["scheme"] = "fedmobillm"
    tiny["faults"] = {"dropout": {"before": 0.1}}
    path = write_yaml(tiny)
    for command in ("validate", "run"):
        args = [command, path] + (["--out", str(path.parent / "out")] if command == "run" else [])
        result = cli(*args)
        assert result.exit_code == 2
        assert "faults.dropout" in result.output and "Traceback" not in result.output


def test_faults_are_deterministic_and_shared_across_schedulers() -> None:
    d = fleet(5, rounds=3)
    d["faults"] = {"dropout": {"before": 0.3, "during": 0.3},
                   "link_outage": {"rate_per_hour": 3600.0, "mean_duration_s": 0.05}}
    a, b = run(d), run(d)
    assert a.trace.equals(b.trace) and a.events.equals(b.events)
    d["scheduler"] = {"name": "schrage", "dispatch": "strict"}
    c = run(d)
    before = [ev[(ev["kind"] == "drop") & (ev["detail"] == "before_round")][["round", "device"]]
              .values.tolist() for ev in (a.events, c.events)]
    assert before[0] == before[1] and before[0]  # the same devices miss the same rounds


# ---- what outages and slowdowns cost ------------------------------------------------------------


def _brute_covered(a: float, b: float, windows: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, we) - max(a, ws)) for ws, we in windows)


@settings(max_examples=200, deadline=None)
@given(gaps=st.lists(st.tuples(st.floats(0.0, 5.0), st.floats(0.0, 5.0)), max_size=8),
       spans=st.lists(st.tuples(st.floats(0.0, 50.0), st.floats(0.0, 10.0)), min_size=1,
                      max_size=8))
def test_time_inside_windows_matches_a_direct_sum(gaps: list[tuple[float, float]],
                                                   spans: list[tuple[float, float]]) -> None:
    from sfsim.faults import _covered

    windows, t = [], 0.0
    for gap, length in gaps:  # disjoint, sorted windows
        windows.append((t + gap, t + gap + length))
        t += gap + length
    a = np.array([x for x, _ in spans])
    b = a + np.array([d for _, d in spans])
    got = _covered(a, b, np.array([w for w, _ in windows]), np.array([w for _, w in windows]))
    want = [_brute_covered(x, y, windows) for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_outage_pause_and_server_extra_hand_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """One device, fixed windows: a transfer caught by a 0.5 s outage is paused exactly 0.5 s;
    a server pass whose first quarter q of time is inside a 3x slowdown does q/3 of work there
    and takes q × (1 - 1/3) longer."""
    from sfsim.faults import FaultPlan, episodes_summary

    d = fleet(1, rounds=1, k=1)
    d["faults"] = ANY_OUTAGE_AND_SLOWDOWN
    calm = run(fleet(1, rounds=1, k=1)).trace
    up = calm[calm["resource"] == "uplink"].iloc[0]
    srv = calm[calm["resource"] == "server"].iloc[0]
    mid_up = float(up["start_s"] + up["end_s"]) / 2
    quarter = float(srv["end_s"] - srv["start_s"]) / 4  # the first server pass's first quarter
    srv_start = float(srv["start_s"]) + 0.5  # after the uplink's 0.5 s pause
    fixed_episodes(monkeypatch, [(mid_up, mid_up + 0.5)], [(srv_start, srv_start + quarter)])
    res = run(d)
    f = res.summary["faults"]
    assert f["transfer_paused_s"] == pytest.approx(0.5, rel=1e-9)
    assert f["server_slowed_s"] == pytest.approx(quarter, rel=1e-9)
    assert f["server_extra_s"] == pytest.approx(quarter * (1 - 1 / 3), rel=1e-9)
    t = res.trace
    got_up = t[t["resource"] == "uplink"].iloc[0]
    assert float(got_up["end_s"] - got_up["start_s"]) == pytest.approx(
        float(up["end_s"] - up["start_s"]) + 0.5, rel=1e-9)
    got_srv = t[t["resource"] == "server"].iloc[0]  # a quarter at a third of the speed
    assert float(got_srv["end_s"] - got_srv["start_s"]) == pytest.approx(
        4 * quarter + quarter * (1 - 1 / 3), rel=1e-9)
    plan = FaultPlan(Scenario.model_validate(d), Seeds.from_seed(0).faults)
    assert episodes_summary(plan, t.iloc[:0]) == {
        "transfer_paused_s": 0.0, "server_slowed_s": 0.0, "server_extra_s": 0.0}
