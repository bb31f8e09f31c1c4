"""Performance claims of docs/schedulers.md, checked loosely (slow: deselect with -m 'not slow')."""

from __future__ import annotations

import numpy as np
import pytest

from sfsim.schedulers.benchmark import random_instance
from sfsim.schedulers.result import solve

pytestmark = pytest.mark.slow


def test_carlier_proves_n1000_quickly() -> None:
    times = []
    for seed in range(3):
        inst = random_instance(1000, "wide", np.random.default_rng(seed))
        res = solve("carlier", inst)
        assert res.optimal
        times.append(res.solve_s)
    assert float(np.median(times)) < 5.0  # documented median is far lower; CI machines vary


def test_milp_proves_n20_within_a_minute() -> None:
    inst = random_instance(20, "wide", np.random.default_rng(11))
    res = solve("milp", inst, time_limit_s=60.0)
    assert res.optimal
    assert res.makespan_s == pytest.approx(solve("carlier", inst).makespan_s, rel=1e-9)


def test_local_search_gap_on_n100() -> None:
    gaps = []
    for seed in range(3):
        inst = random_instance(100, "wide", np.random.default_rng(seed))
        opt = solve("carlier", inst).makespan_s
        gaps.append(solve("local_search", inst).makespan_s / opt - 1.0)
    assert float(np.mean(gaps)) <= 0.01
