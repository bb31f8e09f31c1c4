"""Lower bounds on the best possible round length, and why they are valid.

A lower bound LB says: no order, however clever, finishes the round before LB. Comparing a
scheduler's makespan with LB bounds its gap to the unknown optimum from above, and a makespan
equal to LB is proven optimal.

**Single tasks (K = 1): the preemptive Jackson bound.** Allow the server to interrupt a job
and resume it later. Then the rule "always run the released job with the longest tail,
switching whenever a job with a longer tail is released" (preemptive Schrage / Jackson) is
optimal (Horn 1974; Carlier 1982). Every non-preemptive schedule is also a preemptive one, so
the preemptive optimum can only be smaller: it is a lower bound. It dominates the simpler
bounds ``max_j r_j + p_j + q_j`` and, for every subset J of jobs,
``h(J) = min_J r + sum_J p + min_J q`` (the server must do all of J's work after the first
of them is released, and the last of them still needs at least the smallest tail).

**Chains (K > 1): relax the chain, keep the machine.** For task k of job j define its head
``a_jk = r_j + sum_{i<k} (p_ji + lag_ji)`` and its remaining time
``b_jk = sum_{i>=k} lag_ji + sum_{i>k} p_ji + q_j``. In every feasible schedule, by induction
along the chain, task k cannot start before ``a_jk`` (its predecessors take at least their
server times and lags) and the job cannot be done before task k's end plus ``b_jk``. So every
feasible schedule of the chains is a feasible schedule of the relaxed problem in which all
tasks are independent single jobs with heads ``a_jk``, times ``p_jk`` and tails ``b_jk``, with
the same makespan; the preemptive bound of that relaxed problem is therefore a lower bound for
the chains. It includes each job's own critical path ``r_j + sum p + sum lag + q_j`` (the
bound is at least ``a + p + b`` of any task), which we also take explicitly for clarity.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from sfsim.schedulers.base import Instance


def preemptive_bound(
    heads_s: Sequence[float], work_s: Sequence[float], tails_s: Sequence[float]
) -> float:
    """Optimal makespan of ``1 | r_j, q_j, pmtn | C_max``: run the released job with the
    longest tail, preempting it when a job with a longer tail is released. O(n log n)."""
    push, pop = heapq.heappush, heapq.heappop
    left = list(work_s)
    ready: list[tuple[float, int]] = []  # (-tail, job): the longest tail on top
    t = 0.0
    best = 0.0
    for i in sorted(range(len(left)), key=heads_s.__getitem__):
        head = heads_s[i]
        while ready and t < head:  # run the top job until it ends or the next release
            neg_tail, j = ready[0]
            if t + left[j] <= head:
                t += left[j]
                pop(ready)
                best = max(best, t - neg_tail)
            else:
                left[j] -= head - t
                t = head
        t = max(t, head)
        push(ready, (-tails_s[i], i))
    while ready:  # no more releases: finish in longest-tail order
        neg_tail, j = pop(ready)
        t += left[j]
        best = max(best, t - neg_tail)
    return best


def relaxed_tasks(instance: Instance) -> tuple[list[float], list[float], list[float]]:
    """Heads, server times and tails of every task, treated as independent single jobs."""
    heads: list[float] = []
    work: list[float] = []
    tails: list[float] = []
    for job in instance.jobs:
        for k in range(job.k):
            heads.append(job.head_s(k))
            work.append(job.server_s[k])
            tails.append(job.remaining_s(k))
    return heads, work, tails


def critical_path_bound(instance: Instance) -> float:
    """The longest single job on its own: no schedule can beat any job's critical path."""
    return max((job.critical_path_s() for job in instance.jobs), default=0.0)


def lower_bound(instance: Instance) -> float:
    """Best lower bound this module knows for the instance (single tasks or chains)."""
    if not instance.jobs:
        return 0.0
    return max(preemptive_bound(*relaxed_tasks(instance)), critical_path_bound(instance))


def block_bound(
    heads_s: Sequence[float], work_s: Sequence[float], tails_s: Sequence[float], jobs: Sequence[int]
) -> float:
    """``h(J) = min_J r + sum_J p + min_J q`` for the subset ``jobs`` (0 when empty)."""
    if not jobs:
        return 0.0
    return (
        min(heads_s[i] for i in jobs) + sum(work_s[i] for i in jobs) + min(tails_s[i] for i in jobs)
    )
