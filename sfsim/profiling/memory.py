"""Measured memory of a LoRA block, next to the analytic figures of :mod:`sfsim.costs.footprint`.

What a trainable block costs in memory besides its frozen weights is mostly what autograd *saves*
for the backward pass. ``torch.autograd.graph.saved_tensors_hooks`` sees every tensor as it is
saved; several saved tensors are often views of one buffer (q, k and v are slices of the fused
projection's output, a transposed weight is the weight), so bytes are counted once per storage.
Storages that belong to parameters (frozen weights, norm scales) are weights, not activations, and
are left out; so are tensors smaller than ``b·s`` elements' worth of nothing (none are dropped:
norm statistics and attention's log-sum-exp are counted, they are part of the formula).

Parameter bytes, LoRA bytes and Adam's state are read off the module and the optimizer after one
real step. :func:`memory_rows` returns one row per quantity with both figures and their ratio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sfsim.costs import footprint as fp
from sfsim.costs.arch import ModelArch
from sfsim.costs.base import Workload
from sfsim.profiling.blocks import TORCH_DTYPES, lora_parameters, make_block


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def saved_activation_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for ``module(x)``'s backward: once per storage, weights excluded."""
    weights = {_storage_key(p) for p in module.parameters()}
    weights |= {_storage_key(b) for b in module.buffers()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key not in weights and t.numel() > 0:
            seen[key] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x)
    del out
    return sum(seen.values())


def _bytes(params: Sequence[torch.Tensor]) -> int:
    return sum(p.numel() * p.element_size() for p in params)


@dataclass(frozen=True)
class MemoryRow:
    """One quantity of one block: measured on torch and predicted by footprint.py."""

    model: str
    quantity: str
    measured_bytes: int
    analytic_bytes: int

    @property
    def ratio(self) -> float:
        """analytic / measured (1.0 is exact)."""
        return self.analytic_bytes / self.measured_bytes if self.measured_bytes else float("nan")


def measure_block(
    arch: ModelArch,
    batch: int = 2,
    seq: int = 64,
    rank: int = 8,
    targets: tuple[str, ...] = ("q", "v"),
    dtype: str = "fp32",
    input_grad: bool = True,
) -> list[MemoryRow]:
    """Weights, adapters, Adam state and saved activations of one block of ``arch``.

    ``input_grad``: the block's input needs a gradient (any trainable block but the lowest).
    """
    torch.manual_seed(0)
    block = make_block(arch, rank, targets, dtype)
    work = Workload(arch, batch, seq, dtype, rank, targets)
    x = torch.randn(batch, seq, arch.hidden, dtype=TORCH_DTYPES[dtype]).requires_grad_(input_grad)
    frozen = [p for p in block.parameters() if not p.requires_grad]
    lora = lora_parameters(block)
    acts = saved_activation_bytes(block, x)
    opt_bytes = 0
    if lora:
        block(x).float().sum().backward()
        opt = torch.optim.Adam(lora)
        opt.step()
        opt_bytes = sum(
            v.numel() * v.element_size()
            for state in opt.state.values()
            for k, v in state.items()
            if k != "step"  # one scalar step counter per tensor: bookkeeping, not state
        )
    state = fp.adapter_state(work)
    rows = [
        MemoryRow(arch.name, "weight_bytes", _bytes(frozen), fp.block_weight_bytes(work)),
        MemoryRow(
            arch.name,
            "saved_act_bytes" if input_grad else "saved_act_bytes (lowest block)",
            acts,
            fp.block_saved_activation_bytes(work, input_grad=input_grad),
        ),
    ]
    if dtype != "fp32":  # adapters train in fp32 (footprint.adapter_state); only fp32 compares
        return rows
    return [
        *rows,
        MemoryRow(arch.name, "lora_bytes", _bytes(lora), state.adapters),
        MemoryRow(arch.name, "optimizer_bytes", opt_bytes, state.optimizer),
    ]


def measure_head(arch: ModelArch, batch: int = 2, seq: int = 16) -> MemoryRow:
    """Saved activations of the final norm, LM head and loss (weights excluded)."""
    from sfsim.profiling.blocks import make_embedding_and_head

    _, head = make_embedding_and_head(arch)
    x = torch.randn(batch, seq, arch.hidden, requires_grad=True)
    labels = torch.randint(0, arch.vocab, (batch, seq))

    class _WithLabels(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = head

        def forward(self, h: torch.Tensor) -> torch.Tensor:
            return self.head(h, labels)

    measured = saved_activation_bytes(_WithLabels(), x)
    work = Workload(arch, batch, seq)
    return MemoryRow(
        arch.name, "head_saved_act_bytes", measured, fp.head_saved_activation_bytes(work)
    )


def markdown_table(rows: list[MemoryRow]) -> str:
    lines = [
        "| model | quantity | measured bytes | analytic bytes | analytic/measured |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.quantity} | {r.measured_bytes:,} | {r.analytic_bytes:,} "
            f"| {r.ratio:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    """Print the memory table of docs/costs.md: ``python -m sfsim.profiling.memory``."""
    from sfsim.costs.arch import ARCHS

    torch.manual_seed(0)
    rows: list[MemoryRow] = []
    for name in ("gpt2", "llama-3.2-1b"):
        rows += measure_block(ARCHS[name], batch=4, seq=128, rank=8, targets=("q", "v"))
        lowest = measure_block(ARCHS[name], 4, 128, 8, ("q", "v"), input_grad=False)
        rows += [r for r in lowest if r.quantity.startswith("saved_act_bytes")]
        rows.append(measure_head(ARCHS[name], batch=4, seq=128))
    print("batch 4, seq 128, fp32, LoRA rank 8 on q and v\n")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
