"""Example sfsim scheme plugin: every device fine-tunes the whole model alone, never syncing.

A lower bound on round time for comparison: each device runs K local iterations of forward,
backward and optimizer step through the whole model with LoRA (the per-iteration costs and the
memory layout of ``fedlora``), and nothing crosses a link. The server only holds its runtime.
"""

from __future__ import annotations

from sfsim.costs import footprint as fp
from sfsim.engine import SERVER, Proc, Sim
from sfsim.schemes import Scheme
from sfsim.schemes.fedlora import full_model_weight_bytes, local_costs
from sfsim.world import DeviceSpec


class LocalOnly(Scheme):
    name = "local_only"
    description = (
        "Local-only LoRA (example plugin): each device trains the whole model for K iterations "
        "per round; no uploads, no aggregation, nothing on the links"
    )
    uses_scheduler = False
    fixed_scheduler = "fifo"  # the server serves nobody

    def setup(self, sim: Sim) -> None:
        w = sim.world
        self.costs = {d.id: local_costs(w, d) for d in w.devices}
        n = w.arch.n_layers
        for d in w.devices:
            st = fp.adapter_state(w.workload(d.batch), w.scenario.model.lora.optimizer)
            sim.alloc(d.id, "weights", full_model_weight_bytes(w), "full frozen model")
            sim.alloc(d.id, "adapters", n * st.adapters, "LoRA on every block")
            sim.alloc(d.id, "optimizer", n * st.optimizer, "LoRA optimizer")
            sim.alloc(d.id, "overhead", d.overhead_bytes, "runtime")
        sim.alloc(SERVER, "overhead", w.server.overhead_bytes, "runtime")

    def round(self, sim: Sim, r: int) -> Proc:
        yield sim.all_of([self._train(sim, r, d) for d in sim.world.devices])

    def _train(self, sim: Sim, r: int, d: DeviceSpec) -> Proc:
        c = self.costs[d.id]
        for k in range(sim.world.local_iterations):
            sim.alloc(d.id, "activations", c.saved_bytes, "saved activations")
            yield from sim.compute(d.id, "device_fwd", c.fwd_s, round=r, iteration=k,
                                   flops=c.fwd_flops)
            sim.alloc(d.id, "gradients", c.grad_bytes, "LoRA grads")
            yield from sim.compute(d.id, "device_bwd", c.bwd_s, round=r, iteration=k,
                                   flops=c.bwd_flops)
            sim.free(d.id, "gradients", c.grad_bytes, "LoRA grads")
            sim.free(d.id, "activations", c.saved_bytes, "saved activations")
