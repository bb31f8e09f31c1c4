"""Fidelity: run real split LoRA training here and compare each phase with the cost model.

One split iteration with cut ``c`` (device: embedding and blocks ``1..c``; server: blocks
``c+1..L``, head and loss) is executed for real with torch, phase by phase:

====================== ============================================= ===========================
phase                  what runs                                     predicted as
====================== ============================================= ===========================
``device_fwd``         embedding, blocks 1..c forward                ``EMBED_FWD + c·BLOCK_FWD``
``server_fwd``         the boundary tensor is detached and made a    ``(L−c)·BLOCK_FWD + HEAD_FWD``
                       leaf that requires grad; blocks c+1..L, head
                       and cross-entropy forward
``server_bwd``         ``loss.backward()`` down to the cut            ``HEAD_BWD + (L−c)·BLOCK_BWD``
``server_opt``         Adam step on the server-side LoRA             ``(L−c)·OPT_STEP``
``device_bwd``         the cut gradient is handed back;              ``BLOCK_BWD_NO_INPUT_GRAD +
                       backward through blocks c..1                  (c−1)·BLOCK_BWD``
``device_opt``         Adam step on the device-side LoRA             ``c·OPT_STEP``
====================== ============================================= ===========================

The iteration is the sum of its phases, exactly as the simulator's schemes add
``cost_model.time_s`` over ops. Two predictions stand beside each measurement, both from
:class:`ProfiledCostModel` for processor ``cpu-ref-2core`` (this machine):

* **session profile**: each round also runs ``sfsim profile``'s measurements for the
  configuration's grid point (a stack of blocks at rank 0 and at its rank, the embedding and the
  head), interleaved with the iterations; predicting from those checks how profiles compose into
  an iteration with the machine in the same state;
* **shipped profile** (or ``--profile-dir``): measured earlier, so its error also holds the
  machine's drift since then, which the canary estimates (``speed_ratio``; this VM's speed drifts
  by tens of percent within an hour, with no other process running).

Rounds interleave all configurations after warm-up, so that load from other processes spreads
over all of them, and a measurement disturbed by another process (its canary ran slow;
:class:`~sfsim.profiling.timing.Canary`) is repeated, and left out if it stays disturbed while
quiet ones exist. The error of a configuration is the median over its iterations of
``|predicted − measured| / measured`` for the whole iteration.

A model the profile folder has no profile for (the toy shapes of ``sfsim fidelity --tiny``) gets no
shipped prediction (the cost model would fall back to FLOPs / peak, which says nothing about
profiles): only the session profile is compared. ``--tiny`` is a smoke test of this whole path in
seconds: real split iterations of a GPT-2- and a Llama-shaped toy model, every phase measured, a
session profile written with ``sfsim profile``'s code, read back by :class:`ProfiledCostModel` and
composed into per-phase predictions; :func:`smoke_problems` lists what is missing or non-finite.
Its kernels take milliseconds, so it uses a small canary and its errors are indicative only.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import torch

from sfsim.costs.arch import ModelArch, get_arch
from sfsim.costs.base import CostModel, Op, Processor, Workload
from sfsim.costs.profiled import ProfiledCostModel
from sfsim.profiling.blocks import lora_parameters, make_block, make_embedding_and_head
from sfsim.profiling.profiler import (
    Grid,
    ProfileResult,
    Sample,
    Settings,
    make_tasks,
    record,
    summarise,
    write_profile,
)
from sfsim.profiling.timing import Canary, measuring_state, synchronize

PHASES = ("device_fwd", "server_fwd", "server_bwd", "server_opt", "device_bwd", "device_opt")


@dataclass(frozen=True)
class FidelityConfig:
    """One model (optionally cut down to ``n_layers`` blocks) at one batch, with several cuts."""

    model: str
    cuts: tuple[int, ...]
    batch: int = 4
    seq: int = 128
    rank: int = 8
    targets: tuple[str, ...] = ("q", "v")
    n_layers: int | None = None  # None: all of the architecture's blocks
    arch: ModelArch | None = None  # a custom shape (tests); default: get_arch(model)

    def resolved_arch(self) -> ModelArch:
        arch = self.arch or get_arch(self.model)
        return replace(arch, n_layers=self.n_layers) if self.n_layers else arch


#: What ``sfsim fidelity`` runs by default: GPT-2 small whole, a 4-block Llama-3.2-1B.
DEFAULT_CONFIGS = (
    FidelityConfig("gpt2", cuts=(3, 6), batch=4, seq=128, rank=8),
    FidelityConfig("llama-3.2-1b", cuts=(1, 2), batch=2, seq=128, rank=8, n_layers=4),
)


@dataclass
class FidelityResult:
    """Measured phases of one (model, cut) and two predictions of them.

    ``predicted_s`` comes from a *session profile*, measured in this process interleaved with the
    iterations (same machine state: this checks how profiles compose into iterations);
    ``predicted_shipped_s`` from the profile folder given (shipped by default), measured earlier,
    so its error also holds the machine's drift since then (``speed_ratio``, from the canary).
    Without a session profile, ``predicted_s`` is the shipped prediction.
    """

    model: str
    n_layers: int
    cut: int
    batch: int
    seq: int
    rank: int
    measured_s: dict[str, list[float]] = field(default_factory=dict)  # phase -> per iteration
    quiet: list[bool] = field(default_factory=list)  # per iteration: canaries undisturbed
    predicted_s: dict[str, float] = field(default_factory=dict)
    predicted_shipped_s: dict[str, float] = field(default_factory=dict)  # empty: no profile
    speed_ratio: float | None = None  # canary now / canary when profiled (>1: machine slower)

    def _kept(self) -> list[int]:
        """Iterations that count: the quiet ones if there are any, else all."""
        quiet = [i for i, q in enumerate(self.quiet) if q]
        return quiet or list(range(len(self.quiet)))

    def phase_s(self, phase: str) -> list[float]:
        return [self.measured_s[phase][i] for i in self._kept()]

    def iteration_s(self) -> list[float]:
        return [sum(self.measured_s[p][i] for p in PHASES) for i in self._kept()]

    def _error(self, predicted_iteration_s: float) -> float:
        return statistics.median(abs(predicted_iteration_s - m) / m for m in self.iteration_s())

    @property
    def median_abs_error(self) -> float:
        return self._error(sum(self.predicted_s.values()))

    @property
    def median_abs_error_shipped(self) -> float | None:
        """None when the profile folder has no profile of this model."""
        if not self.predicted_shipped_s:
            return None
        return self._error(sum(self.predicted_shipped_s.values()))

    def to_dict(self) -> dict[str, Any]:
        phases = {}
        shipped = self.predicted_shipped_s
        for p in PHASES:
            meas = statistics.median(self.phase_s(p))
            phases[p] = {
                "measured_s": meas,
                "predicted_s": self.predicted_s[p],
                "error": (self.predicted_s[p] - meas) / meas if meas else None,
                "predicted_shipped_s": shipped.get(p),
                "error_shipped": (shipped[p] - meas) / meas if meas and shipped else None,
            }
        iters = self.iteration_s()
        shipped_drift = None
        if self.speed_ratio is not None and shipped:
            shipped_drift = self._error(sum(shipped.values()) * self.speed_ratio)
        return {
            "model": self.model,
            "n_layers": self.n_layers,
            "cut": self.cut,
            "batch": self.batch,
            "seq": self.seq,
            "rank": self.rank,
            "iterations": len(iters),
            "iterations_disturbed": self.quiet.count(False),
            "measured_iteration_s": statistics.median(iters),
            "predicted_iteration_s": sum(self.predicted_s.values()),
            "median_abs_error": self.median_abs_error,
            "predicted_iteration_shipped_s": sum(shipped.values()) if shipped else None,
            "median_abs_error_shipped": self.median_abs_error_shipped,
            "speed_ratio": self.speed_ratio,
            "median_abs_error_shipped_drift_scaled": shipped_drift,
            "phases": phases,
        }


def predict_phases(
    cost: CostModel, work: Workload, n_layers: int, cut: int, proc: Processor
) -> dict[str, float]:
    """The simulator's view of each phase: a sum of ``cost.time_s`` over the phase's ops."""

    def t(op: Op) -> float:
        return cost.time_s(op, work, proc)

    server = n_layers - cut
    return {
        "device_fwd": t(Op.EMBED_FWD) + cut * t(Op.BLOCK_FWD),
        "server_fwd": server * t(Op.BLOCK_FWD) + t(Op.HEAD_FWD),
        "server_bwd": t(Op.HEAD_BWD) + server * t(Op.BLOCK_BWD),
        "server_opt": server * t(Op.OPT_STEP),
        "device_bwd": t(Op.BLOCK_BWD_NO_INPUT_GRAD) + (cut - 1) * t(Op.BLOCK_BWD),
        "device_opt": cut * t(Op.OPT_STEP),
    }


class SplitModel:
    """A whole model with LoRA, runnable as a device part and a server part at any cut."""

    def __init__(self, cfg: FidelityConfig, seed: int = 0, device: str = "cpu") -> None:
        torch.manual_seed(seed)
        self.device = torch.device(device)
        self.arch = cfg.resolved_arch()
        self.cfg = cfg
        embedding, head = make_embedding_and_head(self.arch)
        self.embedding, self.head = embedding.to(self.device), head.to(self.device)
        self.blocks = [
            make_block(self.arch, cfg.rank, cfg.targets).to(self.device)
            for _ in range(self.arch.n_layers)
        ]
        gen = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, self.arch.vocab, (cfg.batch, cfg.seq), generator=gen)
        self.ids = ids.to(self.device)
        self.labels = torch.roll(self.ids, -1, dims=1)
        self.optimizers: dict[int, tuple[torch.optim.Optimizer, torch.optim.Optimizer]] = {}

    def _optimizers(self, cut: int) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        if cut not in self.optimizers:
            dev = [p for b in self.blocks[:cut] for p in lora_parameters(b)]
            srv = [p for b in self.blocks[cut:] for p in lora_parameters(b)]
            self.optimizers[cut] = (torch.optim.Adam(dev, lr=1e-4), torch.optim.Adam(srv, lr=1e-4))
        return self.optimizers[cut]

    def iteration(self, cut: int) -> dict[str, float]:
        """One split training iteration at ``cut``; seconds per phase."""
        dev_opt, srv_opt = self._optimizers(cut)

        def now() -> float:
            synchronize(self.device)
            return time.perf_counter()

        marks = [now()]
        with torch.no_grad():
            x = self.embedding(self.ids)
        for block in self.blocks[:cut]:
            x = block(x)
        marks.append(now())
        boundary = x.detach().requires_grad_(True)  # what crosses the uplink
        y = boundary
        for block in self.blocks[cut:]:
            y = block(y)
        loss = self.head(y, self.labels)
        marks.append(now())
        loss.backward()
        marks.append(now())
        srv_opt.step()
        srv_opt.zero_grad(set_to_none=True)
        marks.append(now())
        assert boundary.grad is not None
        x.backward(boundary.grad)  # the cut gradient, handed back over the downlink
        marks.append(now())
        dev_opt.step()
        dev_opt.zero_grad(set_to_none=True)
        marks.append(now())
        return {p: marks[i + 1] - marks[i] for i, p in enumerate(PHASES)}


def _session_grid(cfg: FidelityConfig) -> Grid:
    """The one grid point of a configuration: its batch and sequence, rank 0 and its rank."""
    ranks = (0, cfg.rank) if cfg.rank else (0,)
    return Grid((cfg.batch,), (cfg.seq,), ranks, cfg.targets)


def run_fidelity(
    configs: tuple[FidelityConfig, ...] = DEFAULT_CONFIGS,
    *,
    cost: CostModel,
    processor: Processor,
    iters: int = 5,
    warmup: int = 2,
    threads: int = 2,
    retries: int = 2,
    device: str = "cpu",
    session_profile: bool = True,
    log: Callable[[str], None] | None = None,
    small_canary: bool = False,
) -> tuple[list[FidelityResult], dict[str, Any]]:
    """Measure ``iters`` interleaved iterations per (config, cut); returns results and run facts.

    ``small_canary``: a canary sized for millisecond kernels (toy models); then no machine-speed
    ratio against a shipped profile is computed (its canary was the full-size one).

    With ``session_profile`` every round also profiles each configuration's grid point (stack of
    blocks, embedding and head, exactly as ``sfsim profile`` does) right beside its iterations.
    Threads and denormal flushing are set for the run and restored afterwards.
    """
    with measuring_state(threads):
        return _run_fidelity(
            configs, cost, processor, iters, warmup, threads, retries, device, session_profile, log,
            small_canary,
        )


def _run_fidelity(
    configs: tuple[FidelityConfig, ...],
    cost: CostModel,
    processor: Processor,
    iters: int,
    warmup: int,
    threads: int,
    retries: int,
    device: str,
    session_profile: bool,
    log: Callable[[str], None] | None,
    small_canary: bool = False,
) -> tuple[list[FidelityResult], dict[str, Any]]:
    load_before = os.getloadavg()
    settings = Settings(threads=threads, device=device, retries=0)
    models = [SplitModel(cfg, device=device) for cfg in configs]
    profiling = [make_tasks(m.arch, _session_grid(m.cfg), settings) if session_profile else []
                 for m in models]  # fmt: skip
    samples: list[Sample] = [defaultdict(list) for _ in models]
    quiet: list[Sample] = [defaultdict(list) for _ in models]
    runs: list[tuple[int, FidelityResult]] = []
    for k, m in enumerate(models):
        for cut in m.cfg.cuts:
            if not 1 <= cut < m.arch.n_layers:
                raise ValueError(f"cut {cut} outside 1..{m.arch.n_layers - 1} for {m.arch.name}")
            res = FidelityResult(
                m.cfg.model, m.arch.n_layers, cut, m.cfg.batch, m.cfg.seq, m.cfg.rank
            )
            res.measured_s = {p: [] for p in PHASES}
            runs.append((k, res))
    canary = Canary(torch.device(device), retries=retries)
    if small_canary:  # the default canary (~2 GFLOP) would dwarf a toy model's kernels
        gen = torch.Generator().manual_seed(1)
        canary.a = torch.randn(64, 256, generator=gen).to(canary.device)
        canary.b = torch.randn(256, 256, generator=gen).to(canary.device)
    for rnd in range(warmup + iters):
        if rnd == warmup:
            for d in (*samples, *quiet):
                d.clear()
        for k, m in enumerate(models):
            for _, task in profiling[k]:
                record(canary, task, samples[k], quiet[k])
            for kk, res in runs:
                if kk != k:
                    continue
                phases, is_quiet = canary.measure(partial(m.iteration, res.cut))
                if rnd >= warmup:
                    for p, s in phases.items():
                        res.measured_s[p].append(s)
                    res.quiet.append(is_quiet)
        if log:
            log(f"fidelity: {'warm-up' if rnd < warmup else 'round'} {rnd + 1}/{warmup + iters}")
    with tempfile.TemporaryDirectory() as folder:
        session: CostModel = cost
        if session_profile:
            for k, m in enumerate(models):
                rows = summarise(m.arch, _session_grid(m.cfg), settings, samples[k], quiet[k])
                write_profile(ProfileResult(rows, {"model": m.arch.name}), folder)
            session = ProfiledCostModel(profile_dir=folder, reference=processor)
        for k, res in runs:
            m = models[k]
            work = Workload(m.arch, m.cfg.batch, m.cfg.seq, "fp32", m.cfg.rank, m.cfg.targets)
            if getattr(cost, "has_profile", lambda _: True)(m.arch.name):
                res.predicted_shipped_s = predict_phases(
                    cost, work, m.arch.n_layers, res.cut, processor
                )
            res.predicted_s = predict_phases(session, work, m.arch.n_layers, res.cut, processor)
            meta = getattr(cost, "profile_meta", lambda _: None)(m.arch.name)
            settings_meta = (meta or {}).get("settings", {})
            same_canary = not small_canary and settings_meta.get("threads") == threads
            if meta and meta.get("canary_best_s") and same_canary:
                res.speed_ratio = canary.best_s / float(meta["canary_best_s"])
    facts = {
        "threads": threads,
        "device": device,
        "torch": torch.__version__,
        "processor": processor.name,
        "cost_model": cost.name,
        "session_profile": session_profile,
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "canary_best_s": canary.best_s,
        "measurements_clean": canary.clean,
        "measurements_contended": canary.dirty,
    }
    return [res for _, res in runs], facts


def format_table(results: list[FidelityResult]) -> str:
    """Measured vs predicted per phase and per iteration (milliseconds), one block per cut."""
    lines = []
    for r in results:
        d = r.to_dict()
        shipped = r.median_abs_error_shipped
        lines.append(
            f"{r.model} ({r.n_layers} blocks) cut {r.cut}, batch {r.batch}, seq {r.seq}, "
            f"rank {r.rank}: median |error| per iteration {100 * r.median_abs_error:.1f}% "
            + (f"(shipped profile: {100 * shipped:.1f}%)" if shipped is not None
               else "(no shipped profile of this model: session profile only)")
        )
        if r.speed_ratio is not None:
            lines.append(
                f"  machine speed since the shipped profile (canary): x{r.speed_ratio:.2f} "
                f"(>1: slower now); shipped error with it: "
                f"{100 * d['median_abs_error_shipped_drift_scaled']:.1f}%"
            )
        lines.append(
            f"  {'phase':<12} {'measured':>9} {'predicted':>10} {'error':>7}"
            f" {'shipped':>9} {'error':>7}   (ms)"
        )
        rows = [(p, d["phases"][p]) for p in PHASES]
        rows.append(
            (
                "iteration",
                {
                    "measured_s": d["measured_iteration_s"],
                    "predicted_s": d["predicted_iteration_s"],
                    "predicted_shipped_s": d["predicted_iteration_shipped_s"],
                },
            )
        )
        for name, ph in rows:
            meas = ph["measured_s"]
            cells = [f"  {name:<12} {1e3 * meas:>9.1f}"]
            for key in ("predicted_s", "predicted_shipped_s"):
                if ph[key] is None:
                    cells.append(f"{'-':>10} {'-':>7}")
                    continue
                err = (ph[key] - meas) / meas if meas else 0.0
                cells.append(f"{1e3 * ph[key]:>10.1f} {100 * err:>+6.1f}%")
            lines.append(" ".join(cells))
    return "\n".join(lines)


def smoke_problems(results: list[FidelityResult]) -> list[str]:
    """What a fidelity run failed to produce: every (model, cut) needs every phase measured
    (finite, > 0) and predicted from the session profile (finite, > 0); empty when all is there.
    """
    problems = []
    for r in results:
        where = f"{r.model} cut {r.cut}"
        for p in PHASES:
            measured = r.measured_s.get(p) or []
            if not measured or not all(math.isfinite(x) and x > 0 for x in measured):
                problems.append(f"{where}: phase {p} not measured ({measured})")
            pred = r.predicted_s.get(p)
            if pred is None or not math.isfinite(pred) or pred <= 0:
                problems.append(f"{where}: phase {p} has no session-profile prediction ({pred})")
        if r.predicted_s and not math.isfinite(r.median_abs_error):
            problems.append(f"{where}: the iteration error is not finite")
    return problems


def tiny_configs() -> tuple[FidelityConfig, ...]:
    """Toy GPT-2- and Llama-shaped models for a smoke test (no shipped profile: compared with the
    session profile only)."""
    gpt2 = ModelArch("tiny-gpt2", "gpt2", 3, 64, 4, 4, 256, 512, 64)
    llama = ModelArch("tiny-llama", "llama", 2, 64, 4, 2, 128, 512, 64)
    return (
        FidelityConfig("tiny-gpt2", cuts=(1, 2), batch=2, seq=16, rank=4, arch=gpt2),
        FidelityConfig("tiny-llama", cuts=(1,), batch=2, seq=16, rank=4, arch=llama),
    )
