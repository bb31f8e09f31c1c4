"""The profiled cost model: measured per-layer times, interpolated and scaled to any processor.

``sfsim profile`` times real torch LoRA parts on one processor (the *reference*) and writes
``<folder>/<model>.csv``; this module reads those files (stdlib and numpy, no torch) and answers
``time_s(op, workload, processor)`` for any workload and processor in three steps.

1. **Look-up on the reference.** The rows of one op form a grid over batch × sequence × LoRA
   rank. Inside the grid the time is interpolated linearly in batch (so in tokens = batch·seq at a
   fixed sequence), in sequence and in rank: exact at grid points and monotone wherever the
   measurements are. Outside, the batch/sequence point is clamped to the grid's box and the time
   there is multiplied by the op's FLOP ratio (bytes for the embedding, which does no FLOPs):
   extrapolation is proportional to the work, never flat. Rank outside the grid follows the slope
   between the two highest ranks: the LoRA overhead is *measured* (small rank-r matmuls and extra
   passes over activations cost far more than their FLOPs), never derived from FLOPs. Noise can make
   a higher rank look faster; values are made non-decreasing in rank when loaded. A workload more
   than :data:`FAR_OUTSIDE` (4×) beyond the grid on any axis is extrapolated with a
   ``RuntimeWarning``, once per model, op and axis, naming the axis, the factor and the range.
2. **Other LoRA targets.** A profile is measured for one target set (e.g. ``q+v``) and at rank 0.
   For another set the measured LoRA overhead (rank r minus rank 0, never below zero) is scaled
   by ``Σ(d_in + d_out)`` over the targets, the size of the activations the adapters read and
   write.
3. **Roofline scaling to the target processor.** An op does ``F`` FLOPs and moves ``M`` bytes
   (:func:`op_traffic_bytes`). On the reference, with effective FLOP/s ``P`` and bandwidth ``B``,
   its time splits into a compute share ``φ = (F/P) / (F/P + M/B)`` and a memory share ``1 − φ``.
   On the target: ``t = t_ref · (φ · P_ref/P_tgt + (1 − φ) · B_ref/B_tgt)``: compute-bound work
   scales with effective FLOP/s, memory-bound work with bandwidth. A dtype without a profile uses
   the fp32 profile with the target's FLOP/s at the requested dtype and bytes scaled by dtype size.

An architecture without a profile falls back to :class:`AnalyticCostModel`, with one warning per
model and cost-model instance.

Profile CSV schema (one row per op × batch × seq × rank; :data:`PROFILE_COLUMNS`):

=========== =====================================================================================
``op``       an :class:`sfsim.costs.base.Op` value (``block_fwd``, ``head_bwd``, ...)
``batch``    sequences per batch                   ``seq``      tokens per sequence
``rank``     LoRA rank; 0 = no adapters (frozen forward, embedding and head rows use 0)
``targets``  LoRA target projections joined by ``+`` (empty at rank 0)
``dtype``    ``fp32`` / ``fp16`` / ``bf16``        ``median_s`` the estimate: median of the quiet
                                                   rounds (of all if none), seconds per block
``iqr_s``    inter-quartile range of the rounds    ``min_s``    fastest round
``reps``     rounds measured                       ``quiet``    rounds not disturbed (canary)
``flops``    analytic FLOPs (for reading only)
=========== =====================================================================================
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import warnings
from bisect import bisect_left
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import numpy as np

from sfsim.costs import footprint as fp
from sfsim.costs.analytic import AnalyticCostModel, op_flops
from sfsim.costs.base import Op, Processor, Workload
from sfsim.errors import InputError

PROFILE_COLUMNS = (
    "op", "batch", "seq", "rank", "targets", "dtype",
    "median_s", "iqr_s", "min_s", "reps", "quiet", "flops",
)  # fmt: skip
#: A workload more than this factor beyond a profile's batch, sequence or rank range is
#: extrapolated with a warning (once per model, op and axis).
FAR_OUTSIDE = 4.0
RANKED_OPS = frozenset({Op.BLOCK_FWD, Op.BLOCK_BWD, Op.BLOCK_BWD_NO_INPUT_GRAD, Op.OPT_STEP})
LOGIT_BYTES = 4  # the loss is computed on fp32 logits


def shipped_profiles(processor: str) -> Traversable:
    """The folder of profiles shipped with sfsim for ``processor``."""
    return resources.files("sfsim.data").joinpath("profiles").joinpath(processor)


def measured_on(profile_dir: str | Path | None, model: str) -> tuple[str | None, str]:
    """The processor named by ``model``'s profile metadata (``<model>.json`` "processor"), and
    that file; None when there is no such file or it names none. InputError when it is damaged.

    ``profile_dir`` None: the shipped profiles (measured on ``cpu-ref-2core``).
    """
    folder: Path | Traversable = (
        shipped_profiles("cpu-ref-2core") if profile_dir is None else Path(profile_dir)
    )
    f = folder.joinpath(f"{model}.json")
    try:
        if not f.is_file():
            return None, str(f)
    except (OSError, ValueError):
        return None, str(f)  # an unusable folder is reported when the cost model opens it
    meta = _read_meta(f)
    name = meta.get("processor")
    if name is None:
        return None, str(f)
    if not isinstance(name, str) or not name or len(name) > 64:
        raise InputError(f"'processor' must be a processor name, not {name!r}", file=str(f))
    return name, str(f)


def _read_meta(f: Path | Traversable) -> dict[str, object]:
    try:
        meta = json.loads(_profile_text(f))
    except ValueError as exc:
        raise InputError(f"damaged JSON: {exc}", file=str(f)) from None
    if not isinstance(meta, dict):
        raise InputError("must hold a JSON object", file=str(f))
    return meta


def op_traffic_bytes(op: Op, w: Workload) -> float:
    """Bytes an op moves through memory (weights read once, activations written and read)."""
    a, t, d = w.arch, w.tokens, w.dtype_bytes
    lora = a.lora_params(w.lora_rank, w.lora_targets) * fp.FP32
    acts = fp.block_saved_activation_bytes(w)
    match op:
        case Op.EMBED_FWD:
            return 3.0 * t * a.hidden * d  # gather rows (+ positions), write the hidden state
        case Op.BLOCK_FWD | Op.BLOCK_FWD_FROZEN:
            return fp.block_weight_bytes(w) + lora + 2.0 * acts
        case Op.BLOCK_BWD | Op.BLOCK_BWD_NO_INPUT_GRAD:
            return fp.block_weight_bytes(w) + 3.0 * lora + 4.0 * acts
        case Op.HEAD_FWD | Op.HEAD_BWD:
            return a.vocab * a.hidden * d + 3.0 * t * a.vocab * LOGIT_BYTES
        case Op.OPT_STEP:
            return 7.0 * lora  # read param, grad, two moments; write param, two moments
    raise ValueError(f"unknown op {op!r}")


def roofline_factor(
    op: Op, w: Workload, ref: Processor, target: Processor, ref_dtype: str
) -> float:
    """Multiplier from a time measured on ``ref`` (at ``ref_dtype``) to ``target`` (at w.dtype)."""
    if target == ref and ref_dtype == w.dtype:
        return 1.0
    flops = op_flops(op, w)
    ref_work = Workload(w.arch, w.batch, w.seq, ref_dtype, w.lora_rank, w.lora_targets)
    ref_bytes = op_traffic_bytes(op, ref_work)
    compute_s = flops / ref.flops_per_s(ref_dtype)
    memory_s = ref_bytes / ref.mem_bw_bytes_s
    phi = compute_s / (compute_s + memory_s) if compute_s + memory_s > 0 else 0.0
    compute = ref.flops_per_s(ref_dtype) / target.flops_per_s(w.dtype)
    bytes_ratio = op_traffic_bytes(op, w) / ref_bytes if ref_bytes else 1.0
    memory = bytes_ratio * ref.mem_bw_bytes_s / target.mem_bw_bytes_s
    return phi * compute + (1.0 - phi) * memory


def _work_measure(op: Op, w: Workload) -> float:
    """What extrapolation is proportional to: FLOPs, or bytes for ops without FLOPs."""
    flops = op_flops(op, w)
    return flops if flops > 0 else op_traffic_bytes(op, w)


def _interp_axis(xs: list[int], x: float) -> tuple[int, int, float]:
    """Bracketing indices and weight of the upper one (x inside [xs[0], xs[-1]])."""
    if len(xs) == 1 or x <= xs[0]:
        return 0, 0, 0.0
    hi = min(bisect_left(xs, x), len(xs) - 1)
    lo = hi - 1 if xs[hi] >= x else hi
    if lo == hi:
        return lo, hi, 0.0
    return lo, hi, (x - xs[lo]) / (xs[hi] - xs[lo])


@dataclass
class _OpTable:
    """Measured seconds of one op at one dtype and target set, on a batch × seq grid per rank."""

    batches: list[int]
    seqs: list[int]
    by_rank: dict[int, np.ndarray]  # rank -> seconds[batch index, seq index]

    def at(self, rank: int, batch: float, seq: float) -> float:
        grid = self.by_rank[rank]
        i0, i1, wb = _interp_axis(self.batches, batch)
        j0, j1, ws = _interp_axis(self.seqs, seq)
        low = (1 - ws) * grid[i0, j0] + ws * grid[i0, j1]
        high = (1 - ws) * grid[i1, j0] + ws * grid[i1, j1]
        return float((1 - wb) * low + wb * high)

    def at_rank(self, rank: int, batch: float, seq: float) -> float:
        """Linear between profiled positive ranks; clamped below, slope-extrapolated above."""
        if rank in self.by_rank:
            return self.at(rank, batch, seq)
        ranks = sorted(r for r in self.by_rank if r > 0) or sorted(self.by_rank)
        if rank <= ranks[0]:
            return self.at(ranks[0], batch, seq)
        if rank >= ranks[-1]:
            if len(ranks) == 1:
                return self.at(ranks[0], batch, seq)
            r0, r1 = ranks[-2], ranks[-1]
            t0, t1 = self.at(r0, batch, seq), self.at(r1, batch, seq)
            return t1 + max(t1 - t0, 0.0) * (rank - r1) / (r1 - r0)
        i0, i1, wr = _interp_axis(ranks, rank)
        return (1 - wr) * self.at(ranks[i0], batch, seq) + wr * self.at(ranks[i1], batch, seq)


def _profile_text(f: Path | Traversable) -> str:
    """A profile file's text; InputError if it is too large, unreadable or not UTF-8."""
    if isinstance(f, Path):
        from sfsim.yamlio import read_user_file

        return read_user_file(f, what="profile CSV")
    try:
        return f.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read: {exc}", file=str(f)) from None


def read_profile(text: str, source: str) -> dict[tuple[str, str, str], _OpTable]:
    """Parse a profile CSV into tables keyed by (op, dtype, targets); InputError on bad data."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in ("op", "batch", "seq", "rank", "dtype", "median_s")
               if c not in (reader.fieldnames or [])]  # fmt: skip
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}", file=source)
    points: dict[tuple[str, str, str], dict[tuple[int, int, int], float]] = defaultdict(dict)
    try:
        for n, row in enumerate(reader, start=2):
            op, b, s, r, dtype, t = _profile_row(row, n, source)
            key = (str(op), dtype, row.get("targets") or "")
            points[key][(b, s, r)] = t
    except csv.Error as e:
        raise InputError(f"damaged CSV: {e}", file=source) from None
    if not points:
        raise InputError("no data rows", file=source)
    tables = {}
    for key, pts in points.items():
        batches = sorted({b for b, _, _ in pts})
        seqs = sorted({s for _, s, _ in pts})
        by_rank: dict[int, np.ndarray] = {}
        for r in sorted({r for _, _, r in pts}):
            grid = np.full((len(batches), len(seqs)), np.nan)
            for (b, s, rr), t in pts.items():
                if rr == r:
                    grid[batches.index(b), seqs.index(s)] = t
            if np.isnan(grid).any():
                raise InputError(
                    f"{key[0]} at rank {r} is not a full batch × seq grid", file=source
                )
            by_rank[r] = grid
        ranks = sorted(by_rank)  # noise must not make a larger rank cheaper
        for lo, hi in itertools.pairwise(ranks):
            by_rank[hi] = np.maximum(by_rank[hi], by_rank[lo])
        tables[key] = _OpTable(batches, seqs, by_rank)
    return tables


def _profile_row(row: dict[str, str | None], n: int, source: str
                 ) -> tuple[Op, int, int, int, str, float]:
    """One CSV row, checked column by column; InputError naming the line and the column."""
    if None in row:  # csv puts extra fields under the key None
        raise InputError(f"line {n}: more fields than the header has", file=source)

    def cell(col: str) -> str:
        v = row.get(col)
        if v is None:
            raise InputError(f"line {n}: column {col!r} is missing (row too short)", file=source)
        return v.strip()

    try:
        op = Op(cell("op"))
    except ValueError:
        known = ", ".join(o.value for o in Op)
        raise InputError(f"line {n}: column 'op': unknown op {cell('op')!r}; known: {known}",
                         file=source) from None
    ints = []
    for col, lo in (("batch", 1), ("seq", 1), ("rank", 0)):
        text = cell(col)
        if not text.isdigit() or len(text) > 9 or int(text) < lo:
            raise InputError(f"line {n}: column {col!r}: {text!r} is not a whole number "
                             f">= {lo} (at most 9 digits)", file=source)
        ints.append(int(text))
    dtype = cell("dtype")
    if dtype not in ("fp32", "fp16", "bf16"):
        raise InputError(f"line {n}: column 'dtype': {dtype!r} is not fp32, fp16 or bf16",
                         file=source)
    text = cell("median_s")
    try:
        t = float(text)
    except ValueError:
        t = math.nan
    if not (math.isfinite(t) and 0.0 <= t <= 1e6):
        raise InputError(f"line {n}: column 'median_s': {text!r} is not a time in seconds "
                         "(a finite number from 0 to 1e6)", file=source)
    return op, ints[0], ints[1], ints[2], dtype, t


def _adapter_width(w: Workload, targets: tuple[str, ...]) -> int:
    return sum(sum(w.arch.projection_shape(t)) for t in targets)


class ProfiledCostModel:
    """Per-layer times from profiles measured on ``reference``, scaled to other processors.

    ``profile_dir``: folder holding ``<model>.csv`` files (default: the profiles shipped for
    ``reference``). ``reference``: the processor they were measured on, a catalogue name or a
    :class:`Processor`.
    """

    def __init__(
        self,
        profile_dir: str | Path | None = None,
        reference: str | Processor = "cpu-ref-2core",
        name: str = "profiled",
    ) -> None:
        from sfsim.costs.processors import catalogue

        if isinstance(reference, Processor):
            self.reference = reference
        elif reference in catalogue():
            self.reference = catalogue()[reference]
        else:
            known = ", ".join(sorted(catalogue()))
            raise InputError(f"unknown reference processor {reference!r}; known: {known}")
        self.name = name
        self.profile_dir = profile_dir
        if profile_dir is None:
            self._folder: Path | Traversable = shipped_profiles(self.reference.name)
        else:
            self._folder = Path(profile_dir)
            try:
                is_dir = self._folder.is_dir()
            except (OSError, ValueError) as exc:  # a name too long, a NUL byte
                raise InputError(f"cannot use profile folder {profile_dir!r}: {exc}") from None
            if not is_dir:
                raise InputError(f"profile folder {profile_dir} does not exist")
        self._tables: dict[str, dict[tuple[str, str, str], _OpTable] | None] = {}
        self._ref_cache: dict[tuple[Op, Workload], tuple[float, str]] = {}
        self._warned: set[str] = set()
        self._analytic = AnalyticCostModel()

    # ---- the CostModel protocol ---------------------------------------------------------------
    def flops(self, op: Op, work: Workload) -> float:
        return op_flops(op, work)

    def time_s(self, op: Op, work: Workload, proc: Processor) -> float:
        if not self.has_profile(work.arch.name):
            self._warn_once(
                work.arch.name,
                f"no profile for model {work.arch.name!r} in {self._folder}; "
                "using the analytic cost model (FLOPs / effective FLOP/s) for it",
            )
            return self._analytic.time_s(op, work, proc)
        ref_s, ref_dtype = self.reference_time_s(op, work)
        if ref_s == 0.0:
            return 0.0
        return ref_s * roofline_factor(op, work, self.reference, proc, ref_dtype)

    # ---- reference look-up ---------------------------------------------------------------------
    def has_profile(self, model: str) -> bool:
        return self._load(model) is not None

    def profile_meta(self, model: str) -> dict[str, object] | None:
        """The ``<model>.json`` sidecar (how the profile was measured), if there is one."""
        f = self._folder.joinpath(f"{model}.json")
        if not f.is_file():
            return None
        return _read_meta(f)

    def reference_time_s(self, op: Op, work: Workload) -> tuple[float, str]:
        """Seconds of ``op`` on the reference processor, and the dtype of the profile used."""
        key = (op, work)
        if key not in self._ref_cache:
            self._ref_cache[key] = self._lookup(op, work)
        return self._ref_cache[key]

    def _load(self, model: str) -> dict[tuple[str, str, str], _OpTable] | None:
        if model not in self._tables:
            f = self._folder.joinpath(f"{model}.csv")
            self._tables[model] = read_profile(_profile_text(f), str(f)) if f.is_file() else None
        return self._tables[model]

    def _lookup(self, op: Op, work: Workload) -> tuple[float, str]:
        tables = self._load(work.arch.name)
        assert tables is not None
        dtypes = {d for _, d, _ in tables}
        dtype = work.dtype if work.dtype in dtypes else "fp32" if "fp32" in dtypes else min(dtypes)
        if dtype != work.dtype:
            self._warn_once(
                f"{work.arch.name}/{work.dtype}",
                f"no {work.dtype} profile for {work.arch.name!r}; "
                f"scaling its {dtype} profile by the roofline model",
            )
        ref = Workload(work.arch, work.batch, work.seq, dtype, work.lora_rank, work.lora_targets)
        rank = work.lora_rank if work.lora_targets else 0
        if op in RANKED_OPS and rank > 0:
            keys = [k for k in tables if k[0] == op and k[1] == dtype and k[2]]
            if not keys:
                raise InputError(f"profile of {work.arch.name} has no {op} rows at rank > 0")
            wanted = "+".join(work.lora_targets)
            table_key = next((k for k in keys if k[2] == wanted), keys[0])
            table = tables[table_key]
            t = self._scaled_lookup(table, op, ref, rank)
            plain = tables.get((str(op), dtype, ""))
            if plain is not None:  # adapters never make a block cheaper (noise can say so)
                no_lora = Workload(work.arch, work.batch, work.seq, dtype, 0, ())
                base = self._scaled_lookup(plain, op, no_lora, 0)
                ratio = _adapter_width(work, work.lora_targets) / _adapter_width(
                    work, tuple(table_key[2].split("+"))
                )
                t = base + max(t - base, 0.0) * ratio
            return t, dtype
        if op in (Op.BLOCK_BWD_NO_INPUT_GRAD, Op.OPT_STEP):
            return 0.0, dtype  # nothing trains: no weight gradients, no optimizer state
        key = (str(op), dtype, "")
        if key not in tables:
            raise InputError(f"profile of {work.arch.name} has no {op} rows at rank 0")
        return self._scaled_lookup(tables[key], op, ref, 0), dtype

    def _scaled_lookup(self, table: _OpTable, op: Op, w: Workload, rank: int) -> float:
        """Interpolate inside the batch × seq box; outside, scale by the work ratio."""
        self._warn_if_far(table, op, w, rank)
        b = min(max(w.batch, table.batches[0]), table.batches[-1])
        s = min(max(w.seq, table.seqs[0]), table.seqs[-1])
        t = table.at_rank(rank, b, s) if rank else table.at(0, b, s)
        if (b, s) == (w.batch, w.seq):
            return t
        inside = Workload(w.arch, b, s, w.dtype, w.lora_rank, w.lora_targets)
        return t * _work_measure(op, w) / _work_measure(op, inside)

    def _warn_if_far(self, table: _OpTable, op: Op, w: Workload, rank: int) -> None:
        """Warn, once per model, op and axis, when a workload lies far outside the grid."""
        ranks = [r for r in table.by_rank if r > 0]
        axes = [("batch", w.batch, table.batches[0], table.batches[-1]),
                ("seq", w.seq, table.seqs[0], table.seqs[-1])]
        if rank > 0 and ranks:
            axes.append(("rank", rank, min(ranks), max(ranks)))
        for axis, x, lo, hi in axes:
            factor = max(x / hi, lo / x) if x > 0 else math.inf
            if factor > FAR_OUTSIDE:
                how = "along the LoRA overhead slope" if axis == "rank" else "by the work ratio"
                self._warn_once(
                    f"{w.arch.name}/{op}/{axis}",
                    f"{w.arch.name} {op}: {axis} {x} is {factor:.3g}x outside the profiled "
                    f"range {lo}..{hi} in {self._folder}; the time is extrapolated {how} and "
                    f"may be far off; profile that {axis} (sfsim profile) to measure it",
                )

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
