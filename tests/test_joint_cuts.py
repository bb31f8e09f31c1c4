"""``training.cut_policy: joint``: cuts and server order chosen together (schedulers/joint.py).

The reference everywhere is brute force: every admissible cut vector times every server order.
"""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sfsim.errors import InfeasibleError, InputError
from sfsim.run import resolve
from sfsim.scenario import parse_scenario
from sfsim.schedulers import Instance, Job, makespan
from sfsim.schedulers import joint as jt
from sfsim.schemes import cuts
from sfsim.schemes.split import round_instance, split_costs
from sfsim.world import build_world

from .schemes.common import base, run

GB = 1e9
OTHERS = ("max_fit", "balanced", "min_time")


def orders(inst: Instance):
    """Every distinct order of the instance's tasks (a job id once per task)."""
    tasks = [j.id for j in inst.jobs for _ in range(j.k)]
    return set(itertools.permutations(tasks))


def best_order_s(inst: Instance) -> float:
    return min(makespan(inst, o) for o in orders(inst))


def brute_force(options) -> float:
    """min over every cut vector of the best order's makespan."""
    ids = list(options)
    best = float("inf")
    for vec in itertools.product(*(sorted(options[u]) for u in ids)):
        best = min(best, best_order_s(jt.instance_of(options, dict(zip(ids, vec, strict=True)))))
    return best


def random_options(rng: np.random.Generator, n_dev: int, k: int, max_cuts: int,
                   min_cuts: int = 1):
    """Random jobs per device and cut, with the split trade-off: a larger cut is a later release
    and a longer tail but less server time."""
    out = {}
    for u in range(n_dev):
        per = {}
        n_cuts = int(rng.integers(min_cuts, max_cuts + 1))
        base_r, base_p, base_q = rng.uniform(0, 3, 3)
        for c in range(1, n_cuts + 1):
            dev = float(rng.uniform(0.2, 1.5))
            per[c] = Job(f"d{u}", base_r + c * dev, (max(base_p + 3 - c * 0.8, 0.1),) * k,
                         (float(rng.uniform(0, 2)) + c * dev,) * (k - 1), base_q + c * dev)
        out[f"d{u}"] = per
    return out


# ---- the solver on synthetic instances --------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_dev=st.integers(1, 4))
def test_branch_and_bound_equals_brute_force_single_tasks(seed, n_dev):
    opts = random_options(np.random.default_rng(seed), n_dev, k=1, max_cuts=3)
    start = {u: min(per) for u, per in opts.items()}
    res = jt.branch_and_bound(opts, start)
    assert res.optimal
    assert res.makespan_s == pytest.approx(brute_force(opts), rel=1e-12, abs=1e-12)
    # what it reports is what it found
    inst = jt.instance_of(opts, res.cuts)
    assert makespan(inst, res.order) == pytest.approx(res.makespan_s, rel=1e-12)
    assert res.lower_bound_s is not None and res.lower_bound_s <= res.makespan_s + 1e-12


@pytest.mark.parametrize("seed", range(4))
def test_branch_and_bound_equals_brute_force_chains(seed):
    opts = random_options(np.random.default_rng(seed), 3, k=2, max_cuts=3)
    start = {u: max(per) for u, per in opts.items()}
    res = jt.branch_and_bound(opts, start)
    assert res.optimal
    assert res.makespan_s == pytest.approx(brute_force(opts), rel=1e-9)


def test_relaxed_job_is_a_lower_bound_componentwise():
    opts = random_options(np.random.default_rng(3), 1, k=3, max_cuts=4)
    jobs = list(opts["d0"].values())
    r = jt.relaxed_job("d0", jobs)
    for j in jobs:
        assert r.release_s <= j.release_s and r.tail_s <= j.tail_s
        assert all(a <= b for a, b in zip(r.server_s, j.server_s, strict=True))
        assert all(a <= b for a, b in zip(r.lag_s, j.lag_s, strict=True))


def test_local_search_never_worsens_its_start_and_is_deterministic():
    opts = random_options(np.random.default_rng(11), 30, k=1, max_cuts=6)
    start = {u: min(per) for u, per in opts.items()}
    inst = jt.instance_of(opts, start)
    from sfsim.schedulers.rules import Schrage

    start_s = makespan(inst, Schrage().order(inst, np.random.default_rng(0)))
    a = jt.joint_cuts(opts, [start], exact_max_devices=8)
    b = jt.joint_cuts(opts, [start], exact_max_devices=8)
    assert a.method == "local_search" and not a.optimal
    assert a.makespan_s < start_s  # the smallest cuts overload the server here: it must move
    assert a == b
    assert makespan(jt.instance_of(opts, a.cuts), a.order) == pytest.approx(a.makespan_s)


def test_a_fixed_rule_is_the_objective():
    opts = random_options(np.random.default_rng(5), 3, k=1, max_cuts=3)
    from sfsim.schedulers import get_scheduler

    fifo = get_scheduler("fifo")
    res = jt.branch_and_bound(opts, {u: 1 for u in opts}, rule="fifo")
    ids = list(opts)
    want = min(
        makespan(inst, fifo.order(inst, np.random.default_rng(0)))
        for vec in itertools.product(*(sorted(opts[u]) for u in ids))
        for inst in [jt.instance_of(opts, dict(zip(ids, vec, strict=True)))]
    )
    assert res.makespan_s == pytest.approx(want, rel=1e-12)


# ---- the policy in a scenario -----------------------------------------------------------------
def hetero(policy: str, k: int = 1) -> dict:
    """Three devices of different speed, memory and uplink; a server only a few times faster,
    so the server's share (and the order) matters."""
    d = base()
    d["processors"]["mid"] = {"kind": "device", "peak_tflops": {"fp32": 0.6},
                              "mem_bw_gbps": 60, "memory_gb": 8, "efficiency": 1.0}
    d["processors"]["slow"].update(peak_tflops={"fp32": 0.3}, mem_bw_gbps=30)
    d["processors"]["srv"].update(peak_tflops={"fp32": 0.6}, mem_bw_gbps=60)
    d["devices"] = [
        {"id": "a", "processor": "fast", "batch_size": 2, "uplink_mbps": 200, "overhead_mb": 0},
        {"id": "b", "processor": "mid", "batch_size": 2, "uplink_mbps": 50, "overhead_mb": 0},
        {"id": "c", "processor": "slow", "batch_size": 1, "uplink_mbps": 20, "overhead_mb": 0},
    ]
    d["training"].update(cut_policy=policy, local_iterations=k, rounds=1)
    return d


def limit_memory(d: dict, dev: str, max_cut: int) -> None:
    """Give device ``dev`` room for cut ``max_cut`` but not ``max_cut + 1``."""
    world = build_world(resolve(parse_scenario(d)))
    w = world.device(dev)
    lo = cuts.split_device_peak_bytes(world, w, max_cut)
    hi = cuts.split_device_peak_bytes(world, w, max_cut + 1)
    next(x for x in d["devices"] if x["id"] == dev)["memory_gb"] = (lo + hi) / 2 / GB


def world_options(d: dict):
    world = build_world(resolve(parse_scenario(d)))
    peak = partial(cuts.split_device_peak_bytes, world)
    out = {}
    for dev in world.devices:
        per = {}
        for c in cuts.feasible_cuts(world, dev, peak):
            costs = {e.id: split_costs(world, e, c) for e in world.devices}
            per[c] = round_instance(world, costs).job(dev.id)
        out[dev.id] = per
    return out


@pytest.mark.parametrize("k", [1, 2])
def test_joint_is_the_brute_force_optimum_and_beats_every_other_policy(k):
    d = hetero("joint", k)
    limit_memory(d, "b", 5)
    limit_memory(d, "c", 3 if k == 1 else 2)
    if k == 2:
        limit_memory(d, "a", 4)
    opts = world_options(d)
    res = run(d)
    notes = res.summary["scheme_notes"]["cuts"]
    assert notes["policy"] == "joint" and notes["proven_optimal"] is True
    assert notes["estimated_round_s"] == pytest.approx(brute_force(opts), rel=1e-9)
    inst = jt.instance_of(opts, notes["cuts"])
    assert makespan(inst, notes["order"]) == pytest.approx(notes["estimated_round_s"], rel=1e-9)
    others = []
    for policy in OTHERS:  # evaluated with *their* best order, joint still no longer
        other = run(hetero(policy, k) | {"devices": d["devices"]})
        their = other.summary["scheme_notes"]["cuts"]["cuts"]
        others.append(best_order_s(jt.instance_of(opts, their)))
        assert notes["estimated_round_s"] <= others[-1] * (1 + 1e-12)
    # on this fleet the joint choice is strictly better than every other policy (> 2%)
    assert notes["estimated_round_s"] < 0.98 * min(others)


def test_joint_respects_memory():
    d = hetero("joint")
    limit_memory(d, "a", 2)
    limit_memory(d, "c", 1)
    res = run(d)
    cut = {u: v["cut"] for u, v in res.summary["devices"].items()}
    assert cut["a"] <= 2 and cut["c"] == 1
    for dev in d["devices"]:
        assert res.summary["device_peak_bytes"][dev["id"]] <= dev.get("memory_gb", 8) * GB


def test_joint_keeps_fixed_cuts():
    d = hetero("joint")
    d["devices"][2]["cut"] = 7
    res = run(d)
    notes = res.summary["scheme_notes"]["cuts"]
    assert notes["cuts"]["c"] == 7 and notes["chosen"] == ["a", "b"]


def test_joint_infeasible_device_is_a_clear_error():
    d = hetero("joint")
    d["devices"][1]["memory_gb"] = 0.1
    with pytest.raises(InfeasibleError, match=r"device 'b'.*cannot hold even one block"):
        run(d)


def test_joint_needs_a_sequential_server_round():
    with pytest.raises(InputError, match="joint"):
        run(hetero("joint"), scheme="splitfrozen")


def test_joint_is_deterministic_and_its_cuts_are_used():
    a = run(hetero("joint", 2))
    b = run(hetero("joint", 2))
    assert {**a.summary, "wall_s": 0} == {**b.summary, "wall_s": 0}
    assert a.trace.equals(b.trace)
    notes = a.summary["scheme_notes"]["cuts"]
    assert {u: v["cut"] for u, v in a.summary["devices"].items()} == notes["cuts"]


def test_joint_under_a_fixed_order_optimises_that_order():
    """sfl_v2 serves devices FIFO: joint minimises FIFO's makespan, not the best order's."""
    d = hetero("joint")
    limit_memory(d, "c", 3)
    res = run(d, scheme="sfl_v2")
    notes = res.summary["scheme_notes"]["cuts"]
    assert notes["order_rule"] == "fifo"
    opts = world_options(d)
    from sfsim.schedulers import get_scheduler

    fifo = get_scheduler("fifo")
    ids = list(opts)
    want = min(
        makespan(inst, fifo.order(inst, np.random.default_rng(0)))
        for vec in itertools.product(*(sorted(opts[u]) for u in ids))
        for inst in [jt.instance_of(opts, dict(zip(ids, vec, strict=True)))]
    )
    assert notes["estimated_round_s"] == pytest.approx(want, rel=1e-9)


def test_limits_are_never_reported_as_proofs():
    opts = random_options(np.random.default_rng(2), 4, k=2, max_cuts=3, min_cuts=2)
    start = {u: max(per) for u, per in opts.items()}
    res = jt.joint_cuts(opts, [start], exact_max_devices_chains=2)  # 4 choosing devices > 2
    assert res.method == "local_search" and res.optimal is False
    cut_short = jt.branch_and_bound(opts, start, max_solves=0)
    if cut_short.makespan_s > brute_force(opts) + 1e-9:  # it stopped before the optimum...
        assert cut_short.optimal is False  # ...and says so
    single = random_options(np.random.default_rng(4), 4, k=1, max_cuts=4, min_cuts=2)
    tiny = jt.branch_and_bound(single, {u: min(p) for u, p in single.items()}, max_nodes=1)
    assert tiny.optimal is False or tiny.makespan_s == pytest.approx(brute_force(single))


def test_joint_cuts_reach_the_closed_form_fast_path_unchanged():
    from sfsim.run import simulate

    d = hetero("joint", 2)
    d["scheduler"] = {"name": "schrage"}
    slow = simulate(resolve(parse_scenario(d)), fast=False)
    fast = simulate(resolve(parse_scenario(d)), fast=True)
    assert fast.summary["engine_path"] == "closed_form"
    assert fast.summary["scheme_notes"]["cuts"] == slow.summary["scheme_notes"]["cuts"]
    assert fast.summary["makespan_s"] == pytest.approx(slow.summary["makespan_s"], rel=1e-9)
