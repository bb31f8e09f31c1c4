"""The cost-model interface: how long an operation takes on a processor.

The engine never computes a time itself. A scheme describes each phase as a list of operations
(``Op``) on a ``Workload`` (model shape, batch, sequence, dtype, LoRA), and a ``CostModel`` turns
each operation into FLOPs and seconds on a given ``Processor``. Two implementations exist: the
analytic model (FLOPs / effective FLOP/s, `sfsim.costs.analytic`) and the profiled model, which
reads per-layer timings measured on real torch LoRA kernels and scales them to other processors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, runtime_checkable

from sfsim.costs.arch import DTYPE_BYTES, ModelArch


class Op(StrEnum):
    """One pass over one part of the model."""

    EMBED_FWD = "embed_fwd"
    BLOCK_FWD = "block_fwd"  # trainable block: autograd on, activations saved
    BLOCK_FWD_FROZEN = "block_fwd_frozen"  # frozen, forward-only (no autograd)
    BLOCK_BWD = "block_bwd"  # LoRA weight grads + gradient w.r.t. the block input
    BLOCK_BWD_NO_INPUT_GRAD = "block_bwd_no_input_grad"  # the lowest trainable block
    HEAD_FWD = "head_fwd"  # final norm + LM head + loss
    HEAD_BWD = "head_bwd"  # gradient through the frozen head to the last hidden state
    OPT_STEP = "opt_step"  # Adam step over one block's LoRA parameters


@dataclass(frozen=True)
class Workload:
    """What one pass processes: the model's shape and one batch."""

    arch: ModelArch
    batch: int
    seq: int
    dtype: str = "fp32"
    lora_rank: int = 8
    lora_targets: tuple[str, ...] = ("q", "v")

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def tokens(self) -> int:
        return self.batch * self.seq


@dataclass(frozen=True)
class Processor:
    """A compute device class: peak throughput, memory bandwidth and capacity, power."""

    name: str
    kind: str  # "device" or "server"
    peak_flops: dict[str, float]  # dtype -> FLOP/s
    mem_bw_bytes_s: float
    memory_bytes: float
    efficiency: float  # achieved fraction of peak on transformer blocks (assumption unless cited)
    source: str = ""
    notes: str = field(default="", compare=False)
    #: Watts drawn while computing and while idle (sfsim/energy.py); cited or marked an
    #: assumption in ``power_source``.
    power_busy_w: float = 0.0
    power_idle_w: float = 0.0
    power_source: str = field(default="", compare=False)

    def flops_per_s(self, dtype: str) -> float:
        """Effective FLOP/s at a dtype (falls back to fp32 when the dtype is not listed)."""
        peak = self.peak_flops.get(dtype, self.peak_flops["fp32"])
        return peak * self.efficiency


@runtime_checkable
class CostModel(Protocol):
    """Turns operations into FLOPs and seconds."""

    @property
    def name(self) -> str: ...

    def flops(self, op: Op, work: Workload) -> float: ...

    def time_s(self, op: Op, work: Workload, proc: Processor) -> float: ...
