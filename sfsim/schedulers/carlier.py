"""Carlier's branch and bound: the exact answer for single tasks (K = 1).

Carlier (1982) solves ``1 | r_j, q_j | C_max`` exactly, in practice for thousands of jobs, by
repeatedly asking why Schrage's schedule is not better:

1. Run Schrage's rule. Its makespan is an upper bound (UB). Walk back from the job b that sets
   the makespan to the start a of the busy block containing it (the block starts at ``r_a``),
   so ``C_max = r_a + p_a + ... + p_b + q_b``.
2. Look in that block for the last job c with a shorter tail than b (``q_c < q_b``), the
   *interference job*. If there is none the schedule is optimal for this node: the block
   alone needs that long (its bound ``h`` equals the makespan).
3. Otherwise let J be the jobs after c up to b. In an optimal schedule c goes either after all
   of J or before all of J. Branch: raise c's release to ``min_J r + sum_J p`` (c after J), or
   raise c's tail to ``sum_J p + min_J q`` (c before J).
4. Bound each child by the preemptive bound of its modified data and by ``h(J)`` and
   ``h(J + c)``; drop children whose bound reaches the incumbent.

Nodes are explored best-bound first. Changing heads and tails only removes schedules, so every
Schrage order found at any node is a feasible order of the original problem: it is evaluated
on the original data. Search stops at ``max_nodes`` or ``time_limit_s``; then the answer is the
best order found, not proven optimal, with the smallest open bound as lower bound.
For chains (K > 1) there is no Carlier-style algorithm here: ``carlier`` refuses them with an
InputError that points to ``milp`` and ``local_search``.
"""

from __future__ import annotations

import heapq
import time

import numpy as np

from sfsim.errors import InputError
from sfsim.schedulers.base import Instance, Plan, Scheduler
from sfsim.schedulers.bounds import block_bound, preemptive_bound
from sfsim.schedulers.registry import register


def schrage_sequence(
    r: list[float], p: list[float], q: list[float]
) -> tuple[list[int], list[float]]:
    """Schrage's non-delay longest-tail sequence and the start time of each position."""
    n = len(r)
    by_release = sorted(range(n), key=lambda i: (r[i], i))
    ready: list[tuple[float, int]] = []
    seq: list[int] = []
    starts: list[float] = []
    t = 0.0
    nxt = 0
    while nxt < n or ready:
        if not ready:
            t = max(t, r[by_release[nxt]])
        while nxt < n and r[by_release[nxt]] <= t:
            i = by_release[nxt]
            heapq.heappush(ready, (-q[i], i))
            nxt += 1
        _, i = heapq.heappop(ready)
        seq.append(i)
        starts.append(t)
        t += p[i]
    return seq, starts


def makespan_of(seq: list[int], r: list[float], p: list[float], q: list[float]) -> float:
    t = 0.0
    best = 0.0
    for i in seq:
        t = max(t, r[i]) + p[i]
        best = max(best, t + q[i])
    return best


def _critical(
    seq: list[int], starts: list[float], r: list[float], p: list[float], q: list[float]
) -> tuple[float, int | None, list[int]]:
    """Makespan on (r, p, q), the interference job c (None if optimal) and the set J."""
    ends = [s + p[i] for s, i in zip(starts, seq, strict=True)]
    values = [e + q[i] for e, i in zip(ends, seq, strict=True)]
    cmax = max(values)
    pos_b = max(k for k, v in enumerate(values) if v == cmax)
    pos_a = pos_b
    while pos_a > 0 and starts[pos_a] == ends[pos_a - 1]:
        pos_a -= 1
    qb = q[seq[pos_b]]
    for pos_c in range(pos_b - 1, pos_a - 1, -1):
        if q[seq[pos_c]] < qb:
            return cmax, seq[pos_c], seq[pos_c + 1 : pos_b + 1]
    return cmax, None, []


def carlier(
    r: list[float],
    p: list[float],
    q: list[float],
    *,
    max_nodes: int = 100_000,
    time_limit_s: float | None = 60.0,
) -> tuple[list[int], float, float, bool]:
    """Solve ``1|r_j,q_j|C_max``: (best sequence, its makespan, lower bound, proven optimal)."""
    if not r:
        return [], 0.0, 0.0, True
    deadline = None if time_limit_s is None else time.perf_counter() + time_limit_s
    root_lb = preemptive_bound(r, p, q)
    best_seq: list[int] = []
    best = float("inf")
    open_nodes: list[tuple[float, int, list[float], list[float]]] = [(root_lb, 0, r, q)]
    counter = 0
    while open_nodes:
        lb, _, nr, nq = open_nodes[0]
        if lb >= best * (1 - 1e-12) or counter >= max_nodes:
            break
        if deadline is not None and time.perf_counter() > deadline:
            break
        heapq.heappop(open_nodes)
        seq, starts = schrage_sequence(nr, p, nq)
        value = makespan_of(seq, r, p, q)
        if value < best:
            best, best_seq = value, seq
        node_ub, c, block = _critical(seq, starts, nr, p, nq)
        if c is None or node_ub <= lb:
            continue  # Schrage is optimal for this node's data
        r_block = min(nr[i] for i in block)
        q_block = min(nq[i] for i in block)
        p_block = sum(p[i] for i in block)
        for after in (True, False):
            cr, cq = list(nr), list(nq)
            if after:  # c after all of J
                cr[c] = max(cr[c], r_block + p_block)
            else:  # c before all of J
                cq[c] = max(cq[c], q_block + p_block)
            child_lb = max(lb, block_bound(cr, p, cq, block), block_bound(cr, p, cq, [*block, c]))
            if child_lb >= best:
                continue
            child_lb = max(child_lb, preemptive_bound(cr, p, cq))
            if child_lb < best:
                counter += 1
                heapq.heappush(open_nodes, (child_lb, counter, cr, cq))
    proven = not open_nodes or open_nodes[0][0] >= best * (1 - 1e-12)
    bound = best if proven else min(best, open_nodes[0][0])
    return best_seq, best, bound, proven


@register
class Carlier(Scheduler):
    name = "carlier"
    description = "Carlier's exact branch and bound for single tasks (K=1); proves optimality."
    supports_chains = False

    def __init__(self, time_limit_s: float | None = 60.0, max_nodes: int = 100_000) -> None:
        self.time_limit_s = time_limit_s
        self.max_nodes = max_nodes

    def plan(self, instance: Instance, rng: np.random.Generator) -> Plan:
        if not instance.is_single:
            raise InputError(
                "scheduler 'carlier' solves only single-task jobs (K = 1); "
                "for chains of K > 1 tasks use 'milp' (exact, small n) or 'local_search'"
            )
        jobs = instance.jobs
        r = [j.release_s for j in jobs]
        p = [j.server_s[0] for j in jobs]
        q = [j.tail_s for j in jobs]
        seq, _, bound, proven = carlier(
            r, p, q, max_nodes=self.max_nodes, time_limit_s=self.time_limit_s
        )
        return Plan(order=tuple(jobs[i].id for i in seq), lower_bound_s=bound, optimal=proven)

    def order(self, instance: Instance, rng: np.random.Generator) -> list[str]:
        return list(self.plan(instance, rng).order)
