"""Schemes without round barriers (docs/async.md): fedmobillm and splitfrozen's pipeline."""

from __future__ import annotations

import pytest

from sfsim import fastpath
from sfsim.engine import Sim
from sfsim.run import build_world, resolve
from sfsim.scenario import parse_scenario
from sfsim.schedulers import get_scheduler
from sfsim.schemes import scheme_class

from .schemes.common import base, run, spans


def _mobi(rounds: int = 2, k: int = 3, samples: int | None = None):
    d = base()
    d["training"].update(rounds=rounds, local_iterations=k)
    if samples is not None:
        for dev in d["devices"]:
            dev["samples"] = samples * dev["batch_size"]
    return d


def test_fedmobillm_has_no_round_barrier():
    res = run(_mobi(rounds=3), scheme="fedmobillm")
    fwd = spans(res, "device")
    fast, slow = fwd[fwd["device"] == "a"], fwd[fwd["device"] == "b"]
    assert len(fast) == len(slow) == 9  # every batch distinct: 3 rounds x K = 3, uploaded once
    # the fast device is through all its data before the slow one starts its last batch
    up_fast = spans(res, "uplink").query("device == 'a'")
    assert up_fast["end_s"].max() < slow["start_s"].max()
    # and it never waits for a round boundary: each upload starts as soon as both the link
    # and the batch's forward are free (the server never holds the device back)
    u = up_fast.sort_values("start_s")
    f_end = fast.sort_values("start_s")["end_s"].to_numpy()
    u_start, u_end = u["start_s"].to_numpy(), u["end_s"].to_numpy()
    for i in range(1, len(u)):
        assert u_start[i] == pytest.approx(max(u_end[i - 1], f_end[i]), abs=1e-12)


def test_fedmobillm_never_sends_anything_down():
    for d in (_mobi(), _mobi(rounds=3, samples=2)):
        res = run(d, scheme="fedmobillm")
        assert spans(res, "downlink").empty
        assert res.summary["downlink_bytes"] == 0


@pytest.mark.parametrize("samples", [None, 2])
def test_fedmobillm_staleness_is_step_time_minus_arrival(samples):
    d = _mobi(rounds=3, k=3, samples=samples)
    res = run(d, scheme="fedmobillm")
    ev = res.events.query("kind == 'update'")
    # the documented total: rounds x K server steps per device, one update event each
    assert len(ev) == 3 * 3 * 2
    assert len(res.trace.query("phase == 'server_fwd'")) == len(ev)
    assert (ev["value"] >= 0).all()
    up = spans(res, "uplink")
    arrival = {(r.device, r.round * 3 + r.iteration): r.end_s for r in up.itertuples()}
    steps = res.trace.query("phase == 'server_fwd'").sort_values("start_s")
    for e, s in zip(ev.itertuples(), steps.itertuples(), strict=True):
        assert e.device == s.device and e.time_s == pytest.approx(s.start_s, abs=1e-12)
        assert e.value == pytest.approx(e.time_s - arrival[e.device, e.iteration], abs=1e-12)
    if samples == 2:  # two distinct batches per device, the rest of the steps from the cache
        assert set(ev["iteration"]) == {0, 1}
        assert {x.split()[0] for x in ev["detail"]} == {"epoch=0", "epoch=1", "epoch=2",
                                                       "epoch=3", "epoch=4"}
    # bookkeeping: round r ends at the server's (r+1) x sum(K)-th step
    ends = res.trace.query("phase == 'server_bwd'").sort_values("end_s")["end_s"].to_numpy()
    got = [b[1] for b in res.summary["round_bounds_s"]]
    assert got == pytest.approx([ends[5], ends[11], ends[17]], abs=1e-12)


def test_no_closed_form_for_continuous_schemes():
    for scheme in ("fedmobillm", "splitfrozen"):
        world = build_world(resolve(parse_scenario(base()), scheme=scheme))
        sim = Sim(world)
        sch = scheme_class(scheme)(get_scheduler("fifo"))
        sch.setup(sim)
        why = fastpath.why_not(sim, sch, sch.scheduler)
        assert why is not None and "without round barriers" in why


#: splitfrozen on tests/schemes/common.base(), as committed before this change (9eaa72b),
#: when every round drained the pipeline: `barrier: true` must give exactly this.
BARRIER_MAKESPAN_S = 0.28146847150079984
BARRIER_BOUNDS_S = [[0.0, 0.1407342357504], [0.1407342357504, 0.28146847150079984]]


def test_splitfrozen_barrier_equals_the_drained_rounds_and_continuous_is_no_slower():
    d = base()
    d["training"]["pipeline"] = {"barrier": True}
    barrier = run(d, scheme="splitfrozen")
    assert barrier.summary["makespan_s"] == BARRIER_MAKESPAN_S
    assert barrier.summary["round_bounds_s"] == BARRIER_BOUNDS_S
    t = barrier.trace
    for r, (start, end) in enumerate(barrier.summary["round_bounds_s"]):
        in_round = t[t["round"] == r]
        assert in_round["start_s"].min() >= start - 1e-12
        assert in_round["end_s"].max() == pytest.approx(end, abs=1e-12)
    cont = run(base(), scheme="splitfrozen")
    assert cont.summary["makespan_s"] <= barrier.summary["makespan_s"]
    # the same work either way
    for res in (barrier, cont):
        ev = res.events.query("kind == 'update'")
        assert len(ev) == 2 * 3 * 2
        assert (ev["value"] >= 0).all()
        versions = ev["detail"].str.removeprefix("versions=").astype(int)
        assert (versions >= 0).all() and (versions <= d["training"].get("max_inflight", 2)).all()
    assert cont.summary["server_busy_s"] == pytest.approx(barrier.summary["server_busy_s"])
    # rounds overlap: a device starts round 1's batches before the server ends round 0's
    fwd1 = spans(cont, "device").query("round == 1")["start_s"].min()
    assert fwd1 < cont.summary["round_bounds_s"][0][1]
