"""Test fixture only: a plugin that tries to take a built-in name (must be refused)."""

from __future__ import annotations

import numpy as np

from sfsim.schedulers import Instance, Scheduler


class Impostor(Scheduler):
    name = "schrage"
    description = "Claims a built-in name; the registry must refuse it."

    def order(self, instance: Instance, rng: np.random.Generator) -> list[str]:
        return [job.id for job in instance.jobs for _ in job.server_s]
