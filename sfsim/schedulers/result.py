"""Solving an instance and reporting how good the answer is.

:func:`solve` runs one scheduler on one instance and returns a flat, JSON-ready
:class:`ScheduleResult`: the order, its makespan (evaluated here, never taken from the
scheduler's own claims), the best lower bound known (the scheduler's own, if it proves one, or
the preemptive bound of ``bounds.py``), whether the order is *proven* optimal, and the wall
time of the scheduler alone. ``optimal`` is True only with a proof: an exact method that
finished (``carlier``; ``milp`` with solver status optimal) or a makespan equal to the lower
bound. The relative gap ``(makespan - bound) / makespan`` bounds the distance to the optimum.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from sfsim.schedulers.base import Instance, Scheduler
from sfsim.schedulers.bounds import lower_bound
from sfsim.schedulers.evaluate import makespan
from sfsim.schedulers.registry import get_scheduler

REL_TOL = 1e-9  # a makespan within this relative distance of a bound meets it


@dataclass(frozen=True)
class ScheduleResult:
    """One scheduler's answer for one instance."""

    scheduler: str
    order: tuple[str, ...]
    makespan_s: float
    lower_bound_s: float
    optimal: bool
    solve_s: float
    status: str = ""

    @property
    def gap(self) -> float:
        """Relative distance to the lower bound: an upper bound on the gap to the optimum."""
        if self.makespan_s <= 0.0:
            return 0.0
        return max(0.0, (self.makespan_s - self.lower_bound_s) / self.makespan_s)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (the order as a list)."""
        out = asdict(self)
        out["order"] = list(self.order)
        return out


def solve(
    scheduler: Scheduler | str,
    instance: Instance,
    rng: np.random.Generator | None = None,
    **params: Any,
) -> ScheduleResult:
    """Run ``scheduler`` (an object, or a registered name built with ``params``) on ``instance``.

    ``rng`` defaults to ``numpy.random.default_rng(0)`` so that a call without one is still
    reproducible.
    """
    if isinstance(scheduler, str):
        scheduler = get_scheduler(scheduler, **params)
    elif params:
        raise TypeError("params are only accepted together with a scheduler name")
    if rng is None:
        rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    plan = scheduler.plan(instance, rng)
    solve_s = time.perf_counter() - t0
    value = makespan(instance, plan.order)
    bound = lower_bound(instance)
    if plan.lower_bound_s is not None:
        bound = max(bound, plan.lower_bound_s)
    bound = min(bound, value)  # a proven bound above the makespan can only be rounding
    meets = value <= bound * (1.0 + REL_TOL)
    return ScheduleResult(
        scheduler=scheduler.name,
        order=tuple(plan.order),
        makespan_s=value,
        lower_bound_s=bound,
        optimal=bool(plan.optimal or meets),
        solve_s=solve_s,
        status=plan.status,
    )
