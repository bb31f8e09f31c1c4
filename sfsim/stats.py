"""Summaries over repeated runs: a mean and its Student-t confidence interval.

Every figure sfsim and its analysis scripts report over seeds goes through `mean_ci`, so a
"± x" means the same thing everywhere: the half-width of the two-sided Student-t interval of
the mean (sample standard deviation, n − 1 degrees of freedom).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def mean_ci(values: Iterable[float], level: float = 0.95) -> tuple[float, float]:
    """The mean of ``values`` and the half-width of its ``level`` Student-t interval.

    NaN values are left out. With fewer than two values the half-width is NaN (an interval
    needs a spread), and with none the mean is NaN too.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), not {level!r}")
    x = np.asarray(list(values), dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return math.nan, math.nan
    if len(x) < 2:
        return float(x[0]), math.nan
    from scipy import stats

    t = float(stats.t.ppf(0.5 + level / 2.0, len(x) - 1))
    return float(x.mean()), t * float(x.std(ddof=1)) / math.sqrt(len(x))
