"""Lower bounds: hand-checked values, and never above the brute-force optimum."""

from __future__ import annotations

from hypothesis import given, settings

from sfsim.schedulers import Instance, Job
from sfsim.schedulers.bounds import (
    block_bound,
    critical_path_bound,
    lower_bound,
    preemptive_bound,
    relaxed_tasks,
)

from .strategies import brute_force, chain_instances, single_instances


def test_preemptive_bound_hand_example() -> None:
    # job 0 runs 0..1, job 1 (longer tail) preempts it at 1 and runs 1..2 (+10 = 12),
    # job 0 resumes 2..5 (+0 = 5): bound 12; without preemption the best is 0,1 -> 4 + 10 = 14
    assert preemptive_bound([0.0, 1.0], [4.0, 1.0], [0.0, 10.0]) == 12.0
    inst = Instance((Job.single("a", 0, 4, 0), Job.single("b", 1, 1, 10)))
    assert brute_force(inst) == 12.0  # b first: waits to 1, ends 2 (+10); a ends 6
    assert lower_bound(inst) == 12.0


def test_empty_and_trivial() -> None:
    assert lower_bound(Instance(())) == 0.0
    assert preemptive_bound([], [], []) == 0.0
    assert lower_bound(Instance((Job.single("a", 2, 3, 4),))) == 9.0


def test_block_bound() -> None:
    assert block_bound([1.0, 5.0, 2.0], [1.0, 1.0, 1.0], [3.0, 0.0, 9.0], [0, 2]) == 1 + 2 + 3
    assert block_bound([1.0], [1.0], [1.0], []) == 0.0


def test_chain_relaxation_heads_and_tails() -> None:
    inst = Instance((Job("a", 1.0, (2.0, 3.0), (4.0,), 5.0),))
    assert relaxed_tasks(inst) == ([1.0, 7.0], [2.0, 3.0], [12.0, 5.0])
    assert lower_bound(inst) == critical_path_bound(inst) == 15.0


@settings(max_examples=40, deadline=None)
@given(single_instances(max_n=6))
def test_bound_never_exceeds_optimum_single(inst: Instance) -> None:
    assert lower_bound(inst) <= brute_force(inst) + 1e-9


@settings(max_examples=30, deadline=None)
@given(chain_instances(max_n=3, max_k=3))
def test_bound_never_exceeds_optimum_chains(inst: Instance) -> None:
    lb = lower_bound(inst)
    assert critical_path_bound(inst) <= lb <= brute_force(inst) + 1e-9
