"""Federated LoRA (FedIT-style baseline): every device trains the whole model locally.

Each device holds the full frozen model (embedding, L blocks, final norm and head) and a LoRA set
on every block. A round is K local iterations per device, each a forward through the whole model
and the loss, a backward (LoRA gradients; the lowest block needs no input gradient) and an
optimizer step, all on the device; then the device uploads its adapters, the server averages them
(FedAvg, weighted by sample counts: one multiply-add per parameter per device) and broadcasts the
average back. No activation or gradient ever crosses a link, only adapters, once per round each
way.

Memory: the device holds the whole model, every block's LoRA state (adapters, gradients,
optimizer) and, for one batch, the saved activations of every block and of the head (whose fp32
logits are often the largest single tensor). The server holds only the adapters it aggregates:
what has been uploaded this round, and the averaged set while it is broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from sfsim import faults
from sfsim.costs import Op
from sfsim.costs import footprint as fp
from sfsim.engine import SERVER, Proc, Sim
from sfsim.schemes.base import Scheme, register_scheme
from sfsim.world import DeviceSpec, World


@dataclass(frozen=True)
class LocalCosts:
    """One local iteration on a device, and the adapters it exchanges per round."""

    fwd_s: float
    bwd_s: float
    fwd_flops: float
    bwd_flops: float
    saved_bytes: float  # activations kept for the backward
    grad_bytes: float
    adapter_bytes: float  # the whole model's LoRA parameters


def local_costs(world: World, dev: DeviceSpec) -> LocalCosts:
    """Sum the cost model's per-op times over the whole model on the device's processor
    (memoised per world by processor and batch)."""
    key = ("local", dev.processor.name, dev.batch)
    if key not in world.memo:
        world.memo[key] = _local_costs(world, dev)
    costs: LocalCosts = world.memo[key]
    return costs


def _local_costs(world: World, dev: DeviceSpec) -> LocalCosts:
    w = world.workload(dev.batch)
    cm, proc, n = world.costs, dev.processor, world.arch.n_layers

    def side(ops: list[tuple[Op, int]]) -> tuple[float, float]:
        return (sum(k * cm.time_s(op, w, proc) for op, k in ops if k),
                sum(k * cm.flops(op, w) for op, k in ops if k))

    fwd = side([(Op.EMBED_FWD, 1), (Op.BLOCK_FWD, n), (Op.HEAD_FWD, 1)])
    bwd = side([(Op.HEAD_BWD, 1), (Op.BLOCK_BWD, n - 1), (Op.BLOCK_BWD_NO_INPUT_GRAD, 1),
                (Op.OPT_STEP, n)])
    saved = (fp.stack_saved_activation_bytes(w, n, input_grad=False)
             + fp.head_saved_activation_bytes(w))
    st = fp.adapter_state(w)
    return LocalCosts(fwd[0], bwd[0], fwd[1], bwd[1], saved, n * st.gradients, n * st.adapters)


def full_model_weight_bytes(world: World) -> float:
    return float(world.arch.total_params() * world.workload(1).dtype_bytes)


def fedlora_device_peak_bytes(world: World, dev: DeviceSpec) -> float:
    """Peak of a device under fedlora (during its backward everything is live)."""
    c = local_costs(world, dev)
    st = fp.adapter_state(world.workload(dev.batch), world.scenario.model.lora.optimizer)
    lora = world.arch.n_layers * (st.adapters + st.optimizer)
    return full_model_weight_bytes(world) + lora + c.saved_bytes + c.grad_bytes + dev.overhead_bytes


@register_scheme
class FedLoRA(Scheme):
    name = "fedlora"
    description = (
        "FedIT-style federated LoRA: each device trains the whole model with LoRA for K local "
        "iterations; adapters uploaded, FedAvg'd on the server and broadcast; no activations"
    )
    uses_scheduler = False
    fixed_scheduler = "fifo"  # unused: the server only aggregates
    supports_faults = True

    def setup(self, sim: Sim) -> None:
        w0 = sim.world
        self.costs = {d.id: local_costs(w0, d) for d in w0.devices}
        for d in w0.devices:
            st = fp.adapter_state(w0.workload(d.batch), w0.scenario.model.lora.optimizer)
            n = w0.arch.n_layers
            sim.alloc(d.id, "weights", full_model_weight_bytes(w0), "full frozen model")
            sim.alloc(d.id, "adapters", n * st.adapters, "LoRA on every block")
            sim.alloc(d.id, "optimizer", n * st.optimizer, "LoRA optimizer")
            sim.alloc(d.id, "overhead", d.overhead_bytes, "runtime")
        sim.alloc(SERVER, "overhead", w0.server.overhead_bytes, "runtime")

    def round(self, sim: Sim, r: int) -> Proc:
        if sim.faults is not None:  # dropouts, deadlines (sfsim.faults): FedAvg of the finished
            run = faults.RoundRun(sim, r, sim.world.devices)
            finished = yield from run.run(partial(self.local_round, sim, r),
                                          partial(self.expected_span_s, sim),
                                          lambda d, reason: None)  # the server holds nothing
            yield from self.aggregate(sim, r, finished)
            return
        yield sim.all_of([self.local_round(sim, r, d) for d in sim.world.devices])
        yield from self.aggregate(sim, r)

    def expected_span_s(self, sim: Sim, d: DeviceSpec) -> float:
        """Device d's round alone: its iterations and its adapter upload at the mean rate."""
        c = self.costs[d.id]
        compute = sim.world.iterations(d) * (c.fwd_s + c.bwd_s) * d.slowdown
        return compute + d.uplink.latency_s + 8.0 * c.adapter_bytes / d.uplink.expected_rate_bps()

    def local_round(self, sim: Sim, r: int, d: DeviceSpec) -> Proc:
        c = self.costs[d.id]
        for k in range(sim.world.iterations(d)):
            sim.alloc(d.id, "activations", c.saved_bytes, "saved activations")
            yield from sim.compute(d.id, "device_fwd", c.fwd_s, round=r, iteration=k,
                                   flops=c.fwd_flops)
            sim.alloc(d.id, "gradients", c.grad_bytes, "LoRA grads")
            yield from sim.compute(d.id, "device_bwd", c.bwd_s, round=r, iteration=k,
                                   flops=c.bwd_flops)
            sim.free(d.id, "gradients", c.grad_bytes, "LoRA grads")
            sim.free(d.id, "activations", c.saved_bytes, "saved activations")
        yield from sim.send(d.id, "uplink", "adapter_upload", c.adapter_bytes, round=r)
        sim.alloc(SERVER, "adapters", c.adapter_bytes, f"{d.id} uploaded adapters")

    def aggregate(self, sim: Sim, r: int, devices: list[DeviceSpec] | None = None) -> Proc:
        """FedAvg of every device's adapters, then the average goes to every device.

        ``devices``: those whose update enters (faults: the ones that finished); default all.
        """
        devices = sim.world.devices if devices is None else devices
        uploaded = sum(self.costs[d.id].adapter_bytes for d in devices)
        averaged = max((self.costs[d.id].adapter_bytes for d in devices), default=0.0)
        flops = 2.0 * uploaded / fp.FP32
        seconds = flops / sim.world.server.processor.flops_per_s("fp32")
        sim.alloc(SERVER, "adapters", averaged, "averaged adapters")
        yield from sim.compute(SERVER, "aggregate", seconds, round=r, flops=flops,
                               resource="server", vary=False)
        sim.free(SERVER, "adapters", uploaded, "uploaded adapters averaged")
        for d in devices:
            sim.log("aggregate", round=r, device=d.id, value=d.samples)
        if sim.world.scenario.channel.broadcast_downlink:  # one send reaches every device
            from sfsim.schemes.split import broadcast_adapters

            yield from broadcast_adapters(sim, r, devices, self.costs)
        else:
            yield sim.all_of([
                sim.send(d.id, "downlink", "adapter_download", self.costs[d.id].adapter_bytes,
                         round=r)
                for d in devices
            ])
        sim.free(SERVER, "adapters", averaged, "averaged adapters broadcast")
