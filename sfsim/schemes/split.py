"""Split federated LoRA fine-tuning with a sequential server: ``memsfl`` and ``sfl_v2``.

One iteration for device u with cut c_u (the device holds the embedding and blocks 1..c_u):

1. device forward through blocks 1..c_u; 2. uplink of the boundary activations and labels;
3. server forward through blocks c_u+1..L and the head, loss, server backward (LoRA gradients and
   the gradient at the cut); 4. downlink of the cut gradient; 5. device backward and optimizer step.

A round is K such iterations per device, an upload of the device-side adapters, FedAvg on the
server and a broadcast of each device's averaged part. The server serves one device at a time.

The two schemes differ in what the server keeps in memory and who picks the order:

* ``memsfl`` (paper 000): ONE full frozen model plus, per device, the LoRA adapters and optimizer
  state of blocks c_u+1..L (every device owns a full adapter set); heterogeneous cuts are free; the
  order comes from the scenario's scheduler.
* ``sfl_v2`` (SplitFed v2 / SplitLoRA): one shared server-side model (blocks c_min+1..L and the
  head) with ONE shared adapter set, updated device after device in FIFO order of arrival.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from sfsim.costs import Op, Processor
from sfsim.costs import footprint as fp
from sfsim.engine import SERVER, Proc, Sim
from sfsim.errors import InputError
from sfsim.schedulers import Instance, Job
from sfsim.schemes.base import Scheme, register_scheme
from sfsim.server import ServerQueue, ServerTask
from sfsim.world import DeviceSpec, World


@dataclass(frozen=True)
class SplitCosts:
    """Per-iteration times, FLOPs and bytes of one device under a split scheme."""

    dev_fwd_s: float
    dev_bwd_s: float
    srv_fwd_s: float
    srv_bwd_s: float
    dev_fwd_flops: float
    dev_bwd_flops: float
    srv_fwd_flops: float
    srv_bwd_flops: float
    up_bytes: float  # boundary activations + labels
    down_bytes: float  # gradient at the cut
    adapter_bytes: float  # device-side LoRA parameters (uploaded and broadcast each round)


def split_costs(world: World, dev: DeviceSpec, cut: int) -> SplitCosts:
    """Sum the cost model's per-op times over the blocks each side runs."""
    w = world.workload(dev.batch)
    cm, dp, sp = world.costs, dev.processor, world.server.processor
    n_srv = world.arch.n_layers - cut

    def side(ops: list[tuple[Op, int]], proc: Processor) -> tuple[float, float]:
        t = sum((n * cm.time_s(op, w, proc) for op, n in ops if n), 0.0)
        f = sum((n * cm.flops(op, w) for op, n in ops if n), 0.0)
        return t, f

    dev_fwd = side([(Op.EMBED_FWD, 1), (Op.BLOCK_FWD, cut)], dp)
    dev_bwd = side(
        [(Op.BLOCK_BWD_NO_INPUT_GRAD, 1), (Op.BLOCK_BWD, cut - 1), (Op.OPT_STEP, cut)], dp
    )
    srv_fwd = side([(Op.BLOCK_FWD, n_srv), (Op.HEAD_FWD, 1)], sp)
    srv_bwd = side([(Op.HEAD_BWD, 1), (Op.BLOCK_BWD, n_srv), (Op.OPT_STEP, n_srv)], sp)
    boundary = fp.boundary_bytes(w)
    return SplitCosts(
        dev_fwd_s=dev_fwd[0],
        dev_bwd_s=dev_bwd[0],
        srv_fwd_s=srv_fwd[0],
        srv_bwd_s=srv_bwd[0],
        dev_fwd_flops=dev_fwd[1],
        dev_bwd_flops=dev_bwd[1],
        srv_fwd_flops=srv_fwd[1],
        srv_bwd_flops=srv_bwd[1],
        up_bytes=boundary + fp.label_bytes(w),
        down_bytes=boundary,
        adapter_bytes=cut * fp.adapter_state(w).adapters,
    )


class SplitScheme(Scheme):
    """Shared machinery of split schemes with a one-at-a-time server."""

    def cut(self, dev: DeviceSpec) -> int:
        if dev.cut is None:
            raise InputError(
                f"scheme {self.name!r} needs a cut layer for device {dev.id!r}",
                key="devices[].cut / fleet.cut",
            )
        return dev.cut

    # ---- memory laid out at t = 0 -------------------------------------------------------------
    def setup(self, sim: Sim) -> None:
        w0 = sim.world
        self.costs = {d.id: split_costs(w0, d, self.cut(d)) for d in w0.devices}
        for d in w0.devices:
            w, c = w0.workload(d.batch), self.cut(d)
            st = fp.adapter_state(w, w0.scenario.model.lora.optimizer)
            sim.alloc(
                d.id,
                "weights",
                fp.embedding_weight_bytes(w) + c * fp.block_weight_bytes(w),
                "embedding + device blocks",
            )
            sim.alloc(d.id, "adapters", c * st.adapters, "device LoRA")
            sim.alloc(d.id, "optimizer", c * st.optimizer, "device LoRA optimizer")
            sim.alloc(d.id, "overhead", d.overhead_bytes, "runtime")
        sim.alloc(SERVER, "overhead", w0.server.overhead_bytes, "runtime")
        self.setup_server(sim)

    def setup_server(self, sim: Sim) -> None:
        raise NotImplementedError

    # ---- one round ----------------------------------------------------------------------------
    def estimate(self, sim: Sim) -> Instance:
        """The round as the scheduler sees it: estimated release, server times, lags, tails."""
        jobs = []
        k = sim.world.local_iterations
        for d in sim.world.devices:
            c = self.costs[d.id]
            up = d.uplink.expected_rate_bps()
            down = d.downlink.expected_rate_bps()
            up_s = d.uplink.latency_s + 8 * c.up_bytes / up
            down_s = d.downlink.latency_s + 8 * c.down_bytes / down
            adapter_s = d.uplink.latency_s + 8 * c.adapter_bytes / up
            lag = down_s + c.dev_bwd_s + c.dev_fwd_s + up_s
            jobs.append(
                Job(
                    id=d.id,
                    release_s=c.dev_fwd_s + up_s,
                    server_s=(c.srv_fwd_s + c.srv_bwd_s,) * k,
                    lag_s=(lag,) * (k - 1),
                    tail_s=down_s + c.dev_bwd_s + adapter_s,
                )
            )
        return Instance(tuple(jobs))

    def round(self, sim: Sim, r: int) -> Proc:
        instance = self.estimate(sim)
        queue = ServerQueue.for_round(sim, r, self.scheduler, sim.scheduler_rng, instance)
        server = sim.env.process(queue.run())
        jobs = {j.id: j for j in instance.jobs}
        yield sim.all_of(
            [self.device_round(sim, r, d, queue, jobs[d.id]) for d in sim.world.devices]
        )
        yield server
        yield from self.aggregate(sim, r)

    def device_round(self, sim: Sim, r: int, d: DeviceSpec, queue: ServerQueue, job: Job) -> Proc:
        c = self.costs[d.id]
        w = sim.world.workload(d.batch)
        cut = self.cut(d)
        st = fp.adapter_state(w)
        acts = cut * fp.block_saved_activation_bytes(w)
        k_total = sim.world.local_iterations
        for k in range(k_total):
            sim.alloc(d.id, "activations", acts, "saved activations")
            yield from sim.compute(
                d.id, "device_fwd", c.dev_fwd_s, round=r, iteration=k, flops=c.dev_fwd_flops
            )
            sim.alloc(d.id, "boundary", c.down_bytes, "cut activations")
            yield from sim.send(
                d.id, "uplink", "uplink_activations", c.up_bytes, round=r, iteration=k
            )
            sim.alloc(SERVER, "boundary", c.up_bytes, f"{d.id} activations")
            remaining = job.remaining_s(k)
            serve = partial(self.serve, sim, r)
            task = ServerTask(d.id, k, job.server_s[k], remaining, serve, sim.env.event())
            yield queue.submit(task)
            yield from sim.send(
                d.id, "downlink", "downlink_gradients", c.down_bytes, round=r, iteration=k
            )
            sim.free(SERVER, "boundary", c.down_bytes, f"{d.id} cut gradient sent")
            sim.alloc(d.id, "boundary", c.down_bytes, "cut gradient")
            sim.alloc(d.id, "gradients", cut * st.gradients, "device LoRA grads")
            yield from sim.compute(
                d.id, "device_bwd", c.dev_bwd_s, round=r, iteration=k, flops=c.dev_bwd_flops
            )
            sim.free(d.id, "gradients", cut * st.gradients, "device LoRA grads")
            sim.free(d.id, "activations", acts, "saved activations")
            sim.free(d.id, "boundary", 2 * c.down_bytes, "cut activations and gradient")
        yield from sim.send(d.id, "uplink", "adapter_upload", c.adapter_bytes, round=r)
        sim.alloc(SERVER, "adapters", c.adapter_bytes, f"{d.id} uploaded adapters")

    def serve(self, sim: Sim, r: int, task: ServerTask) -> Proc:
        """Server forward + backward for one device's iteration."""
        d = sim.world.device(task.device)
        c = self.costs[d.id]
        w = sim.world.workload(d.batch)
        n_srv = sim.world.arch.n_layers - self.cut(d)
        acts = n_srv * fp.block_saved_activation_bytes(w) + fp.head_saved_activation_bytes(w)
        grads = n_srv * fp.adapter_state(w).gradients
        k = task.iteration
        sim.alloc(SERVER, "activations", acts, f"{d.id} saved activations")
        yield from sim.compute(
            SERVER,
            "server_fwd",
            c.srv_fwd_s,
            round=r,
            iteration=k,
            flops=c.srv_fwd_flops,
            resource="server",
            device=d.id,
        )
        sim.alloc(SERVER, "gradients", grads, f"{d.id} server LoRA grads")
        yield from sim.compute(
            SERVER,
            "server_bwd",
            c.srv_bwd_s,
            round=r,
            iteration=k,
            flops=c.srv_bwd_flops,
            resource="server",
            device=d.id,
        )
        sim.free(SERVER, "gradients", grads, f"{d.id} server LoRA grads")
        sim.free(SERVER, "activations", acts, f"{d.id} saved activations")
        sim.free(SERVER, "boundary", c.up_bytes, f"{d.id} activations")
        sim.alloc(SERVER, "boundary", c.down_bytes, f"{d.id} cut gradient")

    def aggregate(self, sim: Sim, r: int) -> Proc:
        """FedAvg of the uploaded device adapters, then each device gets its part back."""
        total = sum(c.adapter_bytes for c in self.costs.values())
        flops = 2.0 * total / fp.FP32  # a multiply-add per parameter per device
        seconds = flops / sim.world.server.processor.flops_per_s("fp32")
        yield from sim.compute(
            SERVER, "aggregate", seconds, round=r, flops=flops, resource="server", vary=False
        )
        yield sim.all_of(
            [
                sim.send(
                    d.id, "downlink", "adapter_download", self.costs[d.id].adapter_bytes, round=r
                )
                for d in sim.world.devices
            ]
        )
        sim.free(SERVER, "adapters", total, "uploaded adapters averaged and sent")


@register_scheme
class MemSFL(SplitScheme):
    name = "memsfl"
    description = (
        "memory-efficient SFL (paper 000): one full frozen model on the server, per-device LoRA "
        "sets, devices served one at a time in the scheduler's order"
    )

    def setup_server(self, sim: Sim) -> None:
        w0 = sim.world
        w = w0.workload(1)
        sim.alloc(SERVER, "weights", w0.arch.total_params() * w.dtype_bytes, "full frozen model")
        st = fp.adapter_state(w, w0.scenario.model.lora.optimizer)
        n = sum(w0.arch.n_layers - self.cut(d) for d in w0.devices)
        sim.alloc(SERVER, "adapters", n * st.adapters, "per-device server-side LoRA")
        sim.alloc(SERVER, "optimizer", n * st.optimizer, "per-device server-side optimizer")


@register_scheme
class SFLv2(SplitScheme):
    name = "sfl_v2"
    description = (
        "SplitFed v2 / SplitLoRA: one shared server-side model and adapter set, devices served "
        "one at a time in FIFO order of arrival"
    )
    uses_scheduler = False
    fixed_scheduler = "fifo"

    def setup_server(self, sim: Sim) -> None:
        w0 = sim.world
        w = w0.workload(1)
        n = w0.arch.n_layers - min(self.cut(d) for d in w0.devices)
        # The head's matrix lives on the server even when it is tied to the device's embedding.
        tied = w0.arch.vocab * w0.arch.hidden if w0.arch.tied_embeddings else 0
        head = (w0.arch.head_params() + tied) * w.dtype_bytes
        sim.alloc(
            SERVER,
            "weights",
            n * fp.block_weight_bytes(w) + head,
            "shared server-side blocks + head",
        )
        st = fp.adapter_state(w, w0.scenario.model.lora.optimizer)
        sim.alloc(SERVER, "adapters", n * st.adapters, "shared server-side LoRA")
        sim.alloc(SERVER, "optimizer", n * st.optimizer, "shared server-side optimizer")
