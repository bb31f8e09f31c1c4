"""SplitFrozen (paper 002): frozen forward-only devices, LoRA on the server only, pipelined.

Device u holds the embedding and blocks 1..c_u, *frozen*: it runs them forward only
(``Op.BLOCK_FWD_FROZEN``: no autograd, nothing saved), has no adapters, no optimizer and no
backward, and receives nothing: there is no gradient downlink and no adapter exchange. Its outputs
(hidden state at the cut + labels) stream up through a bounded buffer (`sfsim.schemes.stream`),
so device forward, uplink and server work overlap: the server trains on batch t while devices
compute t+1.

The server holds the frozen blocks c_min+1..L and the head, and ONE LoRA set (with its optimizer
state) on those blocks. For each arriving batch it runs the forward of blocks c_u+1..L and the
loss, then the backward (LoRA gradients only; the lowest server block needs no input gradient
since nothing goes down) and an optimizer step.

Decomposed backward (our model of the paper's, whose text was not available): a batch's backward
is split into stages of ``training.pipeline.backward_chunk_blocks`` blocks (the head belongs to
the first). Between two stages the server may run the forward of a newly arrived batch, up to
``max_inflight`` batches forwarded but not yet fully backwarded (1F1B-style: forwards first when
there is room, otherwise the oldest batch's next stage). A new arrival waits at most one stage,
not a whole backward, before the server consumes it and returns the device's credit, so devices
stall less on a full buffer. Total server work is unchanged; the price is memory (the saved
activations of up to ``max_inflight`` batches) and one-step weight staleness (a forward may use
adapters that a pending backward has not updated yet, as in PipeDream). Each stage frees the saved
activations of its blocks as it completes.

The pipeline runs across rounds without draining (docs/async.md) unless
``training.pipeline.barrier``: there is no aggregation, so a round is bookkeeping (round r ends at
the server's (r + 1) × Σ K_d-th update). Uplinked activations may be quantised
(`sfsim.compression`).

Cuts come from the scenario or the cut policy; ``balanced`` equalises device forward times
(`sfsim.schemes.cuts`) against a pipeline estimate of the round time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial

from sfsim import compression
from sfsim.costs import Op, Processor
from sfsim.costs import footprint as fp
from sfsim.engine import SERVER, Proc, Sim
from sfsim.schemes import cuts as cut_policy
from sfsim.schemes.base import Scheme, register_scheme
from sfsim.schemes.split import server_side_weight_bytes
from sfsim.schemes.stream import Arrival, DeviceStream, Mailbox, StreamCosts
from sfsim.world import DeviceSpec, World


@dataclass(frozen=True)
class Stage:
    """One piece of a batch's server backward: time, FLOPs, activations it frees."""

    seconds: float
    flops: float
    frees_bytes: float


@dataclass(frozen=True)
class FrozenCosts:
    device: StreamCosts
    srv_fwd_s: float
    srv_fwd_flops: float
    saved_bytes: float  # server activations kept for the backward
    grad_bytes: float  # LoRA gradients of the server blocks this device's batches reach
    stages: tuple[Stage, ...]

    @property
    def srv_s(self) -> float:
        return self.srv_fwd_s + sum(s.seconds for s in self.stages)


def frozen_costs(world: World, dev: DeviceSpec, cut: int, chunk_blocks: int) -> FrozenCosts:
    """Per-batch costs of device ``dev`` at ``cut`` under splitfrozen (memoised per world by
    processor, batch, cut and chunk)."""
    key = ("frozen", dev.processor.name, dev.batch, cut, chunk_blocks)
    if key not in world.memo:
        world.memo[key] = _frozen_costs(world, dev, cut, chunk_blocks)
    costs: FrozenCosts = world.memo[key]
    return costs


def _frozen_costs(world: World, dev: DeviceSpec, cut: int, chunk_blocks: int) -> FrozenCosts:
    w = world.workload(dev.batch)
    cm, dp, sp = world.costs, dev.processor, world.server.processor
    n = world.arch.n_layers - cut

    def cost(op: Op, proc: Processor) -> tuple[float, float]:
        return cm.time_s(op, w, proc), cm.flops(op, w)

    emb, blk = cost(Op.EMBED_FWD, dp), cost(Op.BLOCK_FWD_FROZEN, dp)
    up: float = fp.boundary_bytes(w)
    q_dev, q_srv = (0.0, 0.0), (0.0, 0.0)
    comp = world.scenario.training.compression
    if compression.requested(comp):  # quantised uplink activations (sfsim/compression.py)
        c = compression.compress(comp, vectors=w.tokens, width=world.arch.hidden,
                                 dtype_bytes=w.dtype_bytes, seq_len=w.seq, device=dp, server=sp)
        up, q_dev, q_srv = c.nbytes, (c.device_s, c.device_flops), (c.server_s, c.server_flops)
    device = StreamCosts(
        fwd_s=emb[0] + cut * blk[0] + q_dev[0], fwd_flops=emb[1] + cut * blk[1] + q_dev[1],
        working_bytes=cut_policy.frozen_working_bytes(w),
        up_bytes=up + fp.label_bytes(w),
    )
    fwd, head_f = cost(Op.BLOCK_FWD, sp), cost(Op.HEAD_FWD, sp)
    saved_top = fp.block_saved_activation_bytes(w)
    saved_low = fp.block_saved_activation_bytes(w, input_grad=False)
    # Backward order: head, blocks L..c+2 (with input gradient), block c+1 (without).
    steps = [(cost(Op.HEAD_BWD, sp), fp.head_saved_activation_bytes(w))]
    steps += [(cost(Op.BLOCK_BWD, sp), saved_top)] * (n - 1)
    steps += [(cost(Op.BLOCK_BWD_NO_INPUT_GRAD, sp), saved_low)]
    opt = cost(Op.OPT_STEP, sp)
    # Stages of chunk_blocks blocks: the head goes with the first, the optimizer step with the last
    groups = [steps[: 1 + chunk_blocks]]
    groups += [steps[j:j + chunk_blocks] for j in range(1 + chunk_blocks, len(steps), chunk_blocks)]
    stages = []
    for g_i, group in enumerate(groups):
        last = g_i == len(groups) - 1
        secs = sum(t for (t, _), _ in group) + (n * opt[0] if last else 0.0)
        flops = sum(f for (_, f), _ in group) + (n * opt[1] if last else 0.0)
        stages.append(Stage(secs, flops, sum(b for _, b in group)))
    return FrozenCosts(
        device=device,
        srv_fwd_s=n * fwd[0] + head_f[0] + q_srv[0],
        srv_fwd_flops=n * fwd[1] + head_f[1] + q_srv[1],
        saved_bytes=sum(s.frees_bytes for s in stages),
        grad_bytes=n * fp.adapter_state(w).gradients,
        stages=tuple(stages),
    )


def pipeline_estimate_s(world: World, costs: dict[str, FrozenCosts]) -> float:
    """A round-time estimate: the slower of the device pipelines and the server's total work."""
    device_bound, first, server_work = 0.0, float("inf"), 0.0
    for d in world.devices:
        c, k = costs[d.id], world.iterations(d)
        up_s = d.uplink.latency_s + 8 * c.device.up_bytes / d.uplink.expected_rate_bps()
        step = max(c.device.fwd_s, up_s)
        device_bound = max(device_bound, c.device.fwd_s + up_s + (k - 1) * step + c.srv_s)
        first = min(first, c.device.fwd_s + up_s)
        server_work += k * c.srv_s
    return max(device_bound, first + server_work)


@dataclass
class _Pending:
    """A batch forwarded on the server, its backward stages still to run."""

    arrival: Arrival
    stages: list[Stage] = field(default_factory=list)
    started: bool = False
    fwd_s: float = 0.0  # when its server forward read the weights
    version: int = 0  # updates applied before that forward


@register_scheme
class SplitFrozen(Scheme):
    name = "splitfrozen"
    description = (
        "SplitFrozen (paper 002): frozen forward-only device blocks, one LoRA set on the server, "
        "devices stream activations up (nothing comes down), pipelined decomposed backward"
    )
    uses_scheduler = False
    fixed_scheduler = "fifo"

    def setup(self, sim: Sim) -> None:
        w0 = sim.world
        pipe = w0.scenario.training.pipeline
        self.pipe = pipe

        def device_s(d: DeviceSpec, c: int) -> float:
            return frozen_costs(w0, d, c, pipe.backward_chunk_blocks).device.fwd_s * d.slowdown

        def estimate(cuts: dict[str, int]) -> float:
            return pipeline_estimate_s(w0, {
                d.id: frozen_costs(w0, d, cuts[d.id], pipe.backward_chunk_blocks)
                for d in w0.devices})

        choice = cut_policy.choose_cuts(
            w0, w0.scenario.training.cut_policy, scheme=self.name,
            peak=lambda d, c: cut_policy.frozen_device_peak_bytes(w0, d, c, pipe.buffer_batches),
            device_s=device_s, estimate=estimate,
        )
        sim.world = w0 = cut_policy.with_cuts(w0, choice.cuts)
        if choice.chosen:
            sim.notes["cuts"] = asdict(choice)
        self.costs = {d.id: frozen_costs(w0, d, choice.cuts[d.id], pipe.backward_chunk_blocks)
                      for d in w0.devices}
        for d in w0.devices:
            w = w0.workload(d.batch)
            sim.alloc(d.id, "weights",
                      fp.embedding_weight_bytes(w) + choice.cuts[d.id] * fp.block_weight_bytes(w),
                      "embedding + frozen device blocks")
            sim.alloc(d.id, "overhead", d.overhead_bytes, "runtime")
        n = w0.arch.n_layers - min(choice.cuts.values())
        st = fp.adapter_state(w0.workload(1), w0.scenario.model.lora.optimizer)
        sim.alloc(SERVER, "overhead", w0.server.overhead_bytes, "runtime")
        sim.alloc(SERVER, "weights", server_side_weight_bytes(w0, n),
                  "shared server-side blocks + head")
        sim.alloc(SERVER, "adapters", n * st.adapters, "the one server-side LoRA set")
        sim.alloc(SERVER, "optimizer", n * st.optimizer, "its optimizer state")

    def continuous(self, sim: Sim) -> bool:
        """Pipelined across rounds unless ``training.pipeline.barrier`` (or a population, whose
        rounds set up and release their participants in turn): docs/async.md."""
        w = sim.world
        return w.population is None and not w.scenario.training.pipeline.barrier

    def run_all(self, sim: Sim, bounds: list[tuple[float, float]],
                on_round: Callable[[int, int], None] | None = None) -> Proc:
        """Every round's batches through one pipeline: devices stream round r+1's batches while
        the server still trains on round r's. Bookkeeping round r ends when the server has
        applied ``(r + 1) × Σ K_d`` updates (docs/async.md)."""
        world = sim.world
        k_of = {d.id: world.iterations(d) for d in world.devices}
        per_round = sum(k_of.values())
        mailbox = Mailbox(sim)
        streams = {d.id: DeviceStream(sim, d.id, self.pipe.buffer_batches,
                                      partial(self._arrive, sim, mailbox))
                   for d in world.devices}
        for d in world.devices:
            rounds = [r for r in range(world.rounds) for _ in range(k_of[d.id])]
            its = [k for _ in range(world.rounds) for k in range(k_of[d.id])]
            sim.env.process(streams[d.id].run(0, its, self.costs[d.id].device, rounds=rounds))
        start = sim.now

        def round_done(finished: int) -> None:
            nonlocal start
            if finished % per_round == 0:
                bounds.append((start, sim.now))
                start = sim.now
                if on_round is not None:
                    on_round(finished // per_round, world.rounds)

        yield from self.serve(sim, mailbox, streams, world.rounds * per_round, 0, per_round,
                              round_done)

    def round(self, sim: Sim, r: int) -> Proc:
        """One round with a barrier: the pipeline drains before the next round starts."""
        mailbox = Mailbox(sim)
        k_of = {d.id: list(range(sim.world.iterations(d))) for d in sim.world.devices}
        streams = {d.id: DeviceStream(sim, d.id, self.pipe.buffer_batches,
                                      partial(self._arrive, sim, mailbox))
                   for d in sim.world.devices}
        expected = sum(map(len, k_of.values()))
        server = sim.env.process(self.serve(sim, mailbox, streams, expected, r, expected))
        yield sim.all_of([streams[d.id].run(r, k_of[d.id], self.costs[d.id].device)
                          for d in sim.world.devices])
        yield server

    def _arrive(self, sim: Sim, mailbox: Mailbox, a: Arrival) -> None:
        sim.alloc(SERVER, "boundary", self.costs[a.device].device.up_bytes,
                  f"{a.device} activations")
        mailbox.put(a)

    def serve(self, sim: Sim, mailbox: Mailbox, streams: dict[str, DeviceStream],
              expected: int, first_round: int, per_round: int,
              on_update: Callable[[int], None] | None = None) -> Proc:
        """Forwards first while there is room in flight, else the oldest batch's next stage.

        Each batch's last stage applies its LoRA update; an ``update`` event records it with
        value = seconds since the batch's server forward read the weights, and
        ``detail = "versions=N"``: the updates applied in between (the 1F1B weight staleness);
        its round is the bookkeeping round, ``first_round + (updates before it) // per_round``.
        """
        inflight: list[_Pending] = []
        finished = 0
        while finished < expected:
            if mailbox.waiting and len(inflight) < self.pipe.max_inflight:
                a = mailbox.waiting.pop(0)
                fwd_s = sim.now  # the forward reads the weights as they are now
                yield from self._forward(sim, a)
                streams[a.device].release()
                inflight.append(_Pending(a, list(self.costs[a.device].stages), fwd_s=fwd_s,
                                         version=finished))
            elif inflight:
                p = inflight[0]
                yield from self._backward_stage(sim, p)
                if not p.stages:
                    inflight.pop(0)
                    sim.log("update", round=first_round + finished // per_round,
                            device=p.arrival.device,
                            iteration=p.arrival.iteration, value=sim.now - p.fwd_s,
                            detail=f"versions={finished - p.version}")
                    finished += 1
                    if on_update is not None:
                        on_update(finished)
            else:
                yield mailbox.next_arrival()

    def _forward(self, sim: Sim, a: Arrival) -> Proc:
        c, r = self.costs[a.device], a.round
        sim.wait_span(a.device, "queue_wait", "server_queue", a.arrival_s, round=r,
                      iteration=a.iteration)
        sim.alloc(SERVER, "activations", c.saved_bytes, f"{a.device} saved activations")
        yield from sim.compute(SERVER, "server_fwd", c.srv_fwd_s, round=r, iteration=a.iteration,
                               flops=c.srv_fwd_flops, resource="server", device=a.device)
        # The input hidden state is now part of the first server block's saved activations.
        sim.free(SERVER, "boundary", c.device.up_bytes, f"{a.device} activations consumed")

    def _backward_stage(self, sim: Sim, p: _Pending) -> Proc:
        a, c, r = p.arrival, self.costs[p.arrival.device], p.arrival.round
        if not p.started:
            p.started = True
            sim.alloc(SERVER, "gradients", c.grad_bytes, f"{a.device} LoRA grads")
        stage = p.stages.pop(0)
        yield from sim.compute(SERVER, "server_bwd", stage.seconds, round=r, iteration=a.iteration,
                               flops=stage.flops, resource="server", device=a.device)
        sim.free(SERVER, "activations", stage.frees_bytes, f"{a.device} stage done")
        if not p.stages:
            sim.free(SERVER, "gradients", c.grad_bytes, f"{a.device} LoRA step taken")
