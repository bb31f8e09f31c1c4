"""What a scheduler is told about a round: estimates of each task, and what was realised.

A split round's scheduling instance (`sfsim.schedulers.Instance`) is assembled from seven
per-device phase durations (the trace's phase names)::

    release  = device_fwd[0] + uplink_activations[0]
    server_k = server_fwd[k] + server_bwd[k]
    lag_k    = downlink_gradients[k] + device_bwd[k] + device_fwd[k+1] + uplink_activations[k+1]
    tail     = downlink_gradients[K-1] + device_bwd[K-1] + adapter_upload

An *estimator* (``scheduler.estimator``) says what each duration is believed to be before the
round; the event engine then realises the true durations (fading, compute slowdowns):

* ``mean`` (default): the expected duration. Transfers: the mean under the link's fading law
  (`sfsim.links.expected_transfer_s`: a renewal expectation over Rayleigh blocks and a uniform
  start phase, exact up to quadrature). Compute: nominal time × E[slowdown], ``exp(σ²/2)`` for the
  log-normal slowdown of median 1. Fixed links and no variability: identical to ``mean_snr``.
* ``mean_snr``: sfsim ≤ 0.1's planning estimate, kept for comparison: the rate at the *mean*
  SNR and the nominal (median) compute time. Optimistic under fading (E[1/rate] > 1/rate(E[SNR]))
  and under variability (mean slowdown > median).
* ``quantile`` (``quantile_p``): each phase's p-quantile (the renewal law of a transfer by a
  fixed-seed Monte Carlo, `sfsim.links.transfer_quantile_s`; compute ``exp(σ·z_p)``). Sums of
  quantiles are not quantiles of sums: a conservative, simple estimate.
* ``last`` (``ewma_alpha``): per device and phase, an exponentially weighted average of the
  durations observed in earlier rounds (``ewma_alpha: 1`` = the last one observed); a phase with
  no observation yet (the first round, a new participant) falls back to ``mean``.
* ``oracle``: the realised durations of a *pilot run* — the same scenario and seed with the
  ``mean`` estimator — per round, device, iteration and phase. Realised durations under block
  fading depend on when a transfer starts, and compute slowdowns are drawn in event order, so a
  different order realises different durations: the oracle plan is exactly clairvoyant only
  where durations do not depend on the order (fixed links, no variability), where its planned
  makespan equals its realised one. It exists to measure regret, not to be deployed.

Ex post, every round's *realised instance* is rebuilt from the trace with the same formulas
(`realised_instance`), and `sfsim.run` reports the best order on it (the ex-post optimum) and the
regret of the plan that ran.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sfsim.links import expected_transfer_s, transfer_quantile_s

if TYPE_CHECKING:
    import pandas as pd

    from sfsim.engine import Trace
    from sfsim.schedulers import Instance
    from sfsim.world import DeviceSpec, World

ESTIMATORS = ("mean", "mean_snr", "quantile", "last", "oracle")
MILP_MAX_TASKS = 60  # ex post, milp only for chains of at most this many tasks (model build + CBC
# start-up alone take seconds on 120 tasks, whatever the time limit)

#: The phases a split round's instance is made of, in the order of one iteration.
PHASES = (
    "device_fwd",
    "uplink_activations",
    "server_fwd",
    "server_bwd",
    "downlink_gradients",
    "device_bwd",
)
ADAPTER = "adapter_upload"
_ALL = (*PHASES, ADAPTER)

#: Duration of one phase: (device, iteration, phase) -> seconds (iteration -1 for the upload).
Durations = Mapping[tuple[str, int, str], float]


class SplitBytes(Protocol):
    """What `Estimator.prior` needs of a device's costs (`sfsim.schemes.split.SplitCosts`)."""

    dev_fwd_s: float
    dev_bwd_s: float
    srv_fwd_s: float
    srv_bwd_s: float
    up_bytes: float
    down_bytes: float
    adapter_bytes: float


def instance_from(
    devices: list[str], k: int | Mapping[str, int], duration: Callable[[str, int, str], float]
) -> Instance:
    """The round's instance from per-phase durations ``duration(device, iteration, phase)``.

    ``k``: local iterations, the same for every device or per device (jobs of different
    lengths, e.g. ``training.local_work: epochs``).
    """
    from sfsim.schedulers import Instance, Job

    jobs = []
    for dev in devices:
        n = k if isinstance(k, int) else k[dev]

        def t(it: int, phase: str, dev: str = dev) -> float:
            return float(duration(dev, it, phase))

        server = [t(i, "server_fwd") + t(i, "server_bwd") for i in range(n)]
        lag = [
            t(i, "downlink_gradients") + t(i, "device_bwd") + t(i + 1, "device_fwd")
            + t(i + 1, "uplink_activations")
            for i in range(n - 1)
        ]
        jobs.append(
            Job(
                id=dev,
                release_s=t(0, "device_fwd") + t(0, "uplink_activations"),
                server_s=tuple(server),
                lag_s=tuple(lag),
                tail_s=t(n - 1, "downlink_gradients") + t(n - 1, "device_bwd")
                + t(-1, ADAPTER),
            )
        )
    return Instance(tuple(jobs))


@dataclass
class Estimator:
    """Per-phase duration estimates for a split scheme (see the module docstring)."""

    name: str = "mean"
    quantile_p: float = 0.9
    ewma_alpha: float = 1.0
    #: oracle: realised durations of the pilot run, per round
    pilot: dict[int, dict[tuple[str, int, str], float]] = field(default_factory=dict)
    _seen: int = 0  # trace spans already read
    _round: int = 0  # the round being planned (one more than the last one in the trace)
    _ewma: dict[tuple[str, str], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {self.name!r}; valid: {', '.join(ESTIMATORS)}")

    # ---- prior estimates (no observation needed) ------------------------------------------
    def _compute_factor(self, world: World, kind: str) -> float:
        v = world.variability
        if kind == "mean_snr" or v.compute == "none" or v.sigma == 0:
            return 1.0
        if kind == "quantile":
            from statistics import NormalDist

            return math.exp(v.sigma * NormalDist().inv_cdf(self.quantile_p))
        return math.exp(0.5 * v.sigma**2)

    def _transfer(self, link: Any, nbytes: float, kind: str) -> float:
        if nbytes <= 0:
            return 0.0
        if kind == "mean_snr":
            return float(link.latency_s) + 8.0 * nbytes / float(link.expected_rate_bps())
        if kind == "quantile":  # both cached in sfsim.links by (mean SNR, size)
            return transfer_quantile_s(link, nbytes, self.quantile_p)
        return expected_transfer_s(link, nbytes)

    def prior(self, world: World, d: DeviceSpec, c: SplitBytes) -> dict[str, float]:
        """Each phase's estimate for device d before anything is observed.

        Every estimator sees the persistent slowdowns (the device's ``slowdown``, the server's
        ``server_factor``): they are fixed for the run, as known as the processor's speed.
        """
        kind = self.name if self.name in ("mean_snr", "quantile") else "mean"
        f = self._compute_factor(world, kind)
        fd, fs = f * d.slowdown, f * world.server.slowdown  # × 1.0: bit-equal without them
        return {
            "device_fwd": c.dev_fwd_s * fd,
            "uplink_activations": self._transfer(d.uplink, c.up_bytes, kind),
            "server_fwd": c.srv_fwd_s * fs,
            "server_bwd": c.srv_bwd_s * fs,
            "downlink_gradients": self._transfer(d.downlink, c.down_bytes, kind),
            "device_bwd": c.dev_bwd_s * fd,
            ADAPTER: self._transfer(d.uplink, c.adapter_bytes, kind),
        }

    # ---- observations -------------------------------------------------------------------------
    def observe(self, trace: Trace | None) -> int:
        """Read the spans added since the last call; return the round about to be planned."""
        if trace is None:
            return self._round
        n = len(trace)
        if n > self._seen:
            rounds, devices, phases = trace.round, trace.device, trace.phase
            starts, ends = trace.start_s, trace.end_s
            a = self.ewma_alpha
            for i in range(self._seen, n):
                self._round = max(self._round, rounds[i] + 1)
                phase = phases[i]
                if self.name != "last" or phase not in _ALL:
                    continue
                key = (devices[i], phase)
                dur = ends[i] - starts[i]
                old = self._ewma.get(key)
                self._ewma[key] = dur if old is None else a * dur + (1.0 - a) * old
            self._seen = n
        return self._round

    # ---- the instance -------------------------------------------------------------------------
    def instance(self, world: World, costs: Mapping[str, Any], trace: Trace | None = None
                 ) -> Instance:
        """The round's instance as the scheduler sees it under this estimator."""
        r = self.observe(trace)
        priors = {d.id: self.prior(world, d, costs[d.id]) for d in world.devices}
        seen = self.pilot.get(r, {}) if self.name == "oracle" else {}

        def duration(dev: str, it: int, phase: str) -> float:
            if self.name == "last":
                got = self._ewma.get((dev, phase))
                if got is not None:
                    return got
            elif seen:
                got = seen.get((dev, it, phase))
                if got is not None:
                    return got
            return priors[dev][phase]

        ks = {d.id: world.iterations(d) for d in world.devices}
        return instance_from([d.id for d in world.devices], ks, duration)


def from_config(cfg: Any) -> Estimator:
    """The estimator a scenario's ``scheduler`` section asks for."""
    return Estimator(
        name=cfg.estimator, quantile_p=cfg.quantile_p, ewma_alpha=cfg.ewma_alpha
    )


def realised_durations(trace: pd.DataFrame) -> dict[int, dict[tuple[str, int, str], float]]:
    """Per round: (device, iteration, phase) -> the realised duration, from a run's trace.

    A phase that occurs more than once for the same key (it should not) keeps the sum.
    """
    out: dict[int, dict[tuple[str, int, str], float]] = {}
    if trace.empty:
        return out
    rows = trace[trace["phase"].isin(_ALL)]
    dur = (rows["end_s"] - rows["start_s"]).to_numpy()
    for r, dev, it, ph, t in zip(
        rows["round"].to_numpy(), rows["device"].to_numpy(), rows["iteration"].to_numpy(),
        rows["phase"].to_numpy(), dur, strict=True,
    ):
        key = (str(dev), int(it), str(ph))
        per = out.setdefault(int(r), {})
        per[key] = per.get(key, 0.0) + float(t)
    return out


def realised_instance(
    durations: Mapping[tuple[str, int, str], float], devices: list[str],
    k: int | Mapping[str, int] | None,
) -> Instance:
    """The instance a round realised: its recorded phase durations (missing phases count 0).

    ``k`` None: each device's iterations are read from the durations (its last iteration + 1).
    """
    if k is None:
        last: dict[str, int] = {}
        for dev, it, _ in durations:
            last[dev] = max(last.get(dev, 0), it)
        k = {d: last.get(d, 0) + 1 for d in devices}
    return instance_from(devices, k, lambda d, i, p: durations.get((d, i, p), 0.0))


def realised_order(trace: pd.DataFrame, r: int) -> list[str]:
    """The devices in the order the server started their tasks in round r."""
    rows = trace[(trace["round"] == r) & (trace["phase"] == "server_fwd")]
    return [str(d) for d in rows.sort_values("start_s", kind="stable")["device"]]


@dataclass(frozen=True)
class ExPost:
    """The best order on a round's realised instance, and how sure we are of it."""

    makespan_s: float  # the best makespan found (the optimum when ``optimal``)
    lower_bound_s: float
    optimal: bool
    method: str


def ex_post_optimum(
    instance: Instance, time_limit_s: float, candidates: Sequence[Sequence[str]] = ()
) -> ExPost:
    """Best order on realised times: carlier for K = 1; local search then milp for chains.

    Each solver gets ``time_limit_s``; the search stops as soon as the best makespan is proven
    (a solver's proof, or the best lower bound met). ``candidates`` (e.g. the order that ran)
    are evaluated first, so the result is never worse than them; with ``time_limit_s`` 0 only
    they and the lower bound are used.
    """
    import numpy as np

    from sfsim.schedulers import makespan
    from sfsim.schedulers.bounds import lower_bound
    from sfsim.schedulers.result import REL_TOL, solve

    if not instance.jobs:
        return ExPost(0.0, 0.0, True, "empty")
    best = math.inf
    method = "candidate"
    bound = lower_bound(instance)
    proven = False
    for order in candidates:
        if order:
            value = makespan(instance, list(order))
            if value < best:
                best = value

    def met() -> bool:
        return proven or best <= min(bound, best) * (1.0 + REL_TOL)

    # cheapest first, stopping at a proof: carlier for K = 1; for chains local search, then
    # milp (chains of at most MILP_MAX_TASKS tasks) only if local search did not meet the bound
    methods = ["carlier"] if instance.is_single else ["local_search", "milp"]
    for name in methods if time_limit_s > 0 else []:
        if met() or (name == "milp" and instance.n_tasks > MILP_MAX_TASKS):
            break
        with warnings.catch_warnings():  # milp's fallback warning: the method is reported
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                res = solve(name, instance, np.random.default_rng(0), time_limit_s=time_limit_s)
            except Exception:  # a refusal or a solver failure: the next method, or the best so far
                continue
        bound = max(bound, res.lower_bound_s)
        if res.makespan_s < best or (res.optimal and res.makespan_s <= best):
            best, method = res.makespan_s, name
            proven = proven or res.optimal
    bound = min(bound, best)
    optimal = proven or best <= bound * (1.0 + REL_TOL)
    return ExPost(best, bound, bool(optimal), method)


def judge_plans(
    plans: list[dict[str, Any]],
    trace: pd.DataFrame,
    bounds: Sequence[tuple[float, float]],
    k: int | None,
    estimator: str,
    time_limit_s: float,
) -> None:
    """Add realised and ex-post figures to each round's plan note (in place).

    ``k``: every device's local iterations (None: each device's, read from the trace).
    Per plan: ``estimator``; ``realised_makespan_s`` (the round's last adapter upload, from the
    round's start); ``realised_order`` (the order the server ran); ``replayed_makespan_s`` (that
    order evaluated on the realised instance: equal to the realised makespan whenever the DES
    realised exactly the instance's model, a consistency check); the ex-post optimum on realised
    times (``ex_post_s``, ``ex_post_lower_bound_s``, ``ex_post_optimal``, ``ex_post_method``);
    ``regret_s`` = realised − ex_post_s (≥ 0: the order that ran is one of the candidates; when
    the optimum is not proven the true regret lies in [``regret_s``, ``regret_upper_s``]).
    """

    done = realised_durations(trace)
    ends: dict[int, float] = {}
    if len(trace):
        last = trace[trace["phase"] == ADAPTER].groupby("round")["end_s"].max()
        ends = dict(zip(last.index.astype(int).tolist(), last.astype(float).tolist(), strict=True))
    for p in plans:
        r = int(p["round"])
        if r >= len(bounds):
            continue
        start = bounds[r][0]
        realised = ends.get(r, start) - start
        p["estimator"] = estimator
        p["realised_makespan_s"] = realised
        durations = done.get(r, {})
        order = realised_order(trace, r)
        devices = list(dict.fromkeys(order))
        if not devices:
            continue
        _judge(p, realised_instance(durations, devices, k), order, realised, time_limit_s)


def judge_closed_form(
    plans: list[dict[str, Any]], instance: Instance, estimator: str, time_limit_s: float
) -> None:
    """`judge_plans` for a closed-form run: nothing is random, the realised instance is the
    estimated one and each plan ran as planned."""

    for p in plans:
        order = list(p.get("order", []))
        p["estimator"] = estimator
        if not order:
            continue
        realised = p.get("realised_makespan_s")
        _judge(p, instance, order, None if realised is None else float(realised), time_limit_s)


def _judge(
    p: dict[str, Any],
    inst: Instance,
    order: list[str],
    realised: float | None,
    time_limit_s: float,
) -> None:
    """Add to plan ``p`` the order that ran replayed on ``inst`` (the realised times), the
    ex-post optimum on them and the regret (``realised`` None: the replayed makespan)."""
    from sfsim.schedulers import makespan

    replayed = makespan(inst, order)
    realised = replayed if realised is None else realised
    best = ex_post_optimum(inst, time_limit_s, [order])
    p["realised_order"] = order
    p["replayed_makespan_s"] = replayed
    p["ex_post_s"] = best.makespan_s
    p["ex_post_lower_bound_s"] = best.lower_bound_s
    p["ex_post_optimal"] = best.optimal
    p["ex_post_method"] = best.method
    p["regret_s"] = _regret(realised, best.makespan_s)
    p["regret_upper_s"] = realised - best.lower_bound_s


def _regret(realised: float, best: float) -> float:
    """realised − best, with a float-rounding difference (1e-9 relative) read as 0."""
    regret = realised - best
    if abs(regret) <= 1e-9 * max(abs(realised), 1.0):
        return 0.0
    return regret
