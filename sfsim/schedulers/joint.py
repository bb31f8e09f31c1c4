"""Choosing every device's cut and the server order together (``training.cut_policy: joint``).

Each device u has a set of admissible cuts (those whose peak memory fits it); at cut c its round
is a scheduling :class:`Job` ``J_u(c)`` (release, server times, lags, tail). The joint problem is

    minimise over cut vectors (c_u) and server orders π:   makespan(Instance(J_u(c_u)), π)

This module solves it on the jobs alone (it knows nothing of memory or cost models: the caller
hands it ``options[u][c] = J_u(c)`` for the admissible cuts only).

**Exact: branch and bound over cut vectors.** Devices are assigned one at a time (the one with
the most admissible cuts first). A node's bound is the lower bound of ``bounds.lower_bound`` on
the instance made of the assigned devices' jobs and, for each unassigned device, a *relaxed job*
whose release, every server time, every lag and tail are the minima over its admissible cuts.
That is valid: the preemptive bound of the relaxed-task problem does not decrease when a head,
a processing time or a tail grows, and every job ``J_u(c)`` is at least its relaxed job in every
component (so every head ``a_jk`` and remaining time ``b_jk`` too). Children are visited in order
of their bound and cut off once the bound reaches the incumbent. At a leaf (every cut chosen)
the order is solved exactly: Carlier's branch and bound for K = 1, the position-based MILP for
K > 1 (``milp.py``), skipped when Schrage's order already meets the leaf's lower bound. The
answer is *proven optimal* when the tree was searched to the end within ``max_nodes`` and every
leaf that could still beat the incumbent was solved to proven optimality.

**Large fleets: local search over cut vectors.** From each starting vector (the caller's other
cut policies, best first; the best answer wins), move one device's cut one admissible step down
or up, evaluate the vector by the makespan of Schrage's order on it (ties broken by the sum of
the jobs' completion times, so that moves off the critical path still count), accept the first
strict improvement of that pair, sweep until no move improves or ``max_evals`` vectors were
evaluated; finally the order of the chosen vector is improved with Carlier (K = 1,
node-limited) or kept from Schrage (K > 1). Deterministic: no randomness anywhere, devices are
visited in the caller's order, ties keep the earlier.

**A fixed rule.** When the scheme fixes its order (``rule``, e.g. ``fifo`` for ``sfl_v2``) the
objective is the makespan of *that* rule's order on each vector; the bounds stay valid (no order
beats the optimum) and leaves are evaluated by the rule instead of an exact order solve.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sfsim.schedulers.base import Instance, Job
from sfsim.schedulers.bounds import lower_bound
from sfsim.schedulers.carlier import Carlier
from sfsim.schedulers.evaluate import completion_times, makespan
from sfsim.schedulers.milp import Milp
from sfsim.schedulers.registry import get_scheduler
from sfsim.schedulers.rules import Schrage

#: device id -> admissible cut -> that device's job at that cut
Options = Mapping[str, Mapping[int, Job]]


@dataclass(frozen=True)
class JointResult:
    """The joint choice: cuts, the order found for them, its makespan and how it was found."""

    cuts: dict[str, int]
    order: tuple[str, ...]
    makespan_s: float
    optimal: bool  # proven optimal over every admissible cut vector and every order
    method: str  # "branch_and_bound" or "local_search"
    evaluated: int  # cut vectors whose makespan was computed
    lower_bound_s: float | None = None  # a proven lower bound (branch and bound only)


def relaxed_job(job_id: str, jobs: list[Job]) -> Job:
    """A job no larger, in any component, than each of ``jobs`` (same K)."""
    k = jobs[0].k
    if any(j.k != k for j in jobs):
        raise ValueError(f"device {job_id!r}: every cut must give the same number of tasks")
    return Job(
        id=job_id,
        release_s=min(j.release_s for j in jobs),
        server_s=tuple(min(j.server_s[i] for j in jobs) for i in range(k)),
        lag_s=tuple(min(j.lag_s[i] for j in jobs) for i in range(k - 1)),
        tail_s=min(j.tail_s for j in jobs),
    )


def instance_of(options: Options, cuts: Mapping[str, int]) -> Instance:
    """The round's instance for a cut vector (jobs in the options' order)."""
    return Instance(tuple(options[u][cuts[u]] for u in options))


def _check(options: Options) -> None:
    for u, per in options.items():
        if not per:
            raise ValueError(f"device {u!r} has no admissible cut")
        for c, job in per.items():
            if job.id != u:
                raise ValueError(f"device {u!r} cut {c}: job id {job.id!r} differs")


class _Evaluator:
    """Order and makespan of one cut vector: a fixed rule, Schrage, or an exact solve."""

    def __init__(self, rule: str | None, exact_time_limit_s: float, carlier_nodes: int) -> None:
        self.rule = get_scheduler(rule) if rule is not None else None
        self.time_limit_s = exact_time_limit_s
        self.carlier_nodes = carlier_nodes
        self.evaluated = 0
        self.solves = 0  # exact order solves (Carlier or MILP) actually run

    def quick(self, inst: Instance) -> tuple[list[str], float]:
        self.evaluated += 1
        sched = self.rule if self.rule is not None else Schrage()
        order = sched.order(inst, np.random.default_rng(0))
        return order, makespan(inst, order)

    def scored(self, inst: Instance) -> tuple[list[str], float, float]:
        """``quick`` plus the sum of the jobs' completion times (the local search's tie-break:
        most moves leave the makespan alone, this tells the better of two equal ones)."""
        order, value = self.quick(inst)
        return order, value, sum(completion_times(inst, order).values())

    def exact(self, inst: Instance, incumbent_s: float) -> tuple[list[str], float, bool]:
        """Best order known for ``inst`` and whether it is proven optimal (or can't win)."""
        order, value = self.quick(inst)
        if self.rule is not None:
            return order, value, True  # the rule's order is the objective itself
        bound = lower_bound(inst)
        if value <= bound:
            return order, value, True
        if bound >= incumbent_s:
            return order, value, True  # cannot beat the incumbent whatever the order
        solver = (Carlier(time_limit_s=None, max_nodes=self.carlier_nodes) if inst.is_single
                  else Milp(time_limit_s=self.time_limit_s))
        self.solves += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # milp's fallback warns
            plan = solver.plan(inst, np.random.default_rng(0))
        got = makespan(inst, plan.order)
        if got < value:
            order, value = list(plan.order), got
        lb = plan.lower_bound_s
        proven = plan.optimal or (lb is not None and lb >= incumbent_s)
        return order, value, proven


def branch_and_bound(
    options: Options,
    start: Mapping[str, int],
    *,
    rule: str | None = None,
    max_nodes: int = 20_000,
    max_solves: int | None = None,
    exact_time_limit_s: float = 10.0,
    carlier_nodes: int = 100_000,
) -> JointResult:
    """Exact joint cut and order (see the module docstring); ``start`` is the first incumbent."""
    _check(options)
    ev = _Evaluator(rule, exact_time_limit_s, carlier_nodes)
    first = instance_of(options, start)
    order0, value0, _ = ev.exact(first, float("inf"))
    best: list = [dict(start), order0, value0]
    ids = sorted(options, key=lambda u: -len(options[u]))  # stable: ties keep caller's order
    relaxed = {u: relaxed_job(u, list(options[u].values())) for u in options}
    nodes = 0
    complete = True
    proven_leaves = True

    def bound(assign: dict[str, int]) -> float:
        jobs = tuple(options[u][assign[u]] if u in assign else relaxed[u] for u in options)
        return lower_bound(Instance(jobs))

    root = bound({})

    def visit(depth: int, assign: dict[str, int]) -> None:
        nonlocal nodes, complete, proven_leaves
        if depth == len(ids):
            if max_solves is not None and ev.solves >= max_solves:
                complete = False
                return
            order, value, proven = ev.exact(instance_of(options, assign), best[2])
            if value < best[2]:
                best[:] = [dict(assign), order, value]
            proven_leaves = proven_leaves and proven
            return
        u = ids[depth]
        children = sorted(
            ((bound({**assign, u: c}), c) for c in sorted(options[u])), key=lambda t: t
        )
        for b, c in children:
            if b >= best[2]:
                return
            if nodes >= max_nodes:
                complete = False
                return
            nodes += 1
            visit(depth + 1, {**assign, u: c})

    visit(0, {})
    cuts = {u: best[0][u] for u in options}
    return JointResult(cuts, tuple(best[1]), best[2], complete and proven_leaves,
                       "branch_and_bound", ev.evaluated, min(root, best[2]))


def local_search(
    options: Options,
    start: Mapping[str, int],
    *,
    rule: str | None = None,
    max_evals: int = 2_000,
    carlier_nodes: int = 20_000,
) -> JointResult:
    """Cut moves of ±1 admissible step, first improvement, from ``start`` (module docstring)."""
    _check(options)
    ev = _Evaluator(rule, 10.0, carlier_nodes)
    steps = {u: sorted(per) for u, per in options.items()}
    cur = dict(start)
    order, value, total = ev.scored(instance_of(options, cur))
    improved = True
    while improved and ev.evaluated < max_evals:
        improved = False
        for u in options:
            pos = steps[u].index(cur[u])
            for nxt in (pos - 1, pos + 1):
                if not 0 <= nxt < len(steps[u]) or ev.evaluated >= max_evals:
                    continue
                cand = {**cur, u: steps[u][nxt]}
                o, v, t = ev.scored(instance_of(options, cand))
                if (v, t) < (value, total):
                    cur, order, value, total, improved = cand, o, v, t, True
                    break
    inst = instance_of(options, cur)
    if rule is None and inst.is_single:
        plan = Carlier(time_limit_s=None, max_nodes=carlier_nodes).plan(
            inst, np.random.default_rng(0))
        got = makespan(inst, plan.order)
        if got < value:
            order, value = list(plan.order), got
    return JointResult(cur, tuple(order), value, False, "local_search", ev.evaluated)


def joint_cuts(
    options: Options,
    starts: Sequence[Mapping[str, int]],
    *,
    rule: str | None = None,
    exact_max_devices: int = 8,
    exact_max_devices_chains: int = 3,
    max_nodes: int = 20_000,
    max_chain_solves: int = 60,
    max_evals: int = 2_000,
) -> JointResult:
    """Exact branch and bound when at most ``exact_max_devices`` devices have a choice (K = 1;
    ``exact_max_devices_chains`` and at most ``max_chain_solves`` MILP solves for K > 1, whose
    leaves cost a MILP each), else local search; ``starts`` (at least one cut vector) seed the
    incumbent. If the branch and bound stops at a limit without a proof, a local search from
    its answer follows and the answer is not claimed optimal."""
    if not starts:
        raise ValueError("joint_cuts needs at least one starting cut vector")
    ev = _Evaluator(rule, 10.0, 0)
    start = min(starts, key=lambda s: ev.quick(instance_of(options, s))[1])
    choosing = sum(1 for per in options.values() if len(per) > 1)
    chains = any(j.k > 1 for per in options.values() for j in per.values())
    if choosing <= (exact_max_devices_chains if chains and rule is None else exact_max_devices):
        res = branch_and_bound(options, start, rule=rule, max_nodes=max_nodes,
                               max_solves=max_chain_solves if chains else None)
        if res.optimal:
            return res
        more = _multi_start(options, [res.cuts, *starts], rule, max_evals)
        if more.makespan_s < res.makespan_s:
            return JointResult(more.cuts, more.order, more.makespan_s, False,
                               "branch_and_bound+local_search",
                               res.evaluated + more.evaluated, res.lower_bound_s)
        return res
    return _multi_start(options, [start, *starts], rule, max_evals)


def _multi_start(options: Options, starts: Sequence[Mapping[str, int]], rule: str | None,
                 max_evals: int) -> JointResult:
    """A local search from each distinct start (in order); the best answer, earlier on ties.

    The starts lie in different basins (max_fit: everything on the devices; balanced and
    min_time: light devices): on the paper-000 fleet the best basin differs between fleets."""
    best: JointResult | None = None
    seen: list[dict[str, int]] = []
    evaluated = 0
    for s in starts:
        if dict(s) in seen:
            continue
        seen.append(dict(s))
        res = local_search(options, s, rule=rule, max_evals=max_evals)
        evaluated += res.evaluated
        if best is None or res.makespan_s < best.makespan_s:
            best = res
    assert best is not None
    return JointResult(best.cuts, best.order, best.makespan_s, False, best.method, evaluated)
