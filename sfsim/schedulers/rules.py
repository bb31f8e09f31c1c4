"""Priority rules: the classic quick answers to "who does the server serve next?".

A priority rule ranks tasks by a key and serves the smallest. It can be used in two ways:

* **static** sequencing sorts all tasks once, ignoring when they become ready: SPT (shortest
  server time first), LPT (longest first) and Jackson's rule (longest tail first, ``longest_tail``),
  which is optimal when all releases are equal (``1 | q_j | C_max``);
* **dynamic** (non-delay) dispatching serves, whenever the server frees up, the best of the
  tasks that are ready, and waits only when none is. With the longest-tail key this is
  Schrage's rule, a 2-approximation for ``1 | r_j, q_j | C_max`` and the starting point of
  Carlier's branch and bound; with the arrival key it is FIFO.

Each rule is also an online dispatcher (:meth:`Scheduler.select`): FIFO always is, and SPT,
LPT, ``longest_tail`` and ``schrage`` are when built with ``online=True``. Online, the tail of a
waiting task is its estimated ``remaining_s`` (later lags, later tasks and the final tail), so
online ``longest_tail`` and online ``schrage`` make the same choices. ``random`` draws a
uniformly random plan (a random interleaving for chains) as a no-information baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, Literal

import numpy as np

from sfsim.schedulers.base import Instance, Ready, Scheduler
from sfsim.schedulers.evaluate import dispatch_by_key
from sfsim.schedulers.registry import register

Key = tuple[float | str | int, ...]


def all_tasks(instance: Instance) -> list[Ready]:
    """Every task as if waiting at its earliest possible start (its head)."""
    return [
        Ready(job.id, k, job.head_s(k), job.server_s[k], job.remaining_s(k))
        for job in instance.jobs
        for k in range(job.k)
    ]


class PriorityRule(Scheduler):
    """A rule that serves the task with the smallest :meth:`key`.

    ``mode`` says how the offline plan is made: ``"static"`` sorts every task by the key,
    ``"dispatch"`` simulates the non-delay rule on the estimated times.
    """

    mode: ClassVar[Literal["static", "dispatch"]] = "dispatch"

    def __init__(self, online: bool = False) -> None:
        self.online = bool(online)

    @staticmethod
    def key(ready: Ready) -> Key:
        raise NotImplementedError

    def order(self, instance: Instance, rng: np.random.Generator) -> list[str]:
        if self.mode == "static":
            return [t.job_id for t in sorted(all_tasks(instance), key=self.key)]
        return dispatch_by_key(instance, self.key)

    def select(self, waiting: Sequence[Ready], now_s: float, rng: np.random.Generator) -> int:
        if not waiting:
            raise ValueError("select() needs at least one waiting task")
        return min(range(len(waiting)), key=lambda i: self.key(waiting[i]))

    def task_key(self) -> Callable[[Ready], Key] | None:
        """The rule's key (unique per task: every key ends with the job id and task index).

        None when a subclass overrides :meth:`select`, whose choice the key may not describe.
        """
        if type(self).select is not PriorityRule.select:
            return None
        return self.key


@register
class Fifo(PriorityRule):
    name = "fifo"
    description = "First in, first out: serve tasks in the order they reach the server."
    online = True

    def __init__(self) -> None:
        self.online = True

    @staticmethod
    def key(ready: Ready) -> Key:
        return (ready.arrival_s, ready.job_id, ready.task)


@register
class Spt(PriorityRule):
    name = "spt"
    description = "Shortest server time first (static sort; online=True: among waiting tasks)."
    mode = "static"

    @staticmethod
    def key(ready: Ready) -> Key:
        return (ready.server_s, ready.arrival_s, ready.job_id, ready.task)


@register
class Lpt(PriorityRule):
    name = "lpt"
    description = "Longest server time first (static sort; online=True: among waiting tasks)."
    mode = "static"

    @staticmethod
    def key(ready: Ready) -> Key:
        return (-ready.server_s, ready.arrival_s, ready.job_id, ready.task)


@register
class LongestTail(PriorityRule):
    name = "longest_tail"
    description = "Jackson's rule: longest remaining tail first (static sort; online=True too)."
    mode = "static"

    @staticmethod
    def key(ready: Ready) -> Key:
        return (-ready.remaining_s, ready.arrival_s, ready.job_id, ready.task)


@register
class Schrage(PriorityRule):
    name = "schrage"
    description = "Schrage's rule: when the server frees, the ready task with the longest tail."
    mode = "dispatch"

    @staticmethod
    def key(ready: Ready) -> Key:
        return (-ready.remaining_s, ready.arrival_s, ready.job_id, ready.task)


@register
class RandomOrder(Scheduler):
    name = "random"
    description = "A uniformly random plan drawn from the given generator (baseline)."

    def __init__(self) -> None:
        pass

    def order(self, instance: Instance, rng: np.random.Generator) -> list[str]:
        ids = [job.id for job in instance.jobs for _ in range(job.k)]
        return [ids[i] for i in rng.permutation(len(ids))]
