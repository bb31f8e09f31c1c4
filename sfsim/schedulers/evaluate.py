"""Turning an order into times: the semi-active schedule of a plan.

Given an order (a sequence of job ids, the k-th occurrence of j standing for j's k-th task),
each task starts as early as the plan allows: at the later of the moment the server frees up
and the moment the task is ready. A job's first task is ready at its release; task k+1 is
ready ``lag_s[k]`` after task k ends. The job is done ``tail_s`` after its last task ends and
the makespan is the latest such moment. This is exactly what the engine does when it replays
an offline plan with the estimated times, so ``makespan`` is the objective every offline
scheduler minimises.

The module also holds :func:`dispatch`, the non-delay list scheduler that turns an online rule
(a :meth:`Scheduler.select`) into an offline order by simulating it on the estimated times:
whenever the server is free it serves one of the tasks that are ready, chosen by the rule, and
only waits when nothing is ready.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from sfsim.schedulers.base import Instance, Job, Ready


@dataclass(frozen=True)
class TaskTime:
    """Where one server task lands in the schedule."""

    job_id: str
    task: int
    start_s: float
    end_s: float


def check_order(instance: Instance, order: Sequence[str]) -> None:
    """Raise ValueError unless ``order`` holds each job id exactly K_j times."""
    want = Counter({job.id: job.k for job in instance.jobs})
    got = Counter(order)
    if got != want:
        missing = sorted((want - got).elements())
        extra = sorted((got - want).elements())
        raise ValueError(f"order is not a valid plan: missing {missing}, unexpected {extra}")


def schedule_times(instance: Instance, order: Sequence[str]) -> list[TaskTime]:
    """Start and end of every task, in the order's sequence."""
    check_order(instance, order)
    jobs = {job.id: job for job in instance.jobs}
    next_task: dict[str, int] = dict.fromkeys(jobs, 0)
    ready_s = {job.id: job.release_s for job in instance.jobs}
    free_s = 0.0
    out: list[TaskTime] = []
    for job_id in order:
        job = jobs[job_id]
        task = next_task[job_id]
        start_s = max(free_s, ready_s[job_id])
        end_s = start_s + job.server_s[task]
        if task < job.k - 1:
            ready_s[job_id] = end_s + job.lag_s[task]
        next_task[job_id] = task + 1
        free_s = end_s
        out.append(TaskTime(job_id, task, start_s, end_s))
    return out


def completion_times(instance: Instance, order: Sequence[str]) -> dict[str, float]:
    """When each job is done: end of its last task plus its tail."""
    jobs = {job.id: job for job in instance.jobs}
    done: dict[str, float] = {}
    for t in schedule_times(instance, order):
        job = jobs[t.job_id]
        if t.task == job.k - 1:
            done[t.job_id] = t.end_s + job.tail_s
    return done


def makespan(instance: Instance, order: Sequence[str]) -> float:
    """Round length of the order: the latest job completion (0.0 for an empty instance)."""
    return max(completion_times(instance, order).values(), default=0.0)


SelectFn = Callable[[Sequence[Ready], float, np.random.Generator], int]
KeyFn = Callable[[Ready], tuple[float | str | int, ...]]


def _ready(instance_jobs: dict[str, Job], ready_s: float, job_id: str, task: int) -> Ready:
    job = instance_jobs[job_id]
    return Ready(job_id, task, ready_s, job.server_s[task], job.remaining_s(task))


def dispatch(instance: Instance, select: SelectFn, rng: np.random.Generator) -> list[str]:
    """Simulate a non-delay online rule on the estimated times and return the order it makes.

    ``waiting`` is handed to ``select`` sorted by (arrival, job id, task) so that rules may
    break ties by position and stay deterministic. Cost O(N^2) in the number of tasks N; rules
    that rank tasks by a fixed key should use the O(N log N) :func:`dispatch_by_key`.
    """
    jobs = {job.id: job for job in instance.jobs}
    pending: list[tuple[float, str, int]] = [(job.release_s, job.id, 0) for job in instance.jobs]
    heapq.heapify(pending)
    waiting: list[Ready] = []
    free_s = 0.0
    out: list[str] = []
    while pending or waiting:
        now_s = free_s if waiting else max(free_s, pending[0][0])
        while pending and pending[0][0] <= now_s:
            ready = _ready(jobs, *heapq.heappop(pending))
            bisect.insort(waiting, ready, key=lambda r: (r.arrival_s, r.job_id, r.task))
        chosen = waiting.pop(select(waiting, now_s, rng))
        free_s = now_s + chosen.server_s
        out.append(chosen.job_id)
        job = jobs[chosen.job_id]
        if chosen.task < job.k - 1:
            heapq.heappush(pending, (free_s + job.lag_s[chosen.task], job.id, chosen.task + 1))
    return out


def dispatch_by_key(instance: Instance, key: KeyFn) -> list[str]:
    """Like :func:`dispatch` for a rule that serves the waiting task with the smallest ``key``.

    Keys should end with a unique tie-breaker (e.g. job id and task) for determinism.
    """
    jobs = {job.id: job for job in instance.jobs}
    pending: list[tuple[float, str, int]] = [(job.release_s, job.id, 0) for job in instance.jobs]
    heapq.heapify(pending)
    waiting: list[tuple[tuple[float | str | int, ...], Ready]] = []
    free_s = 0.0
    out: list[str] = []
    while pending or waiting:
        now_s = free_s if waiting else max(free_s, pending[0][0])
        while pending and pending[0][0] <= now_s:
            ready = _ready(jobs, *heapq.heappop(pending))
            heapq.heappush(waiting, (key(ready), ready))
        _, chosen = heapq.heappop(waiting)
        free_s = now_s + chosen.server_s
        out.append(chosen.job_id)
        job = jobs[chosen.job_id]
        if chosen.task < job.k - 1:
            heapq.heappush(pending, (free_s + job.lag_s[chosen.task], job.id, chosen.task + 1))
    return out
