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

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import simpy

from sfsim.engine import Proc, Sim
from sfsim.schedulers import Instance, Ready, Scheduler, makespan


@dataclass
class ServerTask:
    device: str
    iteration: int
    server_s: float  # estimate, for the scheduler
    remaining_s: float  # estimate of the time after this task until the device is done
    serve: Callable[[ServerTask], Proc]
    done: simpy.Event
    arrival_s: float = float("nan")


@dataclass
class ServerQueue:
    sim: Sim
    round: int
    expected: int  # tasks to serve this round
    scheduler: Scheduler
    rng: np.random.Generator
    plan: list[str] | None = None  # offline plan: device ids, k-th occurrence = k-th task
    waiting: list[ServerTask] = field(default_factory=list)
    served: list[tuple[str, int]] = field(default_factory=list)
    _arrival: simpy.Event | None = None

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

    def submit(self, task: ServerTask) -> simpy.Event:
        task.arrival_s = self.sim.now
        self.waiting.append(task)
        if self._arrival is not None and not self._arrival.triggered:
            self._arrival.succeed()
        return task.done

    def _next_index(self) -> int | None:
        """Index of the task to serve now, or None to wait for more arrivals."""
        if not self.waiting:
            return None
        if self.plan is not None:
            want_dev = self.plan[len(self.served)]
            want_it = sum(1 for d, _ in self.served if d == want_dev)
            for i, t in enumerate(self.waiting):
                if t.device == want_dev and t.iteration == want_it:
                    return i
            return None
        ready = [
            Ready(t.device, t.iteration, t.arrival_s, t.server_s, t.remaining_s)
            for t in self.waiting
        ]
        return self.scheduler.select(ready, self.sim.now, self.rng)

    def run(self) -> Proc:
        """The server's process for this round."""
        while len(self.served) < self.expected:
            idx = self._next_index()
            if idx is None:
                self._arrival = self.sim.env.event()
                yield self._arrival
                continue
            task = self.waiting.pop(idx)
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
            task.done.succeed()
