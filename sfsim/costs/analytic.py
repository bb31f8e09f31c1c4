"""Analytic costs: FLOPs from the model's shape, time = FLOPs / effective FLOP/s.

This is the fallback and the cross-check for the profiled model. Its only processor input is the
effective throughput ``peak × efficiency``; it knows nothing of memory-bound kernels, launch
overheads or LoRA's small-matmul inefficiency, which is why measured profiles replace it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfsim.costs.base import Op, Processor, Workload

#: Adam does about this many FLOPs per parameter per step (moments, bias correction, update).
ADAM_FLOPS_PER_PARAM = 12.0


def op_flops(op: Op, w: Workload) -> float:
    """Analytic FLOPs of one operation (docs/model.md §8)."""
    a = w.arch
    dense = a.block_matmul_flops(w.batch, w.seq)
    attn = a.attention_flops(w.batch, w.seq)
    lora = a.lora_flops(w.batch, w.seq, w.lora_rank, w.lora_targets)
    match op:
        case Op.EMBED_FWD:
            return 0.0  # a gather and an add
        case Op.BLOCK_FWD:
            return dense + attn + lora
        case Op.BLOCK_FWD_FROZEN:
            return dense + attn
        case Op.BLOCK_BWD:
            return dense + 2.0 * attn + 2.0 * lora
        case Op.BLOCK_BWD_NO_INPUT_GRAD:
            # The q/k/v projections' input gradient is not needed at the lowest trainable block.
            h, kv, t = a.hidden, a.kv_hidden, w.tokens
            return dense - 2.0 * t * h * (h + 2 * kv) + 2.0 * attn + 1.5 * lora
        case Op.HEAD_FWD:
            return a.head_flops(w.batch, w.seq)
        case Op.HEAD_BWD:
            return a.head_flops(w.batch, w.seq)
        case Op.OPT_STEP:
            return ADAM_FLOPS_PER_PARAM * a.lora_params(w.lora_rank, w.lora_targets)
    raise ValueError(f"unknown op {op!r}")


@dataclass(frozen=True)
class AnalyticCostModel:
    """time = FLOPs / (peak × efficiency) of the processor at the workload's dtype."""

    name: str = "analytic"

    def flops(self, op: Op, work: Workload) -> float:
        return op_flops(op, work)

    def time_s(self, op: Op, work: Workload, proc: Processor) -> float:
        return op_flops(op, work) / proc.flops_per_s(work.dtype)
