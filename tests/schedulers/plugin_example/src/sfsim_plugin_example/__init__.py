"""Example sfsim scheduler plugin: serve devices by total server work (shortest first)."""

from __future__ import annotations

import numpy as np

from sfsim.schedulers import Instance, Scheduler


class MySched(Scheduler):
    name = "my_sched"
    description = "Devices by total server work, shortest first (descending=True: longest)."

    def __init__(self, descending: bool = False) -> None:
        self.descending = descending  # constructors only store parameters

    def order(self, instance: Instance, rng: np.random.Generator) -> list[str]:
        sign = -1.0 if self.descending else 1.0
        jobs = sorted(instance.jobs, key=lambda j: (sign * sum(j.server_s), j.id))
        return [job.id for job in jobs for _ in job.server_s]  # each job once per task
