"""Choosing each device's cut layer from its memory and its speed.

In a split scheme device u holds the embedding and blocks 1..c_u; the server runs c_u+1..L. A
larger cut moves work off the (shared, sequential) server onto the device, costs the device
memory, and lengthens its own part of every iteration. A cut policy picks c_u per device:

* ``fixed``: the scenario's cuts; a device without one is an input error.
* ``max_fit``: the largest cut whose peak memory fits the device (the most the device can take).
* ``balanced``: heterogeneity-aware. The slowest device's shortest possible device-side time
  (its smallest cut that fits) sets a budget T; every device gets the largest cut that fits its
  memory and keeps its device-side time per iteration within T. Fast devices take more blocks,
  slow ones fewer, their device times come out about equal, and no device becomes the straggler
  by taking blocks off the server.
* ``min_time``: the same family of balanced assignments, with the budget T chosen among the
  device times the devices can reach as the one with the smallest *estimated* round time, which
  the scheme supplies (``memsfl``/``sfl_*``: the makespan of Schrage's order on the estimated
  round; ``splitfrozen``: a pipeline bound). With a fast server this usually means small cuts.

Devices whose cut the scenario fixes keep it under every policy; the policies fill in the rest.
A device that cannot hold even one block is reported with what it needs and what it has.

The memory a device needs at cut c is a pure function of the workload, written here so that the
policies and the schemes' allocations can be checked against each other (see the tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sfsim.costs import footprint as fp
from sfsim.costs.base import Workload
from sfsim.errors import InfeasibleError, InputError
from sfsim.world import DeviceSpec, World

if TYPE_CHECKING:
    from sfsim.schedulers.base import Job

GB = 1e9
POLICIES = ("fixed", "max_fit", "balanced", "min_time", "joint")

PeakFn = Callable[[DeviceSpec, int], float]  # device peak bytes at cut c
TimeFn = Callable[[DeviceSpec, int], float]  # device-side seconds per iteration at cut c
EstimateFn = Callable[[dict[str, int]], float]  # estimated round seconds of a cut assignment
JobFn = Callable[[DeviceSpec, int], "Job"]  # a device's job in the round's instance at cut c


def split_device_peak_bytes(world: World, dev: DeviceSpec, cut: int) -> float:
    """Peak of a device that trains blocks 1..cut with LoRA (memsfl, sfl_v1, sfl_v2).

    During the device backward everything is live at once: embedding + blocks, LoRA adapters,
    their gradients and optimizer state, the saved activations of ``cut`` blocks, the boundary
    activations and the cut gradient, and the runtime overhead.
    """
    w = world.workload(dev.batch)
    st = fp.adapter_state(w, world.scenario.model.lora.optimizer)
    weights = fp.embedding_weight_bytes(w) + cut * fp.block_weight_bytes(w)
    lora = cut * (st.adapters + st.gradients + st.optimizer)
    acts = fp.stack_saved_activation_bytes(w, cut, input_grad=False) + 2 * fp.boundary_bytes(w)
    return weights + lora + acts + dev.overhead_bytes


def frozen_working_bytes(w: Workload) -> int:
    """Live tensors of one frozen block's forward without autograd (nothing is saved).

    Its input and output hidden states (2h per token) and its widest intermediate: the MLP's
    ``f`` (GPT-2) or SwiGLU's gate and up, ``2f`` (Llama). Attention is assumed fused (no
    ``s²`` score matrix kept). An assumption; ``sfsim profile`` can measure it.
    """
    a = w.arch
    widest = a.ffn if a.family == "gpt2" else 2 * a.ffn
    return w.tokens * (2 * a.hidden + widest) * w.dtype_bytes


def frozen_device_peak_bytes(world: World, dev: DeviceSpec, cut: int, buffer_batches: int) -> float:
    """Peak of a device that only runs frozen blocks 1..cut forward (splitfrozen).

    Embedding + blocks, one block's forward working set, and up to ``buffer_batches`` boundary
    outputs (with labels) waiting to be uploaded.
    """
    w = world.workload(dev.batch)
    weights = fp.embedding_weight_bytes(w) + cut * fp.block_weight_bytes(w)
    out = buffer_batches * (fp.boundary_bytes(w) + fp.label_bytes(w))
    return weights + frozen_working_bytes(w) + out + dev.overhead_bytes


@dataclass(frozen=True)
class CutChoice:
    """What a policy decided: every device's cut, which ones it chose, and its estimate."""

    policy: str
    cuts: dict[str, int]
    chosen: list[str]  # devices whose cut the policy chose (the others were fixed)
    estimated_round_s: float | None = None

    def notes(self) -> dict[str, Any]:
        """The summary's ``scheme_notes.cuts``: the fields, and a joint choice's findings."""
        out = asdict(self)
        out.update(out.pop("extra", {}))
        return out


@dataclass(frozen=True)
class JointCutChoice(CutChoice):
    """A ``joint`` choice: also how it was found (method, proof, order; see ``notes``)."""

    extra: dict[str, Any] = field(default_factory=dict)


def feasible_cuts(world: World, dev: DeviceSpec, peak: PeakFn) -> list[int]:
    """Cuts 1..L-1 whose peak memory fits the device (peaks grow with the cut)."""
    return [c for c in range(1, world.arch.n_layers) if peak(dev, c) <= dev.memory_bytes]


def _feasible_or_fail(world: World, dev: DeviceSpec, peak: PeakFn, scheme: str) -> list[int]:
    ok = feasible_cuts(world, dev, peak)
    if not ok:
        raise InfeasibleError(
            f"scheme {scheme!r}: device {dev.id!r} ({dev.processor.name}) cannot hold even one "
            f"block: cut 1 needs {peak(dev, 1) / GB:.2f} GB at peak, the device has "
            f"{dev.memory_bytes / GB:.2f} GB",
            key="devices",
        )
    return ok


def choose_cuts(
    world: World,
    policy: str,
    *,
    scheme: str,
    peak: PeakFn,
    device_s: TimeFn,
    estimate: EstimateFn,
    job: JobFn | None = None,
    rule: str | None = None,
) -> CutChoice:
    """Apply a cut policy to the world's devices (devices with a fixed cut keep it).

    ``job`` (needed by ``joint``) gives a device's job in the round's scheduling instance at a
    cut; ``rule`` names the scheduler when the scheme fixes its order (``joint`` then optimises
    the cuts for that rule's order instead of the best order).
    """
    fixed = {d.id: d.cut for d in world.devices if d.cut is not None}
    free = [d for d in world.devices if d.cut is None]
    if policy == "fixed":
        if free:
            raise InputError(
                f"scheme {scheme!r} needs a cut layer for device {free[0].id!r} (or set "
                f"training.cut_policy to max_fit or balanced)",
                key="devices[].cut / fleet.cut",
            )
        return CutChoice(policy, dict(fixed), [])
    if policy not in POLICIES:
        raise InputError(f"unknown cut policy {policy!r}; known: {', '.join(POLICIES)}",
                         key="training.cut_policy")
    if policy == "joint" and job is None:
        raise InputError(
            f"cut policy 'joint' needs a scheme whose server serves one device task at a time "
            f"(memsfl, sfl_v1, sfl_v2, splitlora); scheme {scheme!r} has no such round",
            key="training.cut_policy",
        )
    options = {d.id: _feasible_or_fail(world, d, peak, scheme) for d in free}
    chosen = [d.id for d in free]
    if policy == "max_fit":
        return CutChoice(policy, {**fixed, **{i: c[-1] for i, c in options.items()}}, chosen)
    times = {d.id: {c: device_s(d, c) for c in options[d.id]} for d in free}

    def within(budget_s: float) -> dict[str, int]:
        """Each free device's largest cut whose device time stays within the budget."""
        out = dict(fixed)
        for dev_id, per in times.items():
            ok = [c for c, t in per.items() if t <= budget_s]
            out[dev_id] = max(ok) if ok else min(per)
        return out

    def ordered(cuts: dict[str, int]) -> dict[str, int]:
        return {d.id: cuts[d.id] for d in world.devices}

    balanced = within(max((per[min(per)] for per in times.values()), default=0.0))
    if policy == "balanced":
        return CutChoice(policy, balanced, chosen, estimate(balanced))
    best: tuple[float, dict[str, int]] | None = None
    for budget in sorted({t for per in times.values() for t in per.values()}):
        cuts = within(budget)
        est = estimate(cuts)
        if best is None or est < best[0]:
            best = (est, cuts)
    if best is None:  # every device has a fixed cut
        best = (estimate(dict(fixed)), dict(fixed))
    if policy == "min_time":
        return CutChoice(policy, best[1], chosen, best[0])
    assert job is not None
    from sfsim.schedulers import joint  # here: the scheduler package loads PuLP

    by_id = {d.id: d for d in world.devices}
    jobs = {
        d.id: {c: job(d, c) for c in (options[d.id] if d.id in options else [fixed[d.id]])}
        for d in world.devices
    }
    max_fit = {**fixed, **{i: c[-1] for i, c in options.items()}}
    starts = [ordered(max_fit), ordered(balanced), ordered(best[1])]
    res = joint.joint_cuts(jobs, starts, rule=rule)
    for u, c in res.cuts.items():  # memory is the constraint: never hand out a cut that spills
        assert peak(by_id[u], c) <= by_id[u].memory_bytes or u in fixed, (u, c)
    extra = {"method": res.method, "proven_optimal": res.optimal,
             "lower_bound_s": res.lower_bound_s, "order": list(res.order),
             "evaluated_cut_vectors": res.evaluated, "order_rule": rule or "best order",
             "starts_estimated_round_s": {"max_fit": estimate(max_fit),
                                          "balanced": estimate(balanced),
                                          "min_time": best[0]}}
    return JointCutChoice(policy, ordered(res.cuts), chosen, res.makespan_s, extra)


def with_cuts(world: World, cuts: dict[str, int]) -> World:
    """A copy of the world whose devices carry the chosen cuts."""
    return world.with_devices([replace(d, cut=cuts[d.id]) for d in world.devices])
