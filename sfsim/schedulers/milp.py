"""An exact mixed-integer model of the round, for a general solver (CBC or HiGHS via PuLP).

**Position-based (assignment) model.** Number the N server tasks i and the N server slots
k = 1..N. A binary ``x[i,k]`` says task i runs in slot k; ``S[k]`` is the start of slot k and
``C`` the makespan. With heads a_i, server times p_i and remaining times b_i (see
``bounds.py``)::

    minimise C
    sum_k x[i,k] = 1, sum_i x[i,k] = 1                 each task one slot, each slot one task
    S[k]   >= sum_i a_i x[i,k]                          a slot starts after its task's head
    S[k+1] >= S[k] + sum_i p_i x[i,k]                   one task at a time, slots in sequence
    C      >= S[k] + sum_i (p_i + b_i) x[i,k]           the round ends after every tail
    LB <= C <= UB                                       combinatorial bound, heuristic makespan

For single tasks (K = 1) heads are releases and b_i are tails, and this is exact without any
big-M constant; its LP relaxation is tighter than the disjunctive big-M model (one binary per
pair of jobs, ``S_j >= C_i - M y_ij``), which did not prove n = 20 within a minute where the
position-based model proves n <= 20 in seconds (figures in ``docs/schedulers.md``). For chains
the head/tail rows are only relaxations (valid cuts) and the chain is enforced through task
starts ``t[i]`` tied to their slot's start: ``|t[i] - S[k]| <= UB (1 - x[i,k])``,
``t[next] >= t[i] + p_i + lag_i``, and a job's tasks take slots in chain order. Starts and C
never exceed UB, so UB is a valid big-M.

The preemptive lower bound of ``bounds.py`` is C's lower limit: on most random instances it
equals the optimum, so the solver stops as soon as it finds a schedule reaching it (and when a
priority rule already reaches it, no solver is called at all). ``warm_start=True`` (CBC only,
off by default) starts CBC from the best priority-rule order; on random n = 20 instances it
sped up most proofs but stalled one past 60 s that CBC proved in 22 s from scratch. PuLP's
status can read "Optimal" when a time limit stopped the search, so a proof of optimality is
taken from ``prob.sol_status`` only. If the solver fails or finds nothing, the scheduler warns
and falls back to Schrage's rule; a missing solver is an InputError.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pulp

from sfsim.errors import InputError
from sfsim.schedulers.base import Instance, Plan, Scheduler
from sfsim.schedulers.bounds import lower_bound
from sfsim.schedulers.evaluate import check_order, makespan, schedule_times
from sfsim.schedulers.registry import register
from sfsim.schedulers.rules import LongestTail, Schrage

SOLVERS = ("cbc", "highs")
# Solvers stop at a default relative gap (HiGHS: 1e-4); "optimal" here must mean proven.
GAPS = {"gapRel": 1e-9, "gapAbs": 1e-9}


@dataclass
class Model:
    """A built model and the handles needed to read the order back."""

    prob: pulp.LpProblem
    x: dict[tuple[int, int], pulp.LpVariable]
    slot_start: list[pulp.LpVariable]
    task_start: list[pulp.LpVariable]
    cmax: pulp.LpVariable
    tasks: list[tuple[str, int]]  # task index -> (job id, task number)


def _variable_factory(prob: pulp.LpProblem) -> Any:
    """``prob.add_variable`` on PuLP >= 3.3 (bare LpVariable is deprecated there)."""
    if hasattr(prob, "add_variable"):
        return lambda name, lo, hi, cat: prob.add_variable(name, lowBound=lo, upBound=hi, cat=cat)
    return lambda name, lo, hi, cat: pulp.LpVariable(name, lowBound=lo, upBound=hi, cat=cat)


def build_model(instance: Instance, upper_bound_s: float, lower_bound_s: float = 0.0) -> Model:
    """The position-based model of ``instance``; names use indices only (``x_task_slot``)."""
    tasks = [(job.id, k) for job in instance.jobs for k in range(job.k)]
    jobs = {job.id: job for job in instance.jobs}
    n = len(tasks)
    head = [jobs[j].head_s(k) for j, k in tasks]
    work = [jobs[j].server_s[k] for j, k in tasks]
    rest = [jobs[j].remaining_s(k) for j, k in tasks]
    ub = float(upper_bound_s)
    prob = pulp.LpProblem("round_makespan", pulp.LpMinimize)
    var = _variable_factory(prob)
    x = {(i, k): var(f"x_{i}_{k}", 0, 1, pulp.LpBinary) for i in range(n) for k in range(n)}
    slot = [var(f"S_{k}", 0, ub, pulp.LpContinuous) for k in range(n)]
    cmax = var("C", float(lower_bound_s), ub, pulp.LpContinuous)
    prob += cmax
    for i in range(n):
        prob += pulp.lpSum(x[i, k] for k in range(n)) == 1, f"task_{i}"
    for k in range(n):
        prob += pulp.lpSum(x[i, k] for i in range(n)) == 1, f"slot_{k}"
        prob += slot[k] >= pulp.lpSum(head[i] * x[i, k] for i in range(n)), f"head_{k}"
        prob += (
            cmax >= slot[k] + pulp.lpSum((work[i] + rest[i]) * x[i, k] for i in range(n)),
            (f"tail_{k}"),
        )
        if k + 1 < n:
            prob += (
                slot[k + 1] >= slot[k] + pulp.lpSum(work[i] * x[i, k] for i in range(n)),
                (f"seq_{k}"),
            )
    starts: list[pulp.LpVariable] = []
    if not instance.is_single:
        starts = [var(f"t_{i}", 0, ub, pulp.LpContinuous) for i in range(n)]
        for i in range(n):
            for k in range(n):
                prob += starts[i] - slot[k] <= ub * (1 - x[i, k]), f"link_up_{i}_{k}"
                prob += slot[k] - starts[i] <= ub * (1 - x[i, k]), f"link_dn_{i}_{k}"
        for i in range(n - 1):
            (j, k), (j2, _) = tasks[i], tasks[i + 1]
            if j2 == j:  # task i+1 is the next task of the same job
                lag = jobs[j].lag_s[k]
                prob += starts[i + 1] >= starts[i] + work[i] + lag, f"lag_{i}"
                prob += (
                    (
                        pulp.lpSum(s * x[i + 1, s] for s in range(n))
                        >= pulp.lpSum(s * x[i, s] for s in range(n)) + 1
                    ),
                    f"chain_{i}",
                )
    return Model(prob, x, slot, starts, cmax, tasks)


def _warm_start(model: Model, instance: Instance, order: list[str]) -> None:
    index = {task: i for i, task in enumerate(model.tasks)}
    for var in model.x.values():
        var.setInitialValue(0)
    times = schedule_times(instance, order)
    for k, t in enumerate(times):
        i = index[(t.job_id, t.task)]
        model.x[i, k].setInitialValue(1)
        model.slot_start[k].setInitialValue(t.start_s)
        if model.task_start:
            model.task_start[i].setInitialValue(t.start_s)
    model.cmax.setInitialValue(makespan(instance, order))


def _read_order(model: Model) -> list[str]:
    n = len(model.tasks)
    slot_of = {}
    for (i, k), var in model.x.items():
        if (var.value() or 0.0) > 0.5:
            slot_of[k] = i
    if len(slot_of) != n:
        raise ValueError("solver returned an incomplete assignment")
    return [model.tasks[slot_of[k]][0] for k in range(n)]


@register
class Milp(Scheduler):
    name = "milp"
    description = "Position-based MILP (PuLP; CBC or HiGHS) for single tasks and chains."

    def __init__(
        self,
        solver: str = "cbc",
        time_limit_s: float = 60.0,
        max_tasks: int = 120,
        warm_start: bool = False,
    ) -> None:
        self.solver = solver
        self.time_limit_s = time_limit_s
        self.max_tasks = max_tasks
        self.warm_start = warm_start

    def _solver(self) -> pulp.LpSolver:
        name = self.solver.lower()
        if name == "cbc":
            with warnings.catch_warnings():  # PuLP 3.3 deprecates the bundled CBC for 4.0
                warnings.simplefilter("ignore", DeprecationWarning)
                cbc = pulp.PULP_CBC_CMD(
                    msg=False,
                    timeLimit=self.time_limit_s,
                    warmStart=self.warm_start,
                    threads=1,
                    **GAPS,
                )
            if not cbc.available():
                raise InputError(
                    "milp solver 'cbc' is not available in this PuLP installation; "
                    "install it (pip install 'pulp[cbc]') or use solver='highs'"
                )
            return cbc
        if name == "highs":
            solver = pulp.HiGHS(msg=False, timeLimit=self.time_limit_s, threads=1, **GAPS)
            if not solver.available():
                raise InputError(
                    "milp solver 'highs' needs the highspy package: pip install 'sfsim[highs]'"
                )
            return solver
        raise InputError(
            f"unknown milp solver {self.solver!r}; valid solvers: {', '.join(SOLVERS)}"
        )

    def plan(self, instance: Instance, rng: np.random.Generator) -> Plan:
        bound = lower_bound(instance)
        if not instance.jobs:
            return Plan((), 0.0, True)
        solver = self._solver()
        starts = [Schrage().order(instance, rng), LongestTail().order(instance, rng)]
        incumbent = min(starts, key=lambda o: makespan(instance, o))
        ub = makespan(instance, incumbent)
        if ub <= bound:
            return Plan(tuple(incumbent), bound, True, "heuristic order meets the lower bound")
        if instance.n_tasks > self.max_tasks:
            return self._fallback(instance, rng, bound, f"{instance.n_tasks} tasks > max_tasks")
        model = build_model(instance, ub, bound)
        if self.warm_start:
            _warm_start(model, instance, incumbent)
        try:
            model.prob.solve(solver)
        except pulp.PulpSolverError as exc:
            return self._fallback(instance, rng, bound, f"solver failed: {exc}")
        status = pulp.LpSolution.get(model.prob.sol_status, str(model.prob.sol_status))
        if model.prob.sol_status not in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            return self._fallback(instance, rng, bound, f"solver status {status!r}")
        try:
            order = _read_order(model)
            check_order(instance, order)
        except ValueError as exc:
            return self._fallback(instance, rng, bound, f"unusable solution ({status}): {exc}")
        value = makespan(instance, order)
        if value > ub:  # never return worse than the best priority rule
            order, value = incumbent, ub
        proven = model.prob.sol_status == pulp.LpSolutionOptimal
        return Plan(tuple(order), value if proven else bound, proven or value <= bound, status)

    def _fallback(
        self, instance: Instance, rng: np.random.Generator, bound: float, why: str
    ) -> Plan:
        warnings.warn(f"milp: {why}; falling back to 'schrage'", RuntimeWarning, stacklevel=3)
        order = Schrage().order(instance, rng)
        return Plan(tuple(order), bound, makespan(instance, order) <= bound, f"fallback: {why}")

    def order(self, instance: Instance, rng: np.random.Generator) -> list[str]:
        return list(self.plan(instance, rng).order)
