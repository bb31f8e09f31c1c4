"""The edge server's queue: tasks arrive from devices, one is served at a time.

A ``ServerQueue`` holds the tasks of one round. Devices ``submit`` a task (one per local
iteration) and wait on its ``done`` event; the queue's process picks the next task to serve by
the scenario's dispatch mode (``scheduler.dispatch``, see docs/schedulers.md, "Dispatch modes"):

* ``strict``: the scheduler's plan over *estimated* times is replayed strictly against the
  realised arrivals (the server waits for the next planned task even if another one is waiting);
* ``priority``: the plan's order ranks the tasks; whenever the server is free it serves the
  waiting task ranked first and never idles while a task waits;
* ``online``: when the server frees up and tasks wait, ``scheduler.select`` picks one;
* ``rolling``: whenever the server is free and a task waits, the scheduler re-plans the round's
  remaining tasks on what is known now (arrivals so far, estimates for the rest) and the server
  serves the re-plan's first task if it waits, else waits for it (re-planning at each arrival).

``auto`` (the default) is ``online`` for a scheduler that dispatches online and ``strict`` for one
that plans, which is what the server did before dispatch modes existed.

Serving a task is the scheme's business: the queue calls ``task.serve`` (a SimPy process that
records the server's spans and memory) and never runs two tasks at once. Queue waiting time is
recorded as a ``queue_wait`` span on the ``server_queue`` resource.
"""

from __future__ import annotations

import copy
import heapq
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from sfsim.engine import SERVER, Proc, Sim
from sfsim.errors import InputError
from sfsim.schedulers import Instance, Job, Ready, Scheduler, makespan

if TYPE_CHECKING:
    from sfsim.scenario import Scenario

#: The dispatch modes a scenario may name (besides ``auto``).
DISPATCH_MODES = ("strict", "priority", "online", "rolling")


def has_select(scheduler: Scheduler) -> bool:
    """True when the scheduler can dispatch online (it overrides ``Scheduler.select``)."""
    return type(scheduler).select is not Scheduler.select


def resolved_dispatch(scenario: Scenario, scheduler: Scheduler) -> str:
    """The dispatch mode that runs: ``scheduler.dispatch``, with ``auto`` made concrete.

    A scheme that fixes its own order (``sfl_v2``: FIFO of arrival) keeps its scheduler's own
    mode whatever the scenario asks: its order is part of the scheme.
    """
    from sfsim.schemes import scheme_class

    requested = scenario.scheduler.dispatch
    fixed = scheme_class(scenario.training.scheme, key="training.scheme").fixed_scheduler
    if requested == "auto" or fixed:
        return "online" if scheduler.online else "strict"
    return requested


def check_dispatch(mode: str, scheduler: Scheduler) -> None:
    """InputError (key ``scheduler.dispatch``) when the scheduler cannot run in this mode.

    ``online`` needs ``select``; the other modes need a plan (``order``/``plan``), which every
    scheduler has by contract; a plugin whose ``order`` raises ``NotImplementedError`` is found
    by the plan probe of ``sfsim validate`` (`sfsim.preflight`) and reported the same way.
    """
    if mode not in DISPATCH_MODES:
        raise InputError(
            f"unknown dispatch mode {mode!r}; valid: auto, {', '.join(DISPATCH_MODES)}",
            key="scheduler.dispatch",
        )
    if mode == "online" and not has_select(scheduler):
        raise InputError(
            f"scheduler {scheduler.name!r} only plans (it has no online select()), so it cannot "
            "run with dispatch 'online'; use 'strict', 'priority' or 'rolling', or an online "
            "rule (fifo, schrage, spt, lpt, longest_tail)",
            key="scheduler.dispatch",
        )


def _budgeted(scheduler: Scheduler, budget_s: float) -> Scheduler:
    """A copy of the scheduler whose ``time_limit_s`` is at most ``budget_s`` (if it has one)."""
    from sfsim.schedulers.registry import accepted_params

    if "time_limit_s" not in accepted_params(type(scheduler)):
        return scheduler
    out = copy.copy(scheduler)
    current = getattr(scheduler, "time_limit_s", None)
    out.time_limit_s = budget_s if current is None else min(float(current), budget_s)  # type: ignore[attr-defined]
    return out


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


@dataclass
class Rolling:
    """What ``rolling`` dispatch needs: the estimates, the budget and the solve charge."""

    instance: Instance  # the round as estimated at its start
    scheduler: Scheduler  # the scheduler with its time limit capped by the budget
    charge_s: float = 0.0  # server time charged per re-solve (0: not charged)
    note: dict[str, Any] | None = None  # per-round counts, updated in place


class ServerQueue:
    """The waiting tasks of one round and the server process that serves them.

    How the next task is found, in O(log n) or O(1) per dispatch where possible:

    * strict: waiting tasks are looked up by ``(device, iteration)``; the plan says which
      one is next (the k-th occurrence of a device in the plan is its k-th task);
    * priority: a heap ordered by each task's position in the plan;
    * online rule with a task-only key (`Scheduler.task_key`: fifo, spt, lpt, longest_tail,
      schrage): a heap ordered by that key;
    * any other online scheduler (e.g. a plugin): ``scheduler.select`` over the waiting tasks;
    * rolling: a re-plan over the remaining tasks at each dispatch (its cost is the solver's).
    """

    def __init__(
        self,
        sim: Sim,
        round: int,
        expected: int,
        scheduler: Scheduler,
        rng: np.random.Generator,
        plan: list[str] | None = None,
        mode: str | None = None,
        rolling: Rolling | None = None,
    ) -> None:
        self.sim = sim
        self.round = round
        self.expected = expected  # tasks to serve this round
        self.scheduler = scheduler
        self.rng = rng
        self.plan = plan  # the plan: device ids, k-th occurrence = k-th task
        self.mode = mode or ("strict" if plan is not None else "online")
        if self.mode in ("strict", "priority") and plan is None:
            raise ValueError(f"dispatch {self.mode!r} needs a plan")
        if self.mode == "rolling" and rolling is None:
            raise ValueError("dispatch 'rolling' needs the round's estimates")
        self.rolling = rolling
        self.start_s = sim.now
        self.served: list[tuple[str, int]] = []
        self._arrival: simpy.Event | None = None
        self._arrivals = 0  # tasks submitted so far
        self._key = scheduler.task_key() if self.mode == "online" else None
        self._heap: list[tuple[Any, int, ServerTask]] = []  # priority / online task-only key
        self._by_task: dict[tuple[str, int], ServerTask] = {}  # strict / rolling
        self._waiting: list[ServerTask] = []  # generic select()
        self._served_of: dict[str, int] = {}  # tasks served so far per device
        self._last_end: dict[str, float] = {}  # when each device's last task ended (rolling)
        self._awaited: tuple[str, int] | None = None  # rolling: the re-plan's first task
        self._charge_s = 0.0  # rolling: solve time to charge before the next dispatch
        self._seq = 0
        self._rank: dict[tuple[str, int], int] = {}
        self._gone: set[str] = set()  # devices withdrawn (dropped out, sfsim.faults)
        self._in_service: str | None = None
        if self.mode == "priority":
            assert plan is not None
            count: dict[str, int] = {}
            for pos, device in enumerate(plan):
                k = count.get(device, 0)
                count[device] = k + 1
                self._rank[(device, k)] = pos

    @classmethod
    def for_round(
        cls,
        sim: Sim,
        round: int,
        scheduler: Scheduler,
        rng: np.random.Generator,
        instance: Instance,
        mode: str | None = None,
    ) -> ServerQueue:
        """A queue for one round; plans are made here, over the estimated instance.

        ``mode`` defaults to the scenario's (`resolved_dispatch`).
        """
        scenario = sim.world.scenario
        if mode is None:
            mode = resolved_dispatch(scenario, scheduler)
        check_dispatch(mode, scheduler)
        q_plan: list[str] | None = None if mode == "online" else []  # no jobs: an empty plan
        rolling: Rolling | None = None
        if mode != "online" and instance.jobs:
            try:
                plan = scheduler.plan(instance, rng)
            except NotImplementedError:
                raise InputError(
                    f"scheduler {scheduler.name!r} cannot plan, so it cannot run with dispatch "
                    f"{mode!r}; use dispatch 'online'", key="scheduler.dispatch") from None
            q_plan = list(plan.order)
            sim.notes.setdefault("plans", []).append(
                {
                    "round": round,
                    "order": q_plan,
                    "planned_makespan_s": makespan(instance, q_plan),
                    "lower_bound_s": plan.lower_bound_s,
                    "optimal": plan.optimal,
                }
            )
        if mode == "rolling":
            cfg = scenario.scheduler.rolling
            note = {"round": round, "re_solves": 0, "solve_wall_s": 0.0, "charged_s": 0.0}
            sim.notes.setdefault("rolling", []).append(note)
            charge = 0.0
            if cfg.charge_solve_time:
                charge = cfg.budget_s if cfg.solve_cost_s is None else cfg.solve_cost_s
            rolling = Rolling(instance, _budgeted(scheduler, cfg.budget_s), charge, note)
        queue = cls(sim, round, instance.n_tasks, scheduler, rng, plan=q_plan, mode=mode,
                    rolling=rolling)
        queue.tasks_of = {j.id: j.k for j in instance.jobs}
        return queue

    #: tasks per device this round (`for_round` sets it; `withdraw` needs it)
    tasks_of: dict[str, int] | None = None

    def withdraw(self, device: str) -> bool:
        """Device ``device`` dropped out: take its waiting task off the queue and expect none of
        its later tasks; True when a waiting task was withdrawn.

        A task in service is finished (the server does not abort a pass). The rest of the round
        goes on without the device: a plan (strict, priority) keeps its order without the
        device's remaining tasks, rolling re-solves over the remaining devices, online rules
        never see it again; a server waiting for the device's task decides again at once.
        """
        assert self.tasks_of is not None, "withdraw needs the round's tasks per device"
        if device in self._gone:
            return False
        self._gone.add(device)
        keep = self._served_of.get(device, 0) + (self._in_service == device)
        self.expected -= self.tasks_of.get(device, 0) - keep
        removed = False
        for key in [key for key in self._by_task if key[0] == device]:
            del self._by_task[key]
            removed = True
        if any(t.device == device for _, _, t in self._heap):
            self._heap = [e for e in self._heap if e[2].device != device]
            heapq.heapify(self._heap)
            removed = True
        if any(t.device == device for t in self._waiting):
            self._waiting = [t for t in self._waiting if t.device != device]
            removed = True
        if self.plan is not None:  # the plan's order without the device's remaining tasks
            plan, seen = [], 0
            for d in self.plan:
                if d == device:
                    seen += 1
                    if seen > keep:
                        continue
                plan.append(d)
            self.plan = plan
        if self._awaited is not None and self._awaited[0] == device:
            self._awaited = None
        if self._arrival is not None and not self._arrival.triggered:
            self._arrival.succeed()  # wake the server: what it waited for may never come
        return removed

    @property
    def waiting(self) -> list[ServerTask]:
        """The tasks waiting now (in no particular order)."""
        if self._by_task:
            return list(self._by_task.values())
        if self._heap:
            return [t for _, _, t in self._heap]
        return list(self._waiting)

    def submit(self, task: ServerTask) -> simpy.Event:
        task.arrival_s = self.sim.now
        self._arrivals += 1
        mode = self.mode
        if mode == "strict" or mode == "rolling":
            self._by_task[(task.device, task.iteration)] = task
        elif mode == "priority":
            rank = self._rank[(task.device, task.iteration)]
            heapq.heappush(self._heap, (rank, rank, task))
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
        mode = self.mode
        if mode == "strict":
            assert self.plan is not None
            device = self.plan[len(self.served)]
            return self._by_task.pop((device, self._served_of.get(device, 0)), None)
        if mode == "rolling":
            return self._rolling_next()
        if self._heap:
            return heapq.heappop(self._heap)[2]
        if mode == "priority" or self._key is not None or not self._waiting:
            return None
        ready = [t.ready() for t in self._waiting]
        return self._waiting.pop(self.scheduler.select(ready, self.sim.now, self.rng))

    # ---- rolling ------------------------------------------------------------------------------
    def residual(self) -> Instance:
        """The round's remaining tasks as known now, with time measured from now.

        Per device with tasks left (the next one is task n): if task n waits, it is released
        now (0); otherwise its release is its estimated arrival (round start + estimated
        release for n = 0, end of task n-1 + estimated lag otherwise) minus now, or 0 if that
        moment has passed without it arriving. Server times, later lags and the tail are the
        round's estimates.
        """
        assert self.rolling is not None
        now = self.sim.now
        jobs = []
        for est in self.rolling.instance.jobs:
            n = self._served_of.get(est.id, 0)
            if n >= est.k or est.id in self._gone:
                continue
            if (est.id, n) in self._by_task:
                release = 0.0
            elif n == 0:
                release = max(0.0, self.start_s + est.release_s - now)
            else:
                release = max(0.0, self._last_end[est.id] + est.lag_s[n - 1] - now)
            jobs.append(Job(est.id, release, est.server_s[n:], est.lag_s[n:], est.tail_s))
        return Instance(tuple(jobs))

    def _rolling_next(self) -> ServerTask | None:
        rolling = self.rolling
        assert rolling is not None and rolling.note is not None
        if not self._by_task:
            return None  # nothing to decide until a task arrives
        if self._awaited is not None and self._awaited in self._by_task:
            return self._by_task.pop(self._awaited)  # the re-plan's first task came in
        left = {d for d, k in self._by_task} | {
            j.id for j in rolling.instance.jobs
            if self._served_of.get(j.id, 0) < j.k and j.id not in self._gone
        }
        if len(left) == 1:  # one device left: nothing to order
            device = next(iter(left))
            return self._by_task.pop((device, self._served_of.get(device, 0)), None)
        t0 = time.perf_counter()
        order = rolling.scheduler.plan(self.residual(), self.rng).order
        rolling.note["solve_wall_s"] += time.perf_counter() - t0
        rolling.note["re_solves"] += 1
        if rolling.charge_s > 0.0:
            self._charge_s = rolling.charge_s
        first = order[0]
        self._awaited = (first, self._served_of.get(first, 0))
        return self._by_task.pop(self._awaited, None)

    def run(self) -> Proc:
        """The server's process for this round."""
        sim = self.sim
        while len(self.served) < self.expected:
            seen = self._arrivals
            task = self._pop_next()
            if self._charge_s > 0.0:  # rolling: the server spends the solve's charged time
                charge, self._charge_s = self._charge_s, 0.0
                assert self.rolling is not None and self.rolling.note is not None
                self.rolling.note["charged_s"] += charge
                yield from sim.compute(SERVER, "schedule_solve", charge, round=self.round,
                                       resource="server", vary=False)
                if task is None and self._awaited in self._by_task:
                    task = self._by_task.pop(self._awaited)  # arrived while solving
            if task is None:
                if self._arrivals != seen:
                    continue  # tasks came in while solving: decide again
                self._arrival = sim.env.event()
                yield self._arrival
                continue
            self._awaited = None
            sim.wait_span(
                task.device,
                "queue_wait",
                "server_queue",
                task.arrival_s,
                round=self.round,
                iteration=task.iteration,
            )
            self._in_service = task.device
            yield sim.env.process(task.serve(task))
            self._in_service = None
            self.served.append((task.device, task.iteration))
            self._served_of[task.device] = self._served_of.get(task.device, 0) + 1
            self._last_end[task.device] = sim.now
            task.done.succeed()


def rolling_summary(notes: list[dict[str, Any]], scenario: Scenario) -> dict[str, Any]:
    """The summary's ``rolling`` entry: re-solves and charged time, in total and per round."""
    cfg = scenario.scheduler.rolling
    return {
        "re_solves": sum(int(n["re_solves"]) for n in notes),
        "solve_wall_s": math.fsum(float(n["solve_wall_s"]) for n in notes),
        "charged_s": math.fsum(float(n["charged_s"]) for n in notes),
        "budget_s": cfg.budget_s,
        "charge_solve_time": cfg.charge_solve_time,
        "per_round": notes,
    }
