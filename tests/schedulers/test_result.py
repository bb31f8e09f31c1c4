"""solve() and ScheduleResult: evaluated makespans, bounds, proofs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sfsim.schedulers import Instance, Job, get_scheduler
from sfsim.schedulers.result import ScheduleResult, solve

from .strategies import random_single

INST = Instance((Job.single("a", 0, 4, 0), Job.single("b", 1, 1, 10)))


def test_result_fields_and_json() -> None:
    res = solve("carlier", INST)
    assert isinstance(res, ScheduleResult)
    assert (res.scheduler == "carlier" and res.order == ("b", "a")) or res.order == ("a", "b")
    assert res.makespan_s == 12.0 and res.lower_bound_s == 12.0 and res.optimal
    assert res.gap == 0.0 and res.solve_s >= 0.0
    doc = json.loads(json.dumps(res.to_dict()))
    assert set(doc) >= {"scheduler", "order", "makespan_s", "lower_bound_s", "optimal", "solve_s"}


def test_heuristic_is_optimal_only_with_a_proof() -> None:
    res = solve("fifo", INST)  # a then b: b ends 5 (+10 = 15) > bound 12
    assert res.makespan_s == 15.0 and not res.optimal
    assert res.gap == pytest.approx(3.0 / 15.0)


def test_scheduler_object_and_name_agree() -> None:
    inst = random_single(20, seed=3)
    a = solve(get_scheduler("local_search"), inst, np.random.default_rng(1))
    b = solve("local_search", inst, np.random.default_rng(1))
    assert a.order == b.order and a.makespan_s == b.makespan_s


def test_params_only_with_a_name() -> None:
    with pytest.raises(TypeError):
        solve(get_scheduler("fifo"), INST, None, online=True)


def test_empty_instance() -> None:
    res = solve("schrage", Instance(()))
    assert res.order == () and res.makespan_s == 0.0 and res.optimal and res.gap == 0.0
