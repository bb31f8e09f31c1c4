"""What a server scheduler is given and what it must answer.

Each round the edge server receives work from every device. A device's work is a :class:`Job`:
it becomes available at ``release_s`` (device forward + uplink), then needs the server for
``server_s[0]`` seconds (server forward + backward). With K > 1 local iterations the device sends
K such requests; between the end of server task k and the earliest start of task k+1 lies a
minimum time lag ``lag_s[k]`` (downlink + device backward + next device forward + uplink). After
its last server task the device still needs ``tail_s`` (downlink + device backward + adapter
upload) before it is done. The server runs one task at a time and never preempts; the round
ends when the last device is done. For K = 1 this is the classic single-machine problem
``1 | r_j, q_j | C_max`` (heads, processing times, tails).

A :class:`Scheduler` answers in one of two ways:

* **offline** (:meth:`Scheduler.order`): a plan, i.e. a sequence of job ids in which job j occurs
  once per server task; its k-th occurrence stands for its k-th task. The engine replays the plan
  strictly, letting the server wait for the next planned task even if another one is waiting.
* **online** (:meth:`Scheduler.select`, used when ``online`` is true): each time the server frees
  up and tasks wait, pick one of the waiting :class:`Ready` tasks.

Schedulers that can say more than an order (a lower bound, a proof of optimality) override
:meth:`Scheduler.plan`, which returns a :class:`Plan`. Constructors only store parameters
(scikit-learn style) and all randomness comes in as a ``numpy.random.Generator`` argument.
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


def _check_time(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{what} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out) or out < 0.0:
        raise ValueError(f"{what} must be a non-negative finite number of seconds, got {value!r}")
    return out


@dataclass(frozen=True)
class Job:
    """One device's work in a round: a chain of K >= 1 server tasks.

    ``lag_s[k]`` is the minimum time from the end of task k to the start of task k+1.
    Sequences are stored as tuples of floats whatever sequence type is passed in.
    """

    id: str
    release_s: float
    server_s: tuple[float, ...]
    lag_s: tuple[float, ...]
    tail_s: float

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"job id must be a non-empty string, got {self.id!r}")
        where = f"job {self.id!r}"
        object.__setattr__(self, "release_s", _check_time(self.release_s, f"{where}: release_s"))
        object.__setattr__(self, "tail_s", _check_time(self.tail_s, f"{where}: tail_s"))
        if isinstance(self.server_s, str) or not isinstance(self.server_s, Sequence):
            raise ValueError(f"{where}: server_s must be a sequence of numbers")
        if isinstance(self.lag_s, str) or not isinstance(self.lag_s, Sequence):
            raise ValueError(f"{where}: lag_s must be a sequence of numbers")
        server = tuple(
            _check_time(v, f"{where}: server_s[{i}]") for i, v in enumerate(self.server_s)
        )
        lag = tuple(_check_time(v, f"{where}: lag_s[{i}]") for i, v in enumerate(self.lag_s))
        if not server:
            raise ValueError(f"{where}: needs at least one server task (K >= 1)")
        if len(lag) != len(server) - 1:
            raise ValueError(
                f"{where}: lag_s needs len(server_s) - 1 = {len(server) - 1} values, got {len(lag)}"
            )
        object.__setattr__(self, "server_s", server)
        object.__setattr__(self, "lag_s", lag)

    @classmethod
    def single(cls, id: str, release_s: float, server_s: float, tail_s: float) -> Job:
        """A job with one server task (K = 1), the basic ``1|r_j,q_j|C_max`` case."""
        return cls(id=id, release_s=release_s, server_s=(server_s,), lag_s=(), tail_s=tail_s)

    @property
    def k(self) -> int:
        """Number of server tasks."""
        return len(self.server_s)

    def head_s(self, task: int) -> float:
        """Earliest possible start of ``task``: release plus the earlier tasks and lags."""
        return self.release_s + sum(self.server_s[:task]) + sum(self.lag_s[:task])

    def remaining_s(self, task: int) -> float:
        """Time from the end of ``task`` until the job is done, if nothing else waits."""
        return sum(self.lag_s[task:]) + sum(self.server_s[task + 1 :]) + self.tail_s

    def critical_path_s(self) -> float:
        """Completion time of the job if it had the server to itself."""
        return self.release_s + sum(self.server_s) + sum(self.lag_s) + self.tail_s


@dataclass(frozen=True)
class Instance:
    """The jobs of one round. Job ids are unique; the order of ``jobs`` carries no meaning."""

    jobs: tuple[Job, ...]

    def __post_init__(self) -> None:
        jobs = tuple(self.jobs)
        seen: set[str] = set()
        for job in jobs:
            if not isinstance(job, Job):
                raise ValueError(f"Instance.jobs must hold Job objects, got {type(job).__name__}")
            if job.id in seen:
                raise ValueError(f"duplicate job id {job.id!r}")
            seen.add(job.id)
        object.__setattr__(self, "jobs", jobs)

    @property
    def is_single(self) -> bool:
        """True when every job has exactly one server task (K = 1)."""
        return all(job.k == 1 for job in self.jobs)

    @property
    def n_tasks(self) -> int:
        """Total number of server tasks, i.e. the length of a valid order."""
        return sum(job.k for job in self.jobs)

    def job(self, job_id: str) -> Job:
        """The job with this id (KeyError if none)."""
        for job in self.jobs:
            if job.id == job_id:
                return job
        raise KeyError(job_id)


@dataclass(frozen=True)
class Ready:
    """A task waiting at the server, as an online dispatcher sees it."""

    job_id: str
    task: int
    arrival_s: float
    server_s: float
    remaining_s: float


@dataclass(frozen=True)
class Plan:
    """An offline answer: the order, plus what the scheduler knows about its quality.

    ``lower_bound_s`` is a proven lower bound on the optimal makespan (None if the scheduler
    computes none); ``optimal`` is True only when the order is proven optimal for the instance.
    """

    order: tuple[str, ...]
    lower_bound_s: float | None = None
    optimal: bool = False
    status: str = ""  # how the answer was reached, e.g. a solver status (free text)


class Scheduler(abc.ABC):
    """Base class of every scheduler. Subclasses set ``name`` and a one-line ``description``.

    ``online`` is a class-level default; a scheduler whose constructor takes an ``online``
    parameter may override it per instance. ``supports_chains`` is False for schedulers that
    only solve the K = 1 case.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    online: bool = False
    supports_chains: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        if params:
            raise TypeError(f"{type(self).__name__} takes no parameters, got {sorted(params)}")

    @abc.abstractmethod
    def order(self, instance: Instance, rng: np.random.Generator) -> list[str]:
        """Offline plan: each job id appears len(job.server_s) times; k-th occurrence = task k."""

    def plan(self, instance: Instance, rng: np.random.Generator) -> Plan:
        """The order with any bound or optimality proof; the default knows neither."""
        return Plan(order=tuple(self.order(instance, rng)))

    def select(self, waiting: Sequence[Ready], now_s: float, rng: np.random.Generator) -> int:
        """Online dispatch: index into ``waiting`` of the task to serve next."""
        raise NotImplementedError(f"scheduler {self.name!r} is offline: use order()")

    def task_key(self) -> Callable[[Ready], Any] | None:
        """A key such that ``select`` always serves the waiting task with the smallest key.

        Return one only when the key depends on the task alone (not on the clock, the rng or
        the other waiting tasks) and no two tasks share a key; the server then keeps its queue
        in a heap instead of calling :meth:`select` on every dispatch. The default (None) makes
        the server call :meth:`select`.
        """
        return None

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters as stored (scikit-learn style: attribute = parameter)."""
        sig = inspect.signature(type(self).__init__)
        names = [
            p.name
            for p in list(sig.parameters.values())[1:]
            if p.kind is p.POSITIONAL_OR_KEYWORD or p.kind is p.KEYWORD_ONLY
        ]
        return {name: getattr(self, name) for name in names if hasattr(self, name)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
