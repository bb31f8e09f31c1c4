"""Server scheduling: which device's task the edge server runs next.

Public API::

    from sfsim.schedulers import Job, Instance, Ready, Scheduler, get_scheduler, available

    inst = Instance((Job.single("a", release_s=1.0, server_s=2.0, tail_s=3.0), ...))
    sched = get_scheduler("schrage")             # or any registered name, with **params
    order = sched.order(inst, np.random.default_rng(0))
    makespan(inst, order)

The built-in schedulers register themselves when the registry is first asked for a name (the
package's names are loaded lazily, so importing it costs almost nothing); plugins from the
``sfsim.schedulers`` entry-point group are loaded at the same moment. See ``docs/schedulers.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below are loaded on first use (keeps `sfsim --help` fast)
    from sfsim.schedulers.base import Instance, Job, Plan, Ready, Scheduler
    from sfsim.schedulers.evaluate import TaskTime, dispatch, makespan, schedule_times
    from sfsim.schedulers.registry import available, get_scheduler, register

_WHERE = {
    "Instance": "base",
    "Job": "base",
    "Plan": "base",
    "Ready": "base",
    "Scheduler": "base",
    "TaskTime": "evaluate",
    "dispatch": "evaluate",
    "makespan": "evaluate",
    "schedule_times": "evaluate",
    "available": "registry",
    "get_scheduler": "registry",
    "register": "registry",
}

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


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'sfsim.schedulers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"sfsim.schedulers.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
