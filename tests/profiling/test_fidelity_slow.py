"""Real split LoRA training against the shipped profiles (minutes: marked slow)."""

from __future__ import annotations

import warnings

import pytest

from sfsim.costs.processors import catalogue
from sfsim.costs.profiled import ProfiledCostModel
from sfsim.profiling.fidelity import DEFAULT_CONFIGS, run_fidelity


@pytest.mark.slow
def test_default_fidelity_runs_and_is_not_grossly_wrong() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both models have shipped profiles: no analytic fallback
        results, facts = run_fidelity(
            DEFAULT_CONFIGS,
            cost=ProfiledCostModel(),
            processor=catalogue()["cpu-ref-2core"],
            iters=5,
            warmup=1,
        )
    assert {(r.model, r.cut) for r in results} == {
        ("gpt2", 3),
        ("gpt2", 6),
        ("llama-3.2-1b", 1),
        ("llama-3.2-1b", 2),
    }
    assert facts["threads"] == 2
    for r in results:
        # Target (docs/costs.md): 10% against the session profile on a quiet machine. This shared
        # VM's speed drifts by tens of percent and other processes' load slows single rounds, so
        # the test only guards against gross errors (a wrong composition of phases, a missing op).
        assert r.median_abs_error < 0.3, r.to_dict()
        assert r.median_abs_error_shipped < 0.6, r.to_dict()
