"""The edge server's queue: tasks arrive from devices, one is served at a time.

A ``ServerQueue`` holds the tasks of one round. Devices ``submit`` a task (one per local
iteration) and wait on its ``done`` event; the queue's process picks the next task to serve in one
of two ways, depending on the scheduler (`sfsim.schedulers`):

* online dispatch: when the server frees up and tasks wait, ``scheduler.select`` picks one;
* offline plan: the scheduler's ``order`` over *estimated* times is replayed strictly against the
  realised arrivals (the server waits for the next planned task even if another one is waiting).

Serving a task is the scheme's business: the queue calls ``task.serve`` (a SimPy process that
records the server's spans and memory) and never runs two tasks at once. Queue waiting time is
recorded as a ``queue_wait`` span on the ``server_queue`` resource.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import simpy

from sfsim.engine import Proc, Sim
from sfsim.schedulers import Instance, Ready, Scheduler, makespan


@dataclass(slots=True)
class ServerTask:
    device: str
    iteration: int
    server_s: float  # estimate, for the scheduler
    remaining_s: float  # estimate of the time after this task until the device is done
    serve: Callable[[ServerTask], Proc]
    done: simpy.Event
    arrival_s: float = float("nan")

    def ready(self) -> Ready:
        return Ready(self.device, self.iteration, self.arrival_s, self.server_s, self.remaining_s)


class ServerQueue:
    """The waiting tasks of one round and the server process that serves them.

    How the next task is found, in O(log n) or O(1) per dispatch where possible:

    * offline plan: waiting tasks are looked up by ``(device, iteration)``; the plan says which
      one is next (the k-th occurrence of a device in the plan is its k-th task);
    * online rule with a task-only key (`Scheduler.task_key`: fifo, spt, lpt, longest_tail,
      schrage): a heap ordered by that key;
    * any other online scheduler (e.g. a plugin): ``scheduler.select`` over the waiting tasks.
    """

    def __init__(
        self,
        sim: Sim,
        round: int,
        expected: int,
        scheduler: Scheduler,
        rng: np.random.Generator,
        plan: list[str] | None = None,
    ) -> None:
        self.sim = sim
        self.round = round
        self.expected = expected  # tasks to serve this round
        self.scheduler = scheduler
        self.rng = rng
        self.plan = plan  # offline plan: device ids, k-th occurrence = k-th task
        self.served: list[tuple[str, int]] = []
        self._arrival: simpy.Event | None = None
        self._key = scheduler.task_key() if scheduler.online else None
        self._heap: list[tuple[Any, int, ServerTask]] = []  # online rule with a task-only key
        self._by_task: dict[tuple[str, int], ServerTask] = {}  # offline plan replay
        self._waiting: list[ServerTask] = []  # generic select()
        self._served_of: dict[str, int] = {}  # tasks served so far per device (plan replay)
        self._seq = 0

    @classmethod
    def for_round(
        cls,
        sim: Sim,
        round: int,
        scheduler: Scheduler,
        rng: np.random.Generator,
        instance: Instance,
    ) -> ServerQueue:
        """A queue for one round; offline schedulers plan here, over the estimated instance."""
        q = cls(sim, round, instance.n_tasks, scheduler, rng)
        if not scheduler.online and instance.jobs:
            plan = scheduler.plan(instance, rng)
            q.plan = list(plan.order)
            sim.notes.setdefault("plans", []).append(
                {
                    "round": round,
                    "order": q.plan,
                    "planned_makespan_s": makespan(instance, q.plan),
                    "lower_bound_s": plan.lower_bound_s,
                    "optimal": plan.optimal,
                }
            )
        return q

    @property
    def waiting(self) -> list[ServerTask]:
        """The tasks waiting now (in no particular order)."""
        if self.plan is not None:
            return list(self._by_task.values())
        if self._key is not None:
            return [t for _, _, t in self._heap]
        return list(self._waiting)

    def submit(self, task: ServerTask) -> simpy.Event:
        task.arrival_s = self.sim.now
        if self.plan is not None:
            self._by_task[(task.device, task.iteration)] = task
        elif self._key is not None:
            heapq.heappush(self._heap, (self._key(task.ready()), self._seq, task))
            self._seq += 1
        else:
            self._waiting.append(task)
        if self._arrival is not None and not self._arrival.triggered:
            self._arrival.succeed()
        return task.done

    def _pop_next(self) -> ServerTask | None:
        """The task to serve now, taken off the queue, or None to wait for more arrivals."""
        if self.plan is not None:
            device = self.plan[len(self.served)]
            return self._by_task.pop((device, self._served_of.get(device, 0)), None)
        if self._key is not None:
            return heapq.heappop(self._heap)[2] if self._heap else None
        if not self._waiting:
            return None
        ready = [t.ready() for t in self._waiting]
        return self._waiting.pop(self.scheduler.select(ready, self.sim.now, self.rng))

    def run(self) -> Proc:
        """The server's process for this round."""
        while len(self.served) < self.expected:
            task = self._pop_next()
            if task is None:
                self._arrival = self.sim.env.event()
                yield self._arrival
                continue
            self.sim.wait_span(
                task.device,
                "queue_wait",
                "server_queue",
                task.arrival_s,
                round=self.round,
                iteration=task.iteration,
            )
            yield self.sim.env.process(task.serve(task))
            self.served.append((task.device, task.iteration))
            self._served_of[task.device] = self._served_of.get(task.device, 0) + 1
            task.done.succeed()
