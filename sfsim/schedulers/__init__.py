"""Server scheduling: which device's task the edge server runs next.

Public API::

    from sfsim.schedulers import Job, Instance, Ready, Scheduler, get_scheduler, available

    inst = Instance((Job.single("a", release_s=1.0, server_s=2.0, tail_s=3.0), ...))
    sched = get_scheduler("schrage")             # or any registered name, with **params
    order = sched.order(inst, np.random.default_rng(0))
    makespan(inst, order)

Importing this package registers the built-in schedulers; plugins from the ``sfsim.schedulers``
entry-point group are loaded on the first name lookup. See ``docs/schedulers.md``.
"""

from sfsim.schedulers import carlier as _carlier  # noqa: F401  (registers the built-ins)
from sfsim.schedulers import local_search as _local_search  # noqa: F401
from sfsim.schedulers import milp as _milp  # noqa: F401
from sfsim.schedulers import rules as _rules  # noqa: F401
from sfsim.schedulers.base import Instance, Job, Plan, Ready, Scheduler
from sfsim.schedulers.evaluate import TaskTime, dispatch, makespan, schedule_times
from sfsim.schedulers.registry import available, get_scheduler, register

__all__ = [
    "Instance",
    "Job",
    "Plan",
    "Ready",
    "Scheduler",
    "TaskTime",
    "available",
    "dispatch",
    "get_scheduler",
    "makespan",
    "register",
    "schedule_times",
]
