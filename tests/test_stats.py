"""`sfsim.stats.mean_ci`: the interval every "mean ± x over seeds" in sfsim reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from sfsim.stats import mean_ci

finite = st.floats(-1e6, 1e6, allow_nan=False)


@given(st.lists(finite, min_size=2, max_size=30), st.sampled_from([0.9, 0.95, 0.99]))
def test_matches_scipys_t_interval(values: list[float], level: float) -> None:
    m, half = mean_ci(values, level)
    x = np.asarray(values)
    assert m == pytest.approx(x.mean(), rel=1e-12, abs=1e-9)
    sem = stats.sem(x)
    if sem == 0:
        assert half == 0
    else:
        lo, hi = stats.t.interval(level, len(x) - 1, loc=x.mean(), scale=sem)
        # values with a tiny spread around a large mean lose digits in either computation
        assert half == pytest.approx((hi - lo) / 2, rel=1e-6, abs=1e-12 * np.abs(x).max())


def test_too_few_values_and_nans() -> None:
    assert math.isnan(mean_ci([])[0]) and math.isnan(mean_ci([])[1])
    m, half = mean_ci([3.0])
    assert m == 3.0 and math.isnan(half)
    assert mean_ci([1.0, float("nan"), 3.0]) == mean_ci([1.0, 3.0])  # NaNs are left out


def test_known_value() -> None:
    """1, 2, 3: mean 2, s = 1; with 2 degrees of freedom the t quantile has a closed form,
    t_p = (2p - 1) / sqrt(2 p (1 - p)) (4.3027 at p = 0.975), so half = t_p / sqrt(3)."""
    p = 0.975
    t = (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    m, half = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and half == pytest.approx(t / math.sqrt(3), rel=1e-10)


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.1])
def test_bad_level(level: float) -> None:
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0, 2.0], level)
