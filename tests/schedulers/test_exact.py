"""Exact schedulers against brute force; no heuristic ever beats the optimum."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from sfsim.errors import InputError
from sfsim.schedulers import Instance, Job, available, get_scheduler, makespan
from sfsim.schedulers.result import solve

from .strategies import brute_force, chain_instances, random_single, single_instances

RNG_SEED = 0
HEURISTICS = [n for n in sorted(available()) if n not in ("carlier", "milp")]

# optimum 18, preemptive bound 16, best priority rule 19: milp must run its solver and prove
HARD = Instance(
    (
        Job.single("a", 4, 5, 4),
        Job.single("b", 0, 3, 6),
        Job.single("c", 7, 2, 7),
        Job.single("d", 5, 1, 8),
    )
)


@settings(max_examples=40, deadline=None)
@given(single_instances(max_n=7))
def test_carlier_equals_brute_force(inst: Instance) -> None:
    res = solve("carlier", inst, np.random.default_rng(RNG_SEED))
    assert res.optimal
    assert res.makespan_s == pytest.approx(brute_force(inst), abs=1e-9)


def test_carlier_equals_brute_force_n8() -> None:
    for seed in range(2):
        inst = random_single(8, seed=100 + seed)
        res = solve("carlier", inst)
        assert res.optimal and res.makespan_s == pytest.approx(brute_force(inst), rel=1e-12)


@settings(max_examples=12, deadline=None)
@given(single_instances(min_n=1, max_n=6))
def test_milp_equals_brute_force(inst: Instance) -> None:
    res = solve("milp", inst, np.random.default_rng(RNG_SEED))
    assert res.optimal
    assert res.makespan_s == pytest.approx(brute_force(inst), abs=1e-6)


@settings(max_examples=8, deadline=None)
@given(chain_instances(max_n=3, max_k=3))
def test_milp_equals_brute_force_on_chains(inst: Instance) -> None:
    res = solve("milp", inst, np.random.default_rng(RNG_SEED))
    assert res.optimal
    assert res.makespan_s == pytest.approx(brute_force(inst), abs=1e-6)


@pytest.mark.parametrize("solver", ["cbc", "highs"])
def test_milp_solver_path(solver: str) -> None:
    sched = get_scheduler("milp", solver=solver, time_limit_s=30)
    if solver == "highs":
        pytest.importorskip("highspy")
    for inst in (HARD, random_single(7, seed=3)):
        plan = sched.plan(inst, np.random.default_rng(0))
        assert plan.optimal
        assert makespan(inst, plan.order) == pytest.approx(brute_force(inst), abs=1e-6)
    assert "Optimal" in sched.plan(HARD, np.random.default_rng(0)).status


@settings(max_examples=40, deadline=None)
@given(single_instances(min_n=1, max_n=6))
def test_no_heuristic_beats_the_optimum(inst: Instance) -> None:
    opt = solve("carlier", inst).makespan_s
    for name in HEURISTICS:
        assert solve(name, inst).makespan_s >= opt - 1e-9, name


@settings(max_examples=15, deadline=None)
@given(chain_instances(max_n=3, max_k=2))
def test_no_heuristic_beats_brute_force_on_chains(inst: Instance) -> None:
    opt = brute_force(inst)
    for name in HEURISTICS:
        assert solve(name, inst).makespan_s >= opt - 1e-9, name


def test_carlier_refuses_chains() -> None:
    inst = Instance((Job("a", 0, (1, 1), (1,), 0),))
    with pytest.raises(InputError, match=r"only single-task jobs.*'milp'"):
        get_scheduler("carlier").order(inst, np.random.default_rng(0))


def test_carlier_limits_return_a_valid_unproven_order() -> None:
    inst = random_single(300, seed=7)
    plan = get_scheduler("carlier", max_nodes=0).plan(inst, np.random.default_rng(0))
    assert sorted(plan.order) == sorted(j.id for j in inst.jobs)
    assert plan.lower_bound_s is not None
    assert plan.lower_bound_s <= makespan(inst, plan.order) + 1e-9
    assert plan.optimal == (plan.lower_bound_s >= makespan(inst, plan.order) - 1e-6)
    full = get_scheduler("carlier").plan(inst, np.random.default_rng(0))
    assert full.optimal and full.lower_bound_s == pytest.approx(makespan(inst, full.order))


def test_milp_falls_back_to_schrage_with_a_warning() -> None:
    inst = random_single(12, seed=1)
    sched = get_scheduler("milp", max_tasks=5)
    with pytest.warns(RuntimeWarning, match="falling back to 'schrage'"):
        plan = sched.plan(inst, np.random.default_rng(0))
    assert list(plan.order) == get_scheduler("schrage").order(inst, np.random.default_rng(0))


def test_milp_unknown_solver_is_an_input_error() -> None:
    with pytest.raises(InputError, match="unknown milp solver 'gurobi'"):
        get_scheduler("milp", solver="gurobi").order(HARD, np.random.default_rng(0))
