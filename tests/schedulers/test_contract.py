"""One battery of contract tests, run against every registered scheduler.

Every scheduler must return a valid plan (each job id once per task), be deterministic for a
given seed, leave its input alone and handle empty and one-job instances. Online schedulers
must also pick a valid index from any non-empty waiting list.
"""

from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest

from sfsim.schedulers import Instance, Job, Ready, Scheduler, available, get_scheduler
from sfsim.schedulers.registry import scheduler_class

from .strategies import random_chains, random_single

NAMES = sorted(available())


def _make(name: str) -> Scheduler:
    return get_scheduler(name)


def _instances(sched: Scheduler) -> list[Instance]:
    out = [random_single(7, seed=1), random_single(12, seed=2)]
    if sched.supports_chains:
        out += [random_chains(3, 3, seed=3), random_chains(4, 2, seed=4)]
    return out


@pytest.mark.parametrize("name", NAMES)
def test_has_name_and_one_line_description(name: str) -> None:
    cls = scheduler_class(name)
    assert cls.name == name
    assert cls.description and "\n" not in cls.description and len(cls.description) <= 100


@pytest.mark.parametrize("name", NAMES)
def test_order_is_a_valid_plan(name: str) -> None:
    sched = _make(name)
    for inst in _instances(sched):
        order = sched.order(inst, np.random.default_rng(0))
        assert Counter(order) == Counter({j.id: j.k for j in inst.jobs})
        assert all(isinstance(x, str) for x in order)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed(name: str) -> None:
    for inst in _instances(_make(name)):
        a = _make(name).order(inst, np.random.default_rng(42))
        b = _make(name).order(inst, np.random.default_rng(42))
        assert a == b


@pytest.mark.parametrize("name", NAMES)
def test_input_not_mutated(name: str) -> None:
    sched = _make(name)
    params = copy.deepcopy(sched.get_params())
    for inst in _instances(sched):
        before = copy.deepcopy(inst)
        sched.order(inst, np.random.default_rng(0))
        assert inst == before
    assert sched.get_params() == params


@pytest.mark.parametrize("name", NAMES)
def test_empty_and_single_job(name: str) -> None:
    sched = _make(name)
    assert sched.order(Instance(()), np.random.default_rng(0)) == []
    one = Instance((Job.single("only", 1.0, 2.0, 3.0),))
    assert sched.order(one, np.random.default_rng(0)) == ["only"]
    if sched.supports_chains:
        chain = Instance((Job("only", 1.0, (2.0, 1.0, 1.0), (0.5, 0.0), 3.0),))
        assert sched.order(chain, np.random.default_rng(0)) == ["only"] * 3


@pytest.mark.parametrize("name", NAMES)
def test_plan_agrees_with_order(name: str) -> None:
    sched = _make(name)
    inst = random_single(6, seed=5)
    plan = sched.plan(inst, np.random.default_rng(3))
    assert list(plan.order) == sched.order(inst, np.random.default_rng(3))


@pytest.mark.parametrize("name", NAMES)
def test_online_select_returns_a_valid_index(name: str) -> None:
    cls = scheduler_class(name)
    sched = get_scheduler(name, online=True) if "online" in _params(cls) else _make(name)
    if not sched.online:
        pytest.skip(f"{name} is offline only")
    waiting = [
        Ready("a", 0, 1.0, 2.0, 5.0),
        Ready("b", 1, 0.5, 1.0, 9.0),
        Ready("c", 0, 0.7, 3.0, 0.0),
    ]
    rng = np.random.default_rng(0)
    i = sched.select(waiting, 2.0, rng)
    assert 0 <= i < len(waiting)
    assert sched.select(waiting[:1], 2.0, rng) == 0


def _params(cls: type[Scheduler]) -> list[str]:
    from sfsim.schedulers.registry import accepted_params

    return accepted_params(cls)
