"""Fed MobiLLM (paper 001): forward-only devices on own backbones, a side network on the server.

Each device runs a *frozen* backbone sized to its memory, forward only (``Op.BLOCK_FWD_FROZEN``,
nothing saved, no backward, no adapters). Backbones differ across the fleet but share a family
(e.g. GPT-2 small / medium / large): by default each device gets the largest backbone of
``training.fedmobillm.backbones`` whose forward fits its memory (``backbone_policy:
largest_fit``), or the one named for its processor class (``by_processor``; other classes fall
back to largest_fit).

For every sample the device uploads the hidden states at the tapped layers plus the labels,
**once**: the first time a sample is used. The server keeps them in an activation cache (server
memory, kind ``cache``, held until training ends) and later epochs train from the cache without
the device. The server trains ONE shared side network (`sfsim.schemes.side`) with one alignment
layer set per backbone kind, asynchronously: it takes cached batches one at a time in the order
they arrived, never waiting for a particular device, and nothing is sent back during training.

Devices stream (`sfsim.schemes.stream`): forward of batch t+1 overlaps the upload of batch t,
bounded by ``training.pipeline.buffer_batches``; a credit returns as soon as a batch lands in the
cache. There is no round barrier (docs/async.md): devices stream at their own pace, the server
trains from its cache as batches arrive, and a round is bookkeeping — round r ends when the
server has taken (r + 1) × Σ K_d steps (rounds × K_d per device in all, as before). A population
keeps a per-round path with a barrier. Activation compression (`sfsim.compression`) may shrink
what is uploaded: fewer taps, kept tokens, quantisation.

Convergence (the paper's 5.1× faster convergence) depends on rounds-to-accuracy, which a systems
simulator does not model: compare wall-clock time for the same number of steps instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from sfsim import compression
from sfsim.compression import Compressed
from sfsim.costs import ARCHS, ModelArch, Op, Workload, get_arch
from sfsim.costs import footprint as fp
from sfsim.engine import SERVER, Proc, Sim
from sfsim.errors import InfeasibleError
from sfsim.schedulers import Scheduler
from sfsim.schemes.base import Scheme, register_scheme
from sfsim.schemes.cuts import GB, frozen_working_bytes
from sfsim.schemes.side import SideNet, build_side_net, tap_layers
from sfsim.schemes.split import server_side_weight_bytes
from sfsim.schemes.stream import Arrival, DeviceStream, Mailbox, StreamCosts
from sfsim.world import DeviceSpec, World


def backbone_workload(world: World, arch: ModelArch, batch: int) -> Workload:
    return replace(world.workload(batch), arch=arch)


def upload_bytes(world: World, dev: DeviceSpec, arch: ModelArch, taps: int) -> float:
    """Tapped hidden states and labels of one batch: what is uploaded and cached (compressed as
    ``training.compression`` says: kept tokens, their labels, quantisation)."""
    w = backbone_workload(world, arch, dev.batch)
    comp = world.scenario.training.compression
    if not compression.requested(comp):
        return taps * fp.boundary_bytes(w) + fp.label_bytes(w)
    kept = compression.kept_tokens(comp, w.seq)
    return (compressed(world, dev, arch, taps).nbytes
            + dev.batch * kept * fp.LABEL_BYTES_PER_TOKEN)


def compressed(world: World, dev: DeviceSpec, arch: ModelArch, taps: int) -> Compressed:
    """One batch's tapped activations under ``training.compression`` (sfsim/compression.py)."""
    w = backbone_workload(world, arch, dev.batch)
    comp = world.scenario.training.compression
    kept = compression.kept_tokens(comp, w.seq)
    return compression.compress(comp, vectors=taps * dev.batch * kept, width=arch.hidden,
                                dtype_bytes=w.dtype_bytes, seq_len=w.seq,
                                device=dev.processor, server=world.server.processor)


def n_taps(world: World) -> int:
    """Tapped layers uploaded: ``fedmobillm.taps``, or ``compression.sampled_taps``."""
    return compression.taps(world.scenario.training.compression,
                            world.scenario.training.fedmobillm.taps)


def backbone_device_peak_bytes(world: World, dev: DeviceSpec, arch: ModelArch) -> float:
    """Backbone weights (embedding + blocks, no head), one block's forward working set, the
    send buffer's outputs, and the runtime overhead."""
    w = backbone_workload(world, arch, dev.batch)
    weights = fp.embedding_weight_bytes(w) + arch.n_layers * fp.block_weight_bytes(w)
    buffer = world.scenario.training.pipeline.buffer_batches
    taps = len(tap_layers(arch.n_layers, n_taps(world)))
    return (weights + frozen_working_bytes(w) + buffer * upload_bytes(world, dev, arch, taps)
            + dev.overhead_bytes)


def candidate_backbones(world: World) -> list[ModelArch]:
    """The backbones devices may run, smallest first (default: the model's family up to it)."""
    names = world.scenario.training.fedmobillm.backbones
    archs: list[ModelArch]
    if names:
        archs = list({get_arch(n).name: get_arch(n) for n in names}.values())
    else:
        ref = world.arch
        archs = [a for a in ARCHS.values()
                 if a.family == ref.family and a.total_params() <= ref.total_params()]
    return sorted(archs, key=lambda a: a.total_params())


def choose_backbones(world: World) -> dict[str, ModelArch]:
    """Each device's backbone under the scenario's backbone policy."""
    cfg = world.scenario.training.fedmobillm
    options = candidate_backbones(world)
    out: dict[str, ModelArch] = {}
    for d in world.devices:
        if cfg.backbone_policy == "by_processor" and d.processor.name in cfg.by_processor:
            out[d.id] = get_arch(cfg.by_processor[d.processor.name])
            continue
        fits = [a for a in options if backbone_device_peak_bytes(world, d, a) <= d.memory_bytes]
        if not fits:
            need = backbone_device_peak_bytes(world, d, options[0])
            raise InfeasibleError(
                f"scheme 'fedmobillm': device {d.id!r} ({d.processor.name}) cannot run even the "
                f"smallest backbone {options[0].name}: it needs {need / GB:.2f} GB, the device "
                f"has {d.memory_bytes / GB:.2f} GB", key="training.fedmobillm.backbones")
        out[d.id] = fits[-1]
    return out


@dataclass(frozen=True)
class MobiCosts:
    """One device's per-batch costs under fedmobillm."""

    device: StreamCosts
    n_batches: int  # distinct batches in the device's data: uploaded once each
    srv_fwd_s: float
    srv_bwd_s: float
    srv_fwd_flops: float
    srv_bwd_flops: float
    saved_bytes: float
    grad_bytes: float


def mobi_costs(world: World, dev: DeviceSpec, arch: ModelArch, side: SideNet) -> MobiCosts:
    w = backbone_workload(world, arch, dev.batch)
    cm, seq, dtype = world.costs, world.scenario.model.seq_len, world.scenario.model.dtype
    emb, blk = Op.EMBED_FWD, Op.BLOCK_FWD_FROZEN
    comp = world.scenario.training.compression
    q = Compressed(0.0, 0.0, 0.0, 0.0, 0.0)
    if compression.requested(comp):  # the side network sees the kept tokens only
        q = compressed(world, dev, arch, side.taps)
        seq = compression.kept_tokens(comp, seq)
    device = StreamCosts(
        fwd_s=cm.time_s(emb, w, dev.processor) + arch.n_layers * cm.time_s(blk, w, dev.processor)
        + q.device_s,
        fwd_flops=cm.flops(emb, w) + arch.n_layers * cm.flops(blk, w) + q.device_flops,
        working_bytes=frozen_working_bytes(w),
        up_bytes=upload_bytes(world, dev, arch, side.taps),  # every backbone feeds each tap
    )
    f_s, b_s, f_fl, b_fl = side.step_s(arch.name, dev.batch, seq, dtype, cm,
                                       world.server.processor)
    f_s, f_fl = f_s + q.server_s, f_fl + q.server_flops
    return MobiCosts(
        device=device, n_batches=math.ceil(dev.samples / dev.batch),
        srv_fwd_s=f_s, srv_bwd_s=b_s, srv_fwd_flops=f_fl, srv_bwd_flops=b_fl,
        saved_bytes=side.saved_activation_bytes(dev.batch, seq, dtype),
        grad_bytes=fp.FP32 * side.step_params(arch.name),
    )


@register_scheme
class FedMobiLLM(Scheme):
    name = "fedmobillm"
    description = (
        "Fed MobiLLM (paper 001): forward-only devices on memory-sized frozen backbones upload "
        "tapped activations once per sample; the server trains one side network from its cache"
    )
    uses_scheduler = False
    fixed_scheduler = "fifo"

    def __init__(self, scheduler: Scheduler):
        super().__init__(scheduler)
        # Run-long, not reset by setup (a population sets up every round; the cache outlives it)
        self.cached_bytes = 0.0
        self.batches_done: dict[str, int] = {}  # batches each device has trained on so far

    def setup(self, sim: Sim) -> None:
        w0 = sim.world
        cfg = w0.scenario.training.fedmobillm
        self.backbones = choose_backbones(w0)
        sim.notes["backbones"] = {d: a.name for d, a in self.backbones.items()}
        kinds = {a.name: a for a in self.backbones.values()}
        self.side = build_side_net(w0.arch, kinds, n_taps(w0), cfg.side_ratio)
        self.costs = {d.id: mobi_costs(w0, d, self.backbones[d.id], self.side)
                      for d in w0.devices}
        for d in w0.devices:
            arch = self.backbones[d.id]
            w = backbone_workload(w0, arch, d.batch)
            sim.alloc(d.id, "weights",
                      fp.embedding_weight_bytes(w) + arch.n_layers * fp.block_weight_bytes(w),
                      f"frozen backbone {arch.name}")
            sim.alloc(d.id, "overhead", d.overhead_bytes, "runtime")
        st = fp.adapter_state(w0.workload(1), w0.scenario.model.lora.optimizer)
        moments = st.optimizer // st.adapters  # optimizer state per fp32 parameter
        params = self.side.trainable_params()
        sim.alloc(SERVER, "overhead", w0.server.overhead_bytes, "runtime")
        sim.alloc(SERVER, "weights", server_side_weight_bytes(w0, 0),
                  "frozen final norm + LM head")
        sim.alloc(SERVER, "adapters", fp.FP32 * params, "side network + alignment layers")
        sim.alloc(SERVER, "optimizer", moments * fp.FP32 * params, "side network optimizer")

    def continuous(self, sim: Sim) -> bool:
        """No round barriers, except in a population (each round's participants are set up,
        run and released in turn: the per-round path below, documented in docs/async.md)."""
        return sim.world.population is None

    def run_all(self, sim: Sim, bounds: list[tuple[float, float]],
                on_round: Callable[[int, int], None] | None = None) -> Proc:
        """The whole training without round barriers (docs/async.md).

        Each device streams its fresh batches (``min(n_batches, rounds × K_d)``, each uploaded
        once) at its own pace. The server takes fresh batches in arrival order; with none
        waiting it replays cached batches (later epochs) of a device whose fresh batches it has
        all trained on, the one with the fewest steps so far first. It takes ``rounds × K_d``
        steps per device in all; bookkeeping round r ends when it has taken ``(r + 1) × Σ K_d``.
        """
        world = sim.world
        buffer = world.scenario.training.pipeline.buffer_batches
        mailbox = Mailbox(sim)
        order = [d.id for d in world.devices]
        k_of = {d.id: world.iterations(d) for d in world.devices}
        total = {d: world.rounds * k for d, k in k_of.items()}
        n_data = {d: self.costs[d].n_batches for d in order}
        fresh = {d: min(n_data[d], total[d]) for d in order}
        arrived: dict[str, dict[int, float]] = {d: {} for d in order}  # batch -> arrival time
        streams: dict[str, DeviceStream] = {}

        def arrive(a: Arrival) -> None:
            nbytes = self.costs[a.device].device.up_bytes
            sim.alloc(SERVER, "cache", nbytes, f"{a.device} tapped activations + labels")
            self.cached_bytes += nbytes
            arrived[a.device][a.round * k_of[a.device] + a.iteration] = a.arrival_s
            streams[a.device].release()  # the batch is in the cache: the device has room again
            mailbox.put(a)

        for d in order:
            streams[d] = DeviceStream(sim, d, buffer, arrive)
            k = k_of[d]
            sim.env.process(streams[d].run(0, [s % k for s in range(fresh[d])],
                                           self.costs[d].device,
                                           rounds=[s // k for s in range(fresh[d])]))
        per_round = sum(k_of.values())
        done = dict.fromkeys(order, 0)  # server steps per device
        trained_fresh = dict.fromkeys(order, 0)
        start = sim.now
        for step in range(world.rounds * per_round):
            r = step // per_round  # the bookkeeping round this step belongs to
            while True:
                if mailbox.waiting:
                    a = mailbox.waiting.pop(0)
                    dev, s = a.device, a.round * k_of[a.device] + a.iteration
                    trained_fresh[dev] += 1
                    sim.wait_span(dev, "queue_wait", "server_queue", a.arrival_s, round=r,
                                  iteration=s % k_of[dev])
                    break
                ready = [d for d in order if trained_fresh[d] == fresh[d] and done[d] < total[d]]
                if ready:  # nothing new waiting: train from the cache
                    dev = min(ready, key=lambda d: done[d])
                    s = done[dev]
                    break
                yield mailbox.next_arrival()
            batch = s % n_data[dev]
            sim.log("update", round=r, device=dev, iteration=batch,
                    value=sim.now - arrived[dev][batch],
                    detail=f"epoch={s // n_data[dev]} versions=0")
            done[dev] += 1
            yield from self._step(sim, r, dev, s % k_of[dev])
            if (step + 1) % per_round == 0:
                bounds.append((start, sim.now))
                start = sim.now
                if on_round is not None:
                    on_round(r + 1, world.rounds)
        sim.free(SERVER, "cache", self.cached_bytes, "training done: cache dropped")

    def _step(self, sim: Sim, r: int, device: str, iteration: int) -> Proc:
        """One side-network step on one of ``device``'s cached batches."""
        c = self.costs[device]
        sim.alloc(SERVER, "activations", c.saved_bytes, f"{device} side activations")
        yield from sim.compute(SERVER, "server_fwd", c.srv_fwd_s, round=r, iteration=iteration,
                               flops=c.srv_fwd_flops, resource="server", device=device)
        sim.alloc(SERVER, "gradients", c.grad_bytes, f"{device} side gradients")
        yield from sim.compute(SERVER, "server_bwd", c.srv_bwd_s, round=r, iteration=iteration,
                               flops=c.srv_bwd_flops, resource="server", device=device)
        sim.free(SERVER, "gradients", c.grad_bytes, f"{device} side gradients")
        sim.free(SERVER, "activations", c.saved_bytes, f"{device} side activations")

    def round(self, sim: Sim, r: int) -> Proc:
        """One round with a barrier: the path a population takes (docs/async.md)."""
        mailbox = Mailbox(sim)
        buffer = sim.world.scenario.training.pipeline.buffer_batches
        streams: dict[str, DeviceStream] = {}

        def arrive(a: Arrival) -> None:
            nbytes = self.costs[a.device].device.up_bytes
            sim.alloc(SERVER, "cache", nbytes, f"{a.device} tapped activations + labels")
            self.cached_bytes += nbytes
            streams[a.device].release()  # the batch is in the cache: the device has room again
            mailbox.put(a)

        runs, expected = [], 0
        for d in sim.world.devices:
            c, k_total = self.costs[d.id], sim.world.iterations(d)
            streams[d.id] = DeviceStream(sim, d.id, buffer, arrive)
            done = self.batches_done.get(d.id, 0)  # r × K when every device takes part
            self.batches_done[d.id] = done + k_total
            fresh = [k for k in range(k_total) if done + k < c.n_batches]
            for k in range(k_total):
                if k not in fresh:  # already cached in an earlier epoch: train from the cache
                    mailbox.put(Arrival(d.id, r, k, sim.now))
            runs.append(streams[d.id].run(r, fresh, c.device))
            expected += k_total
        server = sim.env.process(self.serve_round(sim, r, mailbox, expected))
        yield sim.all_of(runs)
        yield server
        if r == sim.world.rounds - 1:
            sim.free(SERVER, "cache", self.cached_bytes, "training done: cache dropped")

    def serve_round(self, sim: Sim, r: int, mailbox: Mailbox, expected: int) -> Proc:
        """Train the side network on cached batches in arrival order, one at a time."""
        for _ in range(expected):
            while not mailbox.waiting:
                yield mailbox.next_arrival()
            a = mailbox.waiting.pop(0)
            sim.wait_span(a.device, "queue_wait", "server_queue", a.arrival_s, round=r,
                          iteration=a.iteration)
            sim.log("update", round=r, device=a.device, iteration=a.iteration,
                    value=sim.now - a.arrival_s, detail="versions=0")
            yield from self._step(sim, r, a.device, a.iteration)
