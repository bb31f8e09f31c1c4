"""analysis/shared_plans.py: a plan's error in a shared cell, from the run's plans."""

from __future__ import annotations

from .conftest import ROOT, load_module

shared_plans = load_module(ROOT / "analysis" / "shared_plans.py", "_sfsim_analysis_shared_plans")


def test_dedicated_plans_are_close_and_shared_ones_are_not() -> None:
    _, dedicated = shared_plans.one("dedicated", "oracle", 1)
    round_s, shared = shared_plans.one("shared", "mean", 1)
    assert round_s > 0 and 0 <= dedicated < 0.05
    assert shared > 0.2  # the estimator plans on dedicated links: far too optimistic
