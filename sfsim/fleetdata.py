"""Per-device data and persistent speed: sample counts, local work, FedAvg weights, stragglers.

Everything here is drawn from the scenario's ``data`` seed stream (`sfsim.world.Seeds.data`),
never from the four older streams, so a scenario that uses none of it draws what it always did.
Two independent children of that stream are used, each for one whole column of devices:

* ``SAMPLES_KEY``: a generated fleet's sample counts when ``fleet.samples`` is a distribution
  (``{dist: lognormal, median, sigma}`` or ``{dist: dirichlet, total, alpha}``); one draw per
  generated device, in device order;
* ``SLOWDOWN_KEY``: the persistent slowdown of ``variability.device: {model: lognormal}``; one
  draw per device of the scenario (explicit devices first, then the generated ones), each device
  keeping its own draw whether or not the others use theirs (a device with an explicit
  ``slowdown`` ignores its draw), so a population and its expanded fleet agree device by device.

Local work (``training.local_work``): ``iterations`` runs ``local_iterations`` per device and
round; ``epochs`` runs ``ceil(local_epochs × samples_u / batch_u)`` (`epoch_iterations`). The
ceiling is taken with a relative tolerance of 1e-12, so that float rounding of e·n/b (1.1 × 100 / 2
= 55.00000000000001) does not add an iteration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from sfsim.errors import InputError

if TYPE_CHECKING:
    from sfsim.scenario import DeviceSlowdownCfg, DirichletSamples, LognormalSamples, Scenario
    from sfsim.world import DeviceSpec, World

#: Spawn keys under the data seed (see the module docstring).
SAMPLES_KEY = 0
SLOWDOWN_KEY = 1
#: Bounds of a drawn sample count (those of ``samples`` in the scenario) and of a slowdown
#: (``devices[i].slowdown``): draws beyond them are clipped, so a resolved scenario reloads.
MAX_SAMPLES = 10**9
SLOWDOWN_MIN, SLOWDOWN_MAX = 1e-3, 1e3
EPOCH_REL_TOL = 1e-12


# ---- local work ---------------------------------------------------------------------------------


def _ceil(x: Any) -> Any:
    """ceil(x) for x > 0 with a relative tolerance (float rounding adds no unit), at least 1."""
    return np.maximum(1, np.ceil(np.asarray(x, dtype=float) * (1.0 - EPOCH_REL_TOL)))


def epochs_of(s: Scenario) -> float:
    """``training.local_epochs`` (1 when left out)."""
    e = s.training.local_epochs
    return 1.0 if e is None else float(e)


def epoch_iterations(epochs: float, samples: Any, batch: Any) -> Any:
    """Iterations that make ``epochs`` passes over ``samples`` in batches of ``batch``.

    Scalars give an int; arrays give an int64 array of the same shape.
    """
    out = _ceil(epochs * np.asarray(samples, dtype=float) / np.asarray(batch, dtype=float))
    return int(out) if np.ndim(out) == 0 else out.astype(np.int64)


def iterations(s: Scenario, dev: DeviceSpec) -> int:
    """Local iterations of ``dev`` per round under ``s.training.local_work``."""
    t = s.training
    if t.local_work == "iterations":
        return t.local_iterations
    return int(epoch_iterations(epochs_of(s), dev.samples, dev.batch))


def samples_per_round(s: Scenario, dev: DeviceSpec, k: int) -> int:
    """Samples ``dev`` trains on in a round of ``k`` iterations.

    ``iterations``: k × batch (samples seen, repeats counted: k·b > n means more than one pass).
    ``epochs``: the same, but the last batch of a pass is partial, so at most
    ceil(local_epochs × samples): 1001 samples in batches of 4 take 251 iterations and train
    1001 samples per epoch, not 1004 (the partial batch is *timed* as a full one).
    """
    visited = k * dev.batch
    if s.training.local_work == "epochs":
        return min(visited, int(_ceil(epochs_of(s) * dev.samples)))
    return visited


def epoch_work_problem(s: Scenario, samples: Any, batch: Any,
                       participants: int | None = None) -> str | None:
    """Why ``rounds`` × a round's iterations exceeds ``limits.max_device_iterations`` (None: it
    does not). ``samples``, ``batch``: every device's. With ``participants`` (a population) a
    round is bounded by the ``participants`` devices with the most iterations.
    """
    per_device = np.atleast_1d(epoch_iterations(epochs_of(s), samples, batch))
    if participants is not None and participants < len(per_device):
        per_device = np.partition(per_device, len(per_device) - participants)[-participants:]
        what = f"the {participants} busiest participants"
    else:
        what = f"{len(per_device)} devices"
    per_round = int(per_device.sum())
    work = s.training.rounds * per_round
    limit = s.limits.max_device_iterations
    if work <= limit:
        return None
    return (f"{s.training.rounds} rounds × {per_round} iterations per round ({what}, "
            f"local_epochs {epochs_of(s):g}) = {work} device iterations, above the "
            f"limit of {limit}; lower them, or raise limits.max_device_iterations if you mean it")


def check_epoch_work(s: Scenario, samples: Any, batch: Any,
                     participants: int | None = None) -> None:
    """InputError naming ``training.local_epochs`` when the drawn fleet's work is over the limit."""
    if s.training.local_work != "epochs":
        return
    problem = epoch_work_problem(s, samples, batch, participants)
    if problem:
        raise InputError(problem, key="training.local_epochs")


# ---- draws --------------------------------------------------------------------------------------


def draw_sample_counts(spec: LognormalSamples | DirichletSamples, n: int,
                       seed: np.random.SeedSequence) -> np.ndarray:
    """``n`` sample counts (int64, each in [1, MAX_SAMPLES]) from a fleet's distribution.

    lognormal: round(median · e^(σz)), z ~ N(0, 1). dirichlet: round(total · p_u) with
    p ~ Dirichlet(α, …, α); counts that round to 0 become 1, so the sum is ``total`` up to
    rounding plus the devices raised to 1.
    """
    rng = np.random.default_rng(seed)
    if spec.dist == "lognormal":
        raw = spec.median * np.exp(spec.sigma * rng.standard_normal(n))
    else:
        raw = spec.total * rng.dirichlet(np.full(n, spec.alpha))
    if not np.isfinite(raw).all():  # cannot happen within the schema's bounds
        raise InputError("the draw gave a non-finite count", key="fleet.samples")
    return np.clip(np.rint(raw), 1, MAX_SAMPLES).astype(np.int64)


def draw_slowdowns(cfg: DeviceSlowdownCfg, n: int, seed: np.random.SeedSequence
                   ) -> np.ndarray | None:
    """``n`` persistent slowdowns e^(σz) (median 1), clipped to the bounds of ``slowdown``;
    None for ``model: none``."""
    if cfg.model == "none":
        return None
    rng = np.random.default_rng(seed)
    return np.clip(np.exp(cfg.sigma * rng.standard_normal(n)), SLOWDOWN_MIN, SLOWDOWN_MAX)


# ---- the summary --------------------------------------------------------------------------------


def device_summary(world: World, d: DeviceSpec, rounds_trained: int) -> dict[str, Any]:
    """Data figures of one device for the summary.

    ``samples_trained`` = `samples_per_round` × the rounds in which the device's training
    counted (see `rounds_trained`).
    """
    k = world.iterations(d)
    per_round = samples_per_round(world.scenario, d, k)
    return {
        "samples": d.samples,
        "slowdown": d.slowdown,
        "iterations_per_round": k,
        "samples_per_round": per_round,
        "samples_trained": per_round * rounds_trained,
    }


def rounds_trained(events: Mapping[str, list[Any]] | None) -> dict[str, int] | None:
    """Rounds in which each device's update entered a FedAvg (``aggregate`` events).

    None when the run logged no aggregation and no dropout (a streaming scheme, or the closed
    form); a run whose every device dropped in every round trained nothing (all zeros).
    """
    if not events or not set(events.get("kind", [])) & {"aggregate", "drop"}:
        return None
    seen: dict[str, set[int]] = {}
    for kind, r, dev in zip(events["kind"], events["round"], events["device"], strict=True):
        if kind == "aggregate":
            seen.setdefault(dev, set()).add(int(r))
    return {dev: len(rs) for dev, rs in seen.items()}


def fedavg_weights(devices: Iterable[DeviceSpec]) -> dict[str, float]:
    """Each device's FedAvg weight, samples_u / Σ samples (nominal: every device aggregated)."""
    samples = {d.id: d.samples for d in devices}
    total = float(sum(samples.values()))
    return {dev: n / total for dev, n in samples.items()} if total > 0 else {}


def summary_of(
    world: World,
    counted: Mapping[str, int] | None,
    took_part: Mapping[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per-device data figures for the summary.

    ``samples_trained`` counts the rounds in ``counted`` (`rounds_trained`: those whose FedAvg
    took the device's update); without aggregations, the rounds it took part in (``took_part``,
    a population) or every round.
    """
    out = {}
    for d in world.devices:
        if counted is not None:
            n = counted.get(d.id, 0)
        elif took_part is not None:
            n = took_part.get(d.id, 0)
        else:
            n = world.rounds
        out[d.id] = device_summary(world, d, n)
    return out


def add_to_summary(summary: dict[str, Any], world: World,
                   events: Mapping[str, list[Any]] | None,
                   participants: list[list[str]] | None = None, *,
                   aggregates: bool = False) -> None:
    """Put the data figures into a run's summary (in place).

    Per device (``summary["devices"][id]``): ``samples``, ``slowdown``, ``iterations_per_round``,
    ``samples_per_round``, ``samples_trained``. Top level: ``fedavg_weights`` (samples_u / Σ
    samples over the summary's devices) when the run aggregates: it logged ``aggregate`` events,
    or ``aggregates`` says so (the closed form, which has no event log).
    """
    counted = rounds_trained(events)
    took_part: dict[str, int] | None = None
    if participants is not None:  # a population: the rounds each device was drawn for
        took_part = {}
        for ids in participants:
            for dev in ids:
                took_part[dev] = took_part.get(dev, 0) + 1
    per_device = summary_of(world, counted, took_part)
    for dev, figures in per_device.items():
        summary["devices"].setdefault(dev, {}).update(figures)
    if aggregates or counted is not None:
        summary["fedavg_weights"] = fedavg_weights(world.devices)


def has_persistent_factors(s: Scenario) -> bool:
    """Whether any compute of a run can have a persistent factor other than 1 (the engine skips
    the per-compute lookup otherwise)."""
    v = s.variability
    return (v.device.model != "none" or v.server_factor != 1.0
            or any(d.slowdown is not None for d in s.devices))
