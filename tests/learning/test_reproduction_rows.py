"""The reproduction table's learning rows (analysis/reproduce_papers.py): mean and 95% CI over
seeds of time-to-target speed-ups and accuracy differences, seeds that miss the target left out
and said so. The runs are replaced by fixed figures here, so the arithmetic is checked exactly;
tests/learning/test_learning_runs.py runs the real thing."""

from __future__ import annotations

from typing import Any

import pytest
from scipy import stats

from ..schemes.test_papers import load_script


class FakeRuns:
    """`Runs.learn` answered from a table: (scheme, seed) -> (time_to_target_s, final_accuracy)."""

    def __init__(self, table: dict[tuple[str, int], tuple[float | None, float]]):
        self.table = table
        self.calls: list[tuple[str, str, int, Any]] = []

    def learn(self, scenario: str, scheme: str, seed: int, extra: Any = ()) -> dict[str, Any]:
        self.calls.append((scenario, scheme, seed, extra))
        ttt, acc = self.table[(scheme, seed)]
        return {"target_accuracy": 0.6, "time_to_target_s": ttt, "final_accuracy": acc}


def test_speedup_row_is_mean_and_t_interval_of_per_seed_ratios() -> None:
    mod = load_script()
    claim = next(c for c in mod.learning_claims() if c.measure == "speedup")
    runs = FakeRuns({(claim.ours, 1): (10.0, 0.7), (claim.base, 1): (30.0, 0.7),
                     (claim.ours, 2): (10.0, 0.7), (claim.base, 2): (50.0, 0.7),
                     (claim.ours, 3): (None, 0.5), (claim.base, 3): (40.0, 0.7)})
    row = mod.learning_row(claim, runs, [1, 2, 3])
    # ratios 30/10 and 50/10; their std is sqrt(2) over n = 2 seeds
    half = stats.t.ppf(0.975, 1) * 2 ** 0.5 / 2 ** 0.5
    assert row["mean"] == pytest.approx(4.0)
    assert row["ci95"] == pytest.approx(half)
    assert row["simulated"] == f"4.00x ± {half:.2f} (2 seeds)"
    assert "not reached in 1 of 3 seeds" in row["note"]
    assert "60%" in row["note"]
    assert {c[2] for c in runs.calls} == {1, 2, 3}


def test_accuracy_row_in_points_with_its_overrides() -> None:
    mod = load_script()
    claim = next(c for c in mod.learning_claims() if c.paper == "002")
    assert claim.extra  # imbalanced data
    runs = FakeRuns({(claim.ours, 1): (5.0, 0.80), (claim.base, 1): (6.0, 0.70),
                     (claim.ours, 2): (5.0, 0.75), (claim.base, 2): (6.0, 0.75)})
    row = mod.learning_row(claim, runs, [1, 2])
    assert row["mean"] == pytest.approx(5.0)
    assert row["simulated"].startswith("+5.0 pt ± ")
    assert all(call[3] == claim.extra for call in runs.calls)
    assert "fleet.samples" in row["note"]


def test_a_target_missed_by_every_seed_is_said() -> None:
    mod = load_script()
    claim = next(c for c in mod.learning_claims() if c.measure == "speedup")
    runs = FakeRuns({(claim.ours, 1): (None, 0.4), (claim.base, 1): (None, 0.4)})
    row = mod.learning_row(claim, runs, [1])
    assert row["simulated"] == "target not reached"
    assert "not reached in 1 of 1 seeds" in row["note"]


def test_every_paper_has_learning_rows() -> None:
    mod = load_script()
    claims = mod.learning_claims()
    assert {c.paper for c in claims} == {"000", "001", "002"}
    assert not any("same steps" in c.claim for c in mod.claims())  # step-time rows replaced


def test_compressed_uplink_row_compresses_only_ours() -> None:
    mod = load_script()
    claim = next(c for c in mod.learning_claims() if c.ours_extra)
    assert claim.ours == claim.base == "fedmobillm"

    class ByExtra(FakeRuns):
        def learn(self, scenario: str, scheme: str, seed: int, extra: Any = ()) -> dict[str, Any]:
            self.calls.append((scenario, scheme, seed, extra))
            acc = 0.62 if extra == claim.ours_extra else 0.60
            return {"target_accuracy": 0.6, "time_to_target_s": 1.0, "final_accuracy": acc}

    runs = ByExtra({})
    row = mod.learning_row(claim, runs, [1, 2])
    assert row["mean"] == pytest.approx(2.0)
    assert sorted(c[3] for c in runs.calls) == sorted([(), (), claim.ours_extra,
                                                      claim.ours_extra])
    assert "fedmobillm compressed 62.0%" in row["note"]
