"""SplitFed v1: one server-side model copy per device, every device served at the same time.

The device side is the same as in every split scheme (`sfsim.schemes.split`): forward through
blocks 1..c_u, uplink of the boundary activations, downlink of the cut gradient, device backward,
adapter upload at the end of the round. The server differs:

* memory: the server keeps a *copy* of the server-side model (blocks c_u+1..L, final norm and
  head) for each device u, with that copy's LoRA adapters and optimizer state, so its memory
  grows with U × server-side weights. All devices train at once, so the saved activations of
  every device in service are live together.
* order: none. Each device's server forward and backward start as soon as its activations arrive
  and run concurrently with the others' on one processor, modelled as processor sharing
  (`sfsim.schemes.sharing`): with n devices in service each progresses at 1/n speed. The
  per-device server spans in the trace therefore overlap; the work (time alone on the server)
  is what the cost model says, and the time the server is busy equals the total work.
* aggregation: the device-side adapters are FedAvg'd as in the other split schemes, and so are
  the per-device server-side copies (on the server, without crossing a link).
"""

from __future__ import annotations

import simpy

from sfsim.costs import footprint as fp
from sfsim.engine import SERVER, Proc, Sim, Span
from sfsim.schemes.base import register_scheme
from sfsim.schemes.sharing import SharedProcessor
from sfsim.schemes.split import SplitScheme, Submit, server_side_weight_bytes
from sfsim.world import DeviceSpec


@register_scheme
class SFLv1(SplitScheme):
    name = "sfl_v1"
    description = (
        "SplitFed v1: one server-side model copy per device, all devices served concurrently "
        "sharing the server's processor; device- and server-side adapters averaged per round"
    )
    uses_scheduler = False
    fixed_scheduler = "fifo"  # unused: nothing queues

    def setup_server(self, sim: Sim) -> None:
        w0 = sim.world
        w = w0.workload(1)
        st = fp.adapter_state(w, w0.scenario.model.lora.optimizer)
        self.processor = SharedProcessor(sim.env)
        for d in w0.devices:
            n = w0.arch.n_layers - self.cut(d)
            sim.alloc(SERVER, "weights", server_side_weight_bytes(w0, n),
                      f"{d.id} server-side model copy")
            sim.alloc(SERVER, "adapters", n * st.adapters, f"{d.id} server-side LoRA")
            sim.alloc(SERVER, "optimizer", n * st.optimizer, f"{d.id} server-side optimizer")

    def start_server(self, sim: Sim, r: int, present: set[str] | None = None
                     ) -> tuple[Submit, simpy.Process | None]:
        """No queue: each arrival starts its own server process on the shared processor.

        With faults, a dropped device's server pass in progress runs to its end (wasted work).
        """
        if present is not None:  # faults: the estimates give each device's expected span
            self._jobs = {j.id: j for j in self.estimate(sim).jobs}
            self.queue = None

        def submit(d: DeviceSpec, k: int) -> simpy.Event:
            return sim.env.process(self.serve_iteration(sim, r, d, k))

        return submit, None

    def server_compute(self, sim: Sim, r: int, k: int, d: DeviceSpec, phase: str,
                       seconds: float, flops: float) -> Proc:
        """Run one phase on the shared processor and record its (possibly overlapping) span."""
        start = sim.now
        seconds = seconds * sim.slowdown() * sim.world.server.slowdown
        if sim.faults is not None:  # slowdown episodes, as if the pass ran alone (approximate)
            seconds = sim.faults.server_s(start, seconds)
        yield self.processor.submit(seconds)
        sim.trace.add(Span(r, k, d.id, phase, "server", start, sim.now, 0.0, flops))

    def server_adapter_bytes_to_average(self, sim: Sim) -> float:
        """The per-device server-side LoRA copies are averaged too."""
        w = sim.world.workload(1)
        per_block = fp.adapter_state(w).adapters
        return sum((sim.world.arch.n_layers - self.cut(d)) * per_block for d in sim.world.devices)
