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
  ``splitlora`` is the same system under its LLM name (SplitLoRA is SFL v2 with LoRA).

Cuts come from the scenario or from a cut policy (``training.cut_policy``, `sfsim.schemes.cuts`);
the chosen cuts replace the world's devices before anything is allocated. ``sfl_v1``
(`sfsim.schemes.sfl_v1`) reuses this device side and swaps the server for a shared processor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import simpy

from sfsim import compression, estimators, faults
from sfsim.costs import Op, Processor
from sfsim.costs import footprint as fp
from sfsim.engine import SERVER, Proc, Sim, Trace
from sfsim.estimators import Estimator
from sfsim.schedulers import Instance, Job, get_scheduler, makespan
from sfsim.schemes import cuts as cut_policy
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
    """Sum the cost model's per-op times over the blocks each side runs.

    Memoised per world by what they depend on (processor, batch, cut), so a large fleet or a
    population costs one evaluation per distinct device class, not per device.
    """
    key = ("split", dev.processor.name, dev.batch, cut)
    if key not in world.memo:
        world.memo[key] = _split_costs(world, dev, cut)
    costs: SplitCosts = world.memo[key]
    return costs


def _split_costs(world: World, dev: DeviceSpec, cut: int) -> SplitCosts:
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
    up: float = boundary
    comp = world.scenario.training.compression
    if compression.requested(comp):  # quantised uplink activations (sfsim/compression.py)
        c = compression.compress(comp, vectors=w.tokens, width=world.arch.hidden,
                                 dtype_bytes=w.dtype_bytes, seq_len=w.seq, device=dp, server=sp)
        up = c.nbytes
        dev_fwd = (dev_fwd[0] + c.device_s, dev_fwd[1] + c.device_flops)
        srv_fwd = (srv_fwd[0] + c.server_s, srv_fwd[1] + c.server_flops)
    return SplitCosts(
        dev_fwd_s=dev_fwd[0],
        dev_bwd_s=dev_bwd[0],
        srv_fwd_s=srv_fwd[0],
        srv_bwd_s=srv_bwd[0],
        dev_fwd_flops=dev_fwd[1],
        dev_bwd_flops=dev_bwd[1],
        srv_fwd_flops=srv_fwd[1],
        srv_bwd_flops=srv_bwd[1],
        up_bytes=up + fp.label_bytes(w),
        down_bytes=boundary,
        adapter_bytes=cut * fp.adapter_state(w).adapters,
    )


def round_instance(
    world: World, costs: dict[str, SplitCosts], estimator: Estimator | None = None,
    trace: Trace | None = None,
) -> Instance:
    """The round as a scheduler sees it: estimated release, server times, lags and tails.

    The estimates come from ``estimator`` (`sfsim.estimators`), by default the one the scenario's
    ``scheduler.estimator`` names; ``trace`` feeds estimators that learn from earlier rounds.
    """
    if estimator is None:
        estimator = estimators.from_config(world.scenario.scheduler)
    return estimator.instance(world, costs, trace)


def server_side_weight_bytes(world: World, n_blocks: int) -> float:
    """Frozen weights of a server-side model part: ``n_blocks`` blocks, final norm and head.

    The head's matrix lives on the server even when it is tied to the device's embedding.
    """
    w = world.workload(1)
    tied = world.arch.vocab * world.arch.hidden if world.arch.tied_embeddings else 0
    head = (world.arch.head_params() + tied) * w.dtype_bytes
    return n_blocks * fp.block_weight_bytes(w) + head


#: What a device's iteration hands the server: an event that fires when the server is done.
Submit = Callable[[DeviceSpec, int], simpy.Event]


class SplitScheme(Scheme):
    """Shared machinery of split schemes with a one-at-a-time server."""

    supports_faults = True

    def cut(self, dev: DeviceSpec) -> int:
        assert dev.cut is not None, "cuts are chosen in setup()"
        return dev.cut

    def choose_cuts(self, sim: Sim) -> None:
        """Apply the scenario's cut policy and put the chosen cuts into the world."""
        w0 = sim.world

        def estimate(cuts: dict[str, int]) -> float:
            costs = {d.id: split_costs(w0, d, cuts[d.id]) for d in w0.devices}
            inst = round_instance(w0, costs)
            return makespan(inst, get_scheduler("schrage").order(inst, np.random.default_rng(0)))

        def device_s(d: DeviceSpec, c: int) -> float:
            sc = split_costs(w0, d, c)
            return (sc.dev_fwd_s + sc.dev_bwd_s) * d.slowdown  # a persistent straggler's too

        by_cut: dict[int, dict[str, Job]] = {}

        def job(d: DeviceSpec, c: int) -> Job:
            """Device d's job at cut c (a device's job depends on its own cut only)."""
            if c not in by_cut:
                inst = round_instance(w0, {e.id: split_costs(w0, e, c) for e in w0.devices})
                by_cut[c] = {j.id: j for j in inst.jobs}
            return by_cut[c][d.id]

        choice = cut_policy.choose_cuts(
            w0, w0.scenario.training.cut_policy, scheme=self.name,
            peak=partial(cut_policy.split_device_peak_bytes, w0), device_s=device_s,
            estimate=estimate, job=job,
            rule=None if self.uses_scheduler else self.fixed_scheduler,
        )
        sim.world = cut_policy.with_cuts(w0, choice.cuts)
        if choice.chosen:
            sim.notes["cuts"] = choice.notes()

    # ---- memory laid out at t = 0 -------------------------------------------------------------
    def setup(self, sim: Sim) -> None:
        self.choose_cuts(sim)
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
    #: What the scheduler is told (`sfsim.estimators`); built from the scenario when unset.
    estimator: Estimator | None = None

    def estimate(self, sim: Sim) -> Instance:
        """The round as the scheduler sees it, under the scenario's ``scheduler.estimator``."""
        if self.estimator is None:
            self.estimator = estimators.from_config(sim.world.scenario.scheduler)
        return round_instance(sim.world, self.costs, self.estimator, sim.trace)

    def round(self, sim: Sim, r: int) -> Proc:
        if sim.faults is not None:  # dropouts, deadlines (sfsim.faults)
            yield from self.round_with_faults(sim, r)
            return
        submit, server = self.start_server(sim, r)
        yield sim.all_of([self.device_round(sim, r, d, submit) for d in sim.world.devices])
        if server is not None:
            yield server
        yield from self.aggregate(sim, r)

    # ---- faults (sfsim.faults, docs/faults.md) ------------------------------------------------
    #: the round's queue (None: no queue, e.g. sfl_v1) and its estimated jobs
    queue: ServerQueue | None = None
    _jobs: dict[str, Job]

    def round_with_faults(self, sim: Sim, r: int) -> Proc:
        """A round in which devices may drop: the server plans only for the devices present at
        the start, withdraws a dropped device's tasks, and FedAvg takes those that finished."""
        run = faults.RoundRun(sim, r, sim.world.devices)
        self._at_server: dict[str, simpy.Event] = {}
        self._grad_on_server: set[str] = set()
        submit, server = self.start_server(sim, r, {d.id for d in run.present})
        finished = yield from run.run(partial(self.device_round, sim, r, submit=submit),
                                      self.expected_span_s, partial(self.dropped, sim))
        if server is not None:
            yield server
        yield from self.aggregate(sim, r, finished)

    def expected_span_s(self, d: DeviceSpec) -> float:
        """Device d's round alone (its release, server tasks, lags and tail, no queueing)."""
        j = self._jobs[d.id]
        return j.release_s + sum(j.server_s) + sum(j.lag_s) + j.tail_s

    def dropped(self, sim: Sim, d: DeviceSpec, reason: str) -> None:
        """Free what the server holds for a dropped device and withdraw its tasks."""
        c = self.costs[d.id]
        waiting = self._at_server.pop(d.id, None)
        withdrawn = self.queue.withdraw(d.id) if self.queue is not None else False
        if waiting is not None:
            if withdrawn:  # its activations never reach the server's model
                sim.free(SERVER, "boundary", c.up_bytes, f"{d.id} activations withdrawn")
            else:  # in service: the pass finishes, its cut gradient is dropped then
                def drop_gradient(_: object) -> None:
                    sim.free(SERVER, "boundary", c.down_bytes, f"{d.id} cut gradient dropped")
                assert waiting.callbacks is not None
                waiting.callbacks.append(drop_gradient)
        elif d.id in self._grad_on_server:
            self._grad_on_server.discard(d.id)
            sim.free(SERVER, "boundary", c.down_bytes, f"{d.id} cut gradient dropped")

    def start_server(self, sim: Sim, r: int, present: set[str] | None = None
                     ) -> tuple[Submit, simpy.Process | None]:
        """The round's server: a queue served one task at a time in the scheduler's order.

        ``present``: the devices taking part (faults: the others dropped before the round).
        """
        instance = self.estimate(sim)
        self._jobs = {j.id: j for j in instance.jobs}
        if present is not None:
            instance = Instance(tuple(j for j in instance.jobs if j.id in present))
        queue = ServerQueue.for_round(sim, r, self.scheduler, sim.scheduler_rng, instance)
        self.queue = queue
        jobs = {j.id: j for j in instance.jobs}
        serve = partial(self.serve, sim, r)

        def submit(d: DeviceSpec, k: int) -> simpy.Event:
            job = jobs[d.id]
            task = ServerTask(d.id, k, job.server_s[k], job.remaining_s(k), serve,
                              sim.env.event())
            return queue.submit(task)

        return submit, sim.env.process(queue.run())

    def device_round(self, sim: Sim, r: int, d: DeviceSpec, submit: Submit) -> Proc:
        c = self.costs[d.id]
        w = sim.world.workload(d.batch)
        cut = self.cut(d)
        st = fp.adapter_state(w)
        acts = fp.stack_saved_activation_bytes(w, cut, input_grad=False)
        k_total = sim.world.iterations(d)
        faulty = sim.faults is not None
        for k in range(k_total):
            sim.alloc(d.id, "activations", acts, "saved activations")
            yield from sim.compute(d.id, "device_fwd", c.dev_fwd_s, round=r, iteration=k,
                                   flops=c.dev_fwd_flops)
            sim.alloc(d.id, "boundary", c.down_bytes, "cut activations")
            yield from sim.send(d.id, "uplink", "uplink_activations", c.up_bytes,
                                round=r, iteration=k)
            sim.alloc(SERVER, "boundary", c.up_bytes, f"{d.id} activations")
            if faulty:  # what the server holds for d, should d drop (sfsim.faults)
                self._at_server[d.id] = done = submit(d, k)
                yield done
                del self._at_server[d.id]
                self._grad_on_server.add(d.id)
            else:
                yield submit(d, k)
            yield from sim.send(d.id, "downlink", "downlink_gradients", c.down_bytes,
                                round=r, iteration=k)
            sim.free(SERVER, "boundary", c.down_bytes, f"{d.id} cut gradient sent")
            if faulty:
                self._grad_on_server.discard(d.id)
            sim.alloc(d.id, "boundary", c.down_bytes, "cut gradient")
            sim.alloc(d.id, "gradients", cut * st.gradients, "device LoRA grads")
            yield from sim.compute(d.id, "device_bwd", c.dev_bwd_s, round=r, iteration=k,
                                   flops=c.dev_bwd_flops)
            sim.free(d.id, "gradients", cut * st.gradients, "device LoRA grads")
            sim.free(d.id, "activations", acts, "saved activations")
            sim.free(d.id, "boundary", 2 * c.down_bytes, "cut activations and gradient")
        yield from sim.send(d.id, "uplink", "adapter_upload", c.adapter_bytes, round=r)
        sim.alloc(SERVER, "adapters", c.adapter_bytes, f"{d.id} uploaded adapters")

    def serve(self, sim: Sim, r: int, task: ServerTask) -> Proc:
        """Server forward + backward for one device's iteration (a queued task)."""
        yield from self.serve_iteration(sim, r, sim.world.device(task.device), task.iteration)

    def serve_iteration(self, sim: Sim, r: int, d: DeviceSpec, k: int) -> Proc:
        """Server forward + backward for device d's iteration k, with its memory."""
        c = self.costs[d.id]
        w = sim.world.workload(d.batch)
        n_srv = sim.world.arch.n_layers - self.cut(d)
        acts = n_srv * fp.block_saved_activation_bytes(w) + fp.head_saved_activation_bytes(w)
        grads = n_srv * fp.adapter_state(w).gradients
        sim.alloc(SERVER, "activations", acts, f"{d.id} saved activations")
        yield from self.server_compute(sim, r, k, d, "server_fwd", c.srv_fwd_s, c.srv_fwd_flops)
        sim.alloc(SERVER, "gradients", grads, f"{d.id} server LoRA grads")
        yield from self.server_compute(sim, r, k, d, "server_bwd", c.srv_bwd_s, c.srv_bwd_flops)
        sim.free(SERVER, "gradients", grads, f"{d.id} server LoRA grads")
        sim.free(SERVER, "activations", acts, f"{d.id} saved activations")
        sim.free(SERVER, "boundary", c.up_bytes, f"{d.id} activations")
        sim.alloc(SERVER, "boundary", c.down_bytes, f"{d.id} cut gradient")

    def server_compute(self, sim: Sim, r: int, k: int, d: DeviceSpec, phase: str,
                       seconds: float, flops: float) -> Proc:
        """Hold the server for one phase (one device at a time; sfl_v1 shares it instead)."""
        yield from sim.compute(SERVER, phase, seconds, round=r, iteration=k, flops=flops,
                               resource="server", device=d.id)

    def server_adapter_bytes_to_average(self, sim: Sim) -> float:
        """Server-side adapter bytes FedAvg'd each round besides the uploaded ones (sfl_v1)."""
        return 0.0

    def aggregate(self, sim: Sim, r: int, devices: list[DeviceSpec] | None = None) -> Proc:
        """FedAvg of the uploaded device adapters, then each device gets its part back.

        ``devices``: those whose update enters (faults: the ones that finished); default all.
        """
        devices = sim.world.devices if devices is None else devices
        total = sum(self.costs[d.id].adapter_bytes for d in devices)
        averaged = total + self.server_adapter_bytes_to_average(sim)
        flops = 2.0 * averaged / fp.FP32  # a multiply-add per parameter per device
        seconds = flops / sim.world.server.processor.flops_per_s("fp32")
        yield from sim.compute(
            SERVER, "aggregate", seconds, round=r, flops=flops, resource="server", vary=False
        )
        for d in devices:
            sim.log("aggregate", round=r, device=d.id, value=d.samples)
        if sim.world.scenario.channel.broadcast_downlink:  # devices with equal parts: one send
            yield from broadcast_adapters(sim, r, devices, self.costs)
        else:
            yield sim.all_of(
                [
                    sim.send(
                        d.id, "downlink", "adapter_download", self.costs[d.id].adapter_bytes,
                        round=r,
                    )
                    for d in devices
                ]
            )
        sim.free(SERVER, "adapters", total, "uploaded adapters averaged and sent")


def broadcast_adapters(sim: Sim, r: int, devices: list[DeviceSpec], costs: dict) -> Proc:
    """Send the averaged adapters as one broadcast per group of devices with the same bytes.

    After FedAvg, devices whose adapter parts have the same size (the same cut) hold the same
    averaged part: one transmission reaches them all (docs/channel.md). The groups go out
    concurrently, as the unicasts would.
    """
    groups: dict[float, list[str]] = {}
    for d in devices:
        groups.setdefault(costs[d.id].adapter_bytes, []).append(d.id)
    yield sim.all_of(
        [sim.broadcast(ids, "adapter_download", nbytes, round=r) for nbytes, ids in groups.items()]
    )


def alloc_server_lora(sim: Sim, n_blocks: int, what: str) -> None:
    """Allocate LoRA adapters and optimizer state for ``n_blocks`` blocks on the server."""
    w = sim.world.workload(1)
    st = fp.adapter_state(w, sim.world.scenario.model.lora.optimizer)
    sim.alloc(SERVER, "adapters", n_blocks * st.adapters, f"{what} LoRA")
    sim.alloc(SERVER, "optimizer", n_blocks * st.optimizer, f"{what} optimizer")


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
        n = sum(w0.arch.n_layers - self.cut(d) for d in w0.devices)
        alloc_server_lora(sim, n, "per-device server-side")


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
        n = w0.arch.n_layers - min(self.cut(d) for d in w0.devices)
        sim.alloc(SERVER, "weights", server_side_weight_bytes(w0, n),
                  "shared server-side blocks + head")
        alloc_server_lora(sim, n, "shared server-side")


@register_scheme
class SplitLoRA(SFLv2):
    name = "splitlora"
    description = (
        "SplitLoRA: the same system as sfl_v2 (SplitFed v2 with LoRA adapters), registered under "
        "its LLM name"
    )
