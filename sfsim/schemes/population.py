"""Driving a scheme through a run: the whole fleet, or each round's participants of a population.

A run calls `RoundDriver.start` once and `RoundDriver.round` per round. With a whole fleet these
are just the scheme's ``setup`` (at t = 0) and ``round``.

With a population (``fleet.participants``) only the round's participants exist for the scheme. At
the start of round r the world holds just them (built on demand from the population's columns,
`sfsim.world.Population`); the scheme's ``setup`` lays out their memory (device side and what the
server keeps for them, e.g. memsfl's per-device server-side LoRA), picks their cuts and computes
their costs; the round runs; and everything ``setup`` allocated is released at the round's end.

Assumption: between its rounds a device's state (its adapters and optimizer state, on the device
and on the server) lives off the GPU, in host memory or storage, and is loaded at the round's
start at no modelled cost. Run-long server state (the frozen model, the runtime overhead) is
released and set up again at the same instant, which leaves every peak unchanged. What a scheme
notes in ``setup`` (chosen cuts, backbones) becomes a list with one entry per round. Nothing is
built for a device that never takes part, so a run's cost grows with its participants, not with
the population.
"""

from __future__ import annotations

from typing import Any

from sfsim.engine import MEMORY_KINDS, SERVER, Proc, Sim
from sfsim.schemes.base import Scheme
from sfsim.world import DeviceSpec

#: Notes the driver and the server keep themselves (the others, written by ``setup``, per round).
_OWN_NOTES = ("plans", "population", "participants")
RELEASE_LABEL = "round over: state moved off the GPU"


class RoundDriver:
    def __init__(self, scheme: Scheme, sim: Sim):
        self.scheme = scheme
        self.sim = sim
        self.base = sim.world
        self.took_part: dict[str, DeviceSpec] = {}  # as last set up (cuts chosen), first-come order
        self.round_notes: dict[str, list[dict[str, Any]]] = {}

    def start(self) -> None:
        """Set the run up: the whole fleet at t = 0, or, for a population, only the notes."""
        pop = self.base.population
        if pop is None:
            self.scheme.setup(self.sim)
            return
        self.sim.notes["population"] = pop.size
        self.sim.notes["participants"] = []

    def round(self, r: int) -> Proc:
        """Round r: for a population, set up its participants, run it, release their memory."""
        sim, pop = self.sim, self.base.population
        if pop is None:
            yield from self.scheme.round(sim, r)
            return
        devices = pop.round_devices(r)
        sim.world = self.base.with_devices(devices)
        owners = [d.id for d in devices] + [SERVER]
        before = {(o, k): sim.memory.level(o, k) for o in owners for k in MEMORY_KINDS}
        notes = dict(sim.notes)
        self.scheme.setup(sim)
        held = {key: sim.memory.level(*key) - level for key, level in before.items()}
        for key, value in list(sim.notes.items()):
            if key not in _OWN_NOTES and value is not notes.get(key):
                self.round_notes.setdefault(key, []).append({"round": r, "value": value})
                sim.notes[key] = self.round_notes[key]
        for d in sim.world.devices:
            self.took_part[d.id] = d
        sim.notes["participants"].append([d.id for d in devices])
        yield from self.scheme.round(sim, r)
        for (owner, kind), nbytes in held.items():
            if nbytes > 0:
                sim.free(owner, kind, nbytes, RELEASE_LABEL)
        sim.world = self.base.with_devices(list(self.took_part.values()))
