"""The profiler: measure per-operation times of real torch LoRA parts over a grid of workloads.

For one architecture, a grid of batch × sequence × LoRA rank, and one processor, it measures every
:class:`sfsim.costs.base.Op` and writes ``<out_dir>/<model>.csv`` (one row per op and grid point)
plus ``<out_dir>/<model>.json`` (how, where and with what it was measured). The schema is defined
in :mod:`sfsim.costs.profiled`, which reads these files without torch.

How noise is tamed (timings on a shared 2-core machine spread by more than 30% between runs):

* a fixed thread count (``torch.set_num_threads``), recorded with torch's version and the CPU;
* warm-up rounds that are thrown away (the first backward is several times slower than later ones);
* *interleaving*: every round measures every configuration once, in a freshly shuffled order, so a
  burst of load from another process spreads over all configurations instead of biasing one;
* a *canary* (a fixed matmul) is timed before and after every measurement; a measurement whose
  canaries ran more than 25% slower than the fastest canary seen was disturbed by another process
  and is repeated (:class:`sfsim.profiling.timing.Canary`); the counts are recorded;
* the median over the quiet rounds (over all rounds if none was quiet) is the estimate, the
  inter-quartile range of all rounds its spread, the minimum a lower bound; the load average
  before and after is recorded so that a noisy profile can be spotted;
* the LoRA overhead (a few percent, below this machine's drift) is measured *paired*: all ranks
  of a batch × seq point run back to back in one measurement, and a LoRA row's estimate is the
  rank-0 estimate times the median over rounds of the ratio rank r / rank 0;
* blocks are timed inside a stack of ``stack_blocks`` identical blocks (see
  :mod:`sfsim.profiling.timing`), never one at a time;
* denormal floats are flushed to zero (``torch.set_flush_denormal``), as in the fidelity run.

Rank 0 means no adapters: its rows give the frozen forward (``block_fwd_frozen``, no autograd) and
the plain forward/backward against which the LoRA overhead is read.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from sfsim.costs.analytic import op_flops
from sfsim.costs.arch import ModelArch
from sfsim.costs.base import Op, Workload
from sfsim.costs.profiled import PROFILE_COLUMNS
from sfsim.profiling.blocks import (
    TORCH_DTYPES,
    lora_parameters,
    make_block,
    make_embedding_and_head,
)
from sfsim.profiling.timing import (
    Canary,
    StackTiming,
    measuring_state,
    synchronize,
    time_frozen_stack,
    time_stack,
)

Sample = dict[tuple[str, int, int, int], list[float]]  # (op, batch, seq, rank) -> seconds
Point = dict[tuple[str, int, int, int], float]  # one measurement of one configuration


@dataclass(frozen=True)
class Grid:
    """The workloads to profile: every batch × seq, at every rank (0 = no adapters)."""

    batches: tuple[int, ...] = (1, 4)
    seqs: tuple[int, ...] = (128, 512)
    ranks: tuple[int, ...] = (0, 4, 16)
    targets: tuple[str, ...] = ("q", "v")


@dataclass(frozen=True)
class Settings:
    """How to measure."""

    reps: int = 7
    warmup: int = 2
    threads: int = 2
    stack_blocks: int = 3
    dtype: str = "fp32"
    device: str = "cpu"
    seed: int = 0
    retries: int = 1  # re-measurements of a configuration disturbed by another process


@dataclass
class ProfileResult:
    rows: list[dict[str, object]]
    meta: dict[str, object] = field(default_factory=dict)


def machine_info(device: torch.device) -> dict[str, object]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info: dict[str, object] = {
        "cpu": cpu,
        "logical_cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _quartiles(xs: Sequence[float]) -> tuple[float, float, float]:
    if len(xs) < 2:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[1], q[2]


def make_tasks(arch: ModelArch, grid: Grid, st: Settings) -> list[tuple[str, Callable[[], Point]]]:
    """Build the models once; return one closure per configuration, each returning its times."""
    dev = torch.device(st.device)
    dtype = TORCH_DTYPES[st.dtype]
    gen = torch.Generator().manual_seed(st.seed)
    stacks = {
        r: [make_block(arch, r, grid.targets, st.dtype).to(dev) for _ in range(st.stack_blocks)]
        for r in grid.ranks
    }
    embedding, head = make_embedding_and_head(arch, st.dtype)
    embedding, head = embedding.to(dev), head.to(dev)
    tasks: list[tuple[str, Callable[[], Point]]] = []
    shuffler = random.Random(st.seed + 1)

    def hidden(b: int, s: int) -> torch.Tensor:
        x = torch.randn(b, s, arch.hidden, generator=gen, dtype=torch.float32) * 0.5
        return x.to(dev, dtype)

    for b in grid.batches:
        for s in grid.seqs:
            trains: list[Callable[[], Point]] = []
            for r in grid.ranks:
                params = [p for blk in stacks[r] for p in lora_parameters(blk)]
                opt = torch.optim.Adam(params, lr=1e-4) if params else None

                def train(
                    b: int = b, s: int = s, r: int = r, opt: torch.optim.Optimizer | None = opt
                ) -> Point:
                    x = hidden(b, s).requires_grad_(r == 0)
                    g = hidden(b, s) * 1e-3
                    t: StackTiming = time_stack(stacks[r], x, g, opt, dev)
                    if r == 0:  # every block gets an input gradient; nothing to step
                        return {
                            (Op.BLOCK_FWD, b, s, r): t.mean_fwd_s,
                            (Op.BLOCK_BWD, b, s, r): statistics.fmean(t.bwd_s),
                        }
                    return {
                        (Op.BLOCK_FWD, b, s, r): t.mean_fwd_s,
                        (Op.BLOCK_BWD_NO_INPUT_GRAD, b, s, r): t.bwd_s[0],
                        (Op.BLOCK_BWD, b, s, r): statistics.fmean(t.bwd_s[1:]),
                        (Op.OPT_STEP, b, s, r): t.opt_s / st.stack_blocks,
                    }

                trains.append(train)

            def paired(trains: list[Callable[[], Point]] = trains) -> Point:
                """Every rank back to back, in a random order: their ratios share the drift."""
                point: Point = {}
                for train in shuffler.sample(trains, len(trains)):
                    point.update(train())
                return point

            tasks.append((f"train b{b} s{s}", paired))
            if 0 in stacks:

                def frozen(b: int = b, s: int = s) -> Point:
                    times = time_frozen_stack(stacks[0], hidden(b, s), dev)
                    return {(Op.BLOCK_FWD_FROZEN, b, s, 0): statistics.fmean(times)}

                tasks.append((f"frozen b{b} s{s}", frozen))

            def ends(b: int = b, s: int = s) -> Point:
                ids = torch.randint(0, arch.vocab, (b, s), generator=gen).to(dev)
                synchronize(dev)
                t0 = time.perf_counter()
                with torch.no_grad():
                    embedding(ids)
                synchronize(dev)
                t1 = time.perf_counter()
                x = hidden(b, s).requires_grad_(True)
                loss = head(x, ids)
                synchronize(dev)
                t2 = time.perf_counter()
                loss.backward()
                synchronize(dev)
                t3 = time.perf_counter()
                return {
                    (Op.EMBED_FWD, b, s, 0): t1 - t0,
                    (Op.HEAD_FWD, b, s, 0): t2 - t1,
                    (Op.HEAD_BWD, b, s, 0): t3 - t2,
                }

            tasks.append((f"ends b{b} s{s}", ends))
    return tasks


def record(canary: Canary, task: Callable[[], Point], samples: Sample, quiet: Sample) -> None:
    """Run one measurement between canaries; file its times (also as quiet ones if it was)."""
    point, is_quiet = canary.measure(task)
    for key, seconds in point.items():
        samples[key].append(seconds)
        if is_quiet:
            quiet[key].append(seconds)


def summarise(
    arch: ModelArch, grid: Grid, st: Settings, samples: Sample, quiet: Sample
) -> list[dict[str, object]]:
    """One row per (op, batch, seq, rank) with the estimate and its spread (PROFILE_COLUMNS)."""
    rows: list[dict[str, object]] = []
    targets = "+".join(grid.targets)
    for (op, b, s, r), xs in sorted(samples.items()):
        q1, med, q3 = _quartiles(xs)
        clean = quiet.get((op, b, s, r), [])
        if clean:
            med = statistics.median(clean)
        plain = samples.get((op, b, s, 0))
        if r and plain and len(plain) == len(xs):
            # LoRA rows: the plain block's estimate times the median ratio measured back to back
            plain_med = statistics.median(quiet.get((op, b, s, 0)) or plain)
            med = plain_med * statistics.median(x / p for x, p in zip(xs, plain, strict=True))
        work = Workload(arch, b, s, st.dtype, r, grid.targets if r else ())
        rows.append(
            {
                "op": str(op),
                "batch": b,
                "seq": s,
                "rank": r,
                "targets": targets if r else "",
                "dtype": st.dtype,
                "median_s": med,
                "iqr_s": q3 - q1,
                "min_s": min(xs),
                "reps": len(xs),
                "quiet": len(clean),
                "flops": op_flops(Op(op), work),
            }
        )
    return rows


def profile_model(
    arch: ModelArch,
    grid: Grid | None = None,
    settings: Settings | None = None,
    *,
    processor: str = "unnamed",
    log: Callable[[str], None] | None = None,
) -> ProfileResult:
    """Measure every op of ``arch`` over ``grid``; rows follow :data:`PROFILE_COLUMNS`.

    Threads and denormal flushing are set for the measurement and restored afterwards.
    """
    st = settings or Settings()
    with measuring_state(st.threads):
        return _profile_model(arch, grid or Grid(), st, processor=processor, log=log)


def _profile_model(
    arch: ModelArch,
    grid: Grid,
    st: Settings,
    *,
    processor: str,
    log: Callable[[str], None] | None,
) -> ProfileResult:
    dev = torch.device(st.device)
    torch.manual_seed(st.seed)
    samples: Sample = defaultdict(list)
    quiet: Sample = defaultdict(list)
    load_before = os.getloadavg()
    started = time.time()
    tasks = make_tasks(arch, grid, st)
    canary = Canary(dev, retries=st.retries)
    order = random.Random(st.seed)
    for rnd in range(st.warmup + st.reps):
        if rnd == st.warmup:
            samples.clear()  # warm-up rounds are measured and thrown away
            quiet.clear()
        shuffled = list(tasks)
        order.shuffle(shuffled)
        for _, task in shuffled:
            record(canary, task, samples, quiet)
        if log:
            kind = "warm-up" if rnd < st.warmup else "round"
            done = f"{rnd + 1}/{st.warmup + st.reps}"
            log(f"{arch.name}: {kind} {done} done ({time.time() - started:.0f} s)")
    rows = summarise(arch, grid, st, samples, quiet)
    meta: dict[str, object] = {
        "model": arch.name,
        "processor": processor,
        "grid": asdict(grid),
        "settings": asdict(st),
        "machine": machine_info(dev),
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "started_unix": started,
        "wall_s": time.time() - started,
        "statistic": "median over quiet rounds (all rounds if none) of the per-block time "
        "inside a stack",
        "canary_best_s": canary.best_s,
        "measurements_clean": canary.clean,
        "measurements_contended": canary.dirty,
    }
    return ProfileResult(rows=rows, meta=meta)


def write_profile(result: ProfileResult, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/<model>.csv`` and its ``.json`` sidecar; returns the CSV path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = str(result.meta["model"])
    path = out / f"{name}.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(PROFILE_COLUMNS))
        writer.writeheader()
        for row in result.rows:
            writer.writerow({k: _fmt(v) for k, v in row.items()})
    (out / f"{name}.json").write_text(json.dumps(result.meta, indent=2, default=str) + "\n")
    return path


def _fmt(v: object) -> object:
    return f"{v:.6g}" if isinstance(v, float) else v
