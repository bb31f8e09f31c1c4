"""A processor-sharing server: n concurrent jobs each progress at 1/n of the processor's speed.

SplitFed v1 keeps one server-side model copy per device and serves every device at once; a GPU
running n such jobs concurrently is modelled as *egalitarian processor sharing*, the fluid limit
of fine-grained time slicing. A job is an amount of work, measured in seconds the job would take
alone on the whole processor. With n jobs present each advances at ``capacity / n`` work-seconds
per second, so:

* the server is never faster than its capacity: the rates of the jobs present sum to capacity;
* work is conserved: whenever jobs are present the server does ``capacity`` work per second, so
  the time the server is busy equals the total work submitted divided by the capacity;
* a job's time in service stretches with the number of jobs it shares the processor with, and the
  per-job intervals overlap (unlike a one-at-a-time queue).

The server advances piecewise: between two events (an arrival or a completion) the number of jobs
is constant, so every remaining work falls linearly. ``segments`` keeps the history as
``(start_s, end_s, n_jobs)`` pieces, from which the tests check both properties above.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import simpy

#: Remaining work below this fraction of a job's size counts as done (floating-point slack).
_REL_EPS = 1e-12


@dataclass
class _Job:
    work_s: float
    remaining_s: float
    done: simpy.Event
    start_s: float


@dataclass
class SharedProcessor:
    """Egalitarian processor sharing on a SimPy clock.

    ``submit(work_s)`` returns an event that fires when the job's work is done; its value is the
    job's ``(start_s, end_s)``. ``capacity`` is the processor's speed (1 = the speed at which
    ``work_s`` was measured).
    """

    env: simpy.Environment
    capacity: float = 1.0
    segments: list[tuple[float, float, int]] = field(default_factory=list)
    submitted_work_s: float = 0.0
    _jobs: list[_Job] = field(default_factory=list)
    _last_s: float = 0.0
    _wake: simpy.Event | None = None
    _running: bool = False

    def __post_init__(self) -> None:
        if self.capacity <= 0:
            raise ValueError(f"capacity must be positive, got {self.capacity}")

    @property
    def n_jobs(self) -> int:
        return len(self._jobs)

    def submit(self, work_s: float) -> simpy.Event:
        """Start a job of ``work_s`` seconds of exclusive work now."""
        if work_s < 0:
            raise ValueError(f"work must be non-negative, got {work_s}")
        done = self.env.event()
        now = float(self.env.now)
        self.submitted_work_s += work_s
        if work_s == 0:
            done.succeed((now, now))
            return done
        self._advance()
        self._jobs.append(_Job(work_s, work_s, done, now))
        if not self._running:
            self._running = True
            self.env.process(self._run())
        elif self._wake is not None and not self._wake.triggered:
            self._wake.succeed()
        return done

    def _advance(self) -> None:
        """Bring every job's remaining work up to now."""
        now = float(self.env.now)
        dt = now - self._last_s
        if self._jobs and dt > 0:
            rate = self.capacity / len(self._jobs)
            for job in self._jobs:
                job.remaining_s -= rate * dt
            self.segments.append((self._last_s, now, len(self._jobs)))
        self._last_s = now

    def _run(self) -> Generator[simpy.Event, Any, None]:
        self._last_s = float(self.env.now)
        while self._jobs:
            rate = self.capacity / len(self._jobs)
            first = min(self._jobs, key=lambda j: j.remaining_s)
            self._wake = self.env.event()
            timer = self.env.timeout(max(first.remaining_s, 0.0) / rate)
            yield self.env.any_of([timer, self._wake])
            self._advance()
            if timer.processed:
                first.remaining_s = 0.0
            now = float(self.env.now)
            finished = [j for j in self._jobs if j.remaining_s <= _REL_EPS * j.work_s]
            self._jobs = [j for j in self._jobs if j not in finished]
            for job in finished:
                job.done.succeed((job.start_s, now))
        self._running = False
        self._wake = None

    def busy_s(self) -> float:
        """Time with at least one job present (equals submitted work / capacity when idle)."""
        return sum(end - start for start, end, n in self.segments if n > 0)
