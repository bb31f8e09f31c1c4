"""Transformer architectures, and what their shape alone tells us.

A model is an embedding, ``n_layers`` identical transformer blocks and an LM head. Everything the
simulator needs that does not depend on a processor follows from the shape: parameter counts,
floating-point operations per pass (docs/model.md §8), the bytes of a hidden state that
crosses a cut, and the size of LoRA adapters on the chosen target projections.

FLOP conventions: a matmul of (m×k)·(k×n) costs ``2·m·k·n``; causal attention is counted as the
full ``4·b·s²·h`` forward (what dense kernels compute). With frozen base weights the backward pass
only needs input gradients through the frozen matmuls (about the forward's matmul FLOPs), twice the
attention FLOPs, and the LoRA weight and input gradients (twice LoRA's forward).

Published sizes these shapes reproduce (tested): GPT-2 small 124M, medium 355M (Radford et al.,
2019, Hugging Face ``gpt2`` configs); Llama-3.2-1B 1.24B and 3B 3.21B (Meta model cards,
``config.json`` of meta-llama/Llama-3.2-1B and -3B).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Family = Literal["gpt2", "llama"]

DTYPE_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2}

#: LoRA target names understood for each family, mapped to (d_in, d_out) getters.
LORA_TARGETS: dict[str, tuple[str, ...]] = {
    "gpt2": ("q", "k", "v", "o", "up", "down"),
    "llama": ("q", "k", "v", "o", "gate", "up", "down"),
}


@dataclass(frozen=True)
class ModelArch:
    """The shape of a decoder-only transformer."""

    name: str
    family: Family
    n_layers: int
    hidden: int
    n_heads: int
    n_kv_heads: int
    ffn: int
    vocab: int
    max_positions: int
    tied_embeddings: bool = True
    source: str = ""

    @property
    def head_dim(self) -> int:
        return self.hidden // self.n_heads

    @property
    def kv_hidden(self) -> int:
        """Width of the key/value projections (grouped-query attention)."""
        return self.n_kv_heads * self.head_dim

    # ---- parameters -------------------------------------------------------------------------
    def block_params(self) -> int:
        h, f, kv = self.hidden, self.ffn, self.kv_hidden
        if self.family == "gpt2":
            # ln1, ln2 (weight+bias); qkv and o with bias; fc and proj with bias.
            return 4 * h + (3 * h * h + 3 * h) + (h * h + h) + (h * f + f) + (f * h + h)
        # llama: two RMSNorm weights, q/k/v/o without bias, SwiGLU gate/up/down without bias.
        return 2 * h + 2 * h * h + 2 * h * kv + 3 * h * f

    def embedding_params(self) -> int:
        pos = self.max_positions * self.hidden if self.family == "gpt2" else 0
        return self.vocab * self.hidden + pos

    def head_params(self) -> int:
        """Final norm plus the LM head (zero extra when tied to the embedding)."""
        norm = 2 * self.hidden if self.family == "gpt2" else self.hidden
        return norm + (0 if self.tied_embeddings else self.vocab * self.hidden)

    def total_params(self) -> int:
        return self.embedding_params() + self.n_layers * self.block_params() + self.head_params()

    # ---- LoRA ---------------------------------------------------------------------------------
    def projection_shape(self, target: str) -> tuple[int, int]:
        """(d_in, d_out) of a LoRA target projection."""
        h, f, kv = self.hidden, self.ffn, self.kv_hidden
        shapes = {
            "q": (h, h),
            "k": (h, kv),
            "v": (h, kv),
            "o": (h, h),
            "gate": (h, f),
            "up": (h, f),
            "down": (f, h),
        }
        if target not in LORA_TARGETS[self.family]:
            raise ValueError(
                f"LoRA target {target!r} does not exist in {self.family} blocks; "
                f"choose from {', '.join(LORA_TARGETS[self.family])}"
            )
        return shapes[target]

    def lora_params(self, rank: int, targets: Iterable[str]) -> int:
        """LoRA A and B parameters of one block: ``r·(d_in + d_out)`` per target."""
        return sum(rank * sum(self.projection_shape(t)) for t in targets)

    # ---- FLOPs (forward, per block) -----------------------------------------------------------
    def block_matmul_flops(self, batch: int, seq: int) -> float:
        """Forward FLOPs of the frozen dense projections of one block."""
        h, f, kv, tokens = self.hidden, self.ffn, self.kv_hidden, batch * seq
        if self.family == "gpt2":
            return 2.0 * tokens * (4 * h * h + 2 * h * f)
        return 2.0 * tokens * (2 * h * h + 2 * h * kv + 3 * h * f)

    def attention_flops(self, batch: int, seq: int) -> float:
        """Forward FLOPs of scores and weighted sum: ``4·b·s²·h``."""
        return 4.0 * batch * seq * seq * self.hidden

    def lora_flops(self, batch: int, seq: int, rank: int, targets: Iterable[str]) -> float:
        """Forward FLOPs of the LoRA A/B matmuls of one block."""
        return 2.0 * batch * seq * self.lora_params(rank, targets)

    def head_flops(self, batch: int, seq: int) -> float:
        """Forward FLOPs of the LM head projection (the softmax/loss is negligible beside it)."""
        return 2.0 * batch * seq * self.hidden * self.vocab


def _gpt2(name: str, layers: int, hidden: int, heads: int) -> ModelArch:
    return ModelArch(
        name=name,
        family="gpt2",
        n_layers=layers,
        hidden=hidden,
        n_heads=heads,
        n_kv_heads=heads,
        ffn=4 * hidden,
        vocab=50257,
        max_positions=1024,
        source="Radford et al. 2019; huggingface.co/openai-community/" + name + "/config.json",
    )


def _llama(name: str, layers: int, hidden: int, heads: int, kv_heads: int, ffn: int) -> ModelArch:
    return ModelArch(
        name=name,
        family="llama",
        n_layers=layers,
        hidden=hidden,
        n_heads=heads,
        n_kv_heads=kv_heads,
        ffn=ffn,
        vocab=128256,
        max_positions=131072,
        source="huggingface.co/meta-llama/" + name.replace("llama", "Llama") + "/config.json",
    )


ARCHS: dict[str, ModelArch] = {
    a.name: a
    for a in (
        _gpt2("gpt2", 12, 768, 12),
        _gpt2("gpt2-medium", 24, 1024, 16),
        _gpt2("gpt2-large", 36, 1280, 20),
        _llama("llama-3.2-1b", 16, 2048, 32, 8, 8192),
        _llama("llama-3.2-3b", 28, 3072, 24, 8, 8192),
    )
}
#: Friendlier aliases accepted in scenario files.
ALIASES: dict[str, str] = {"gpt2-small": "gpt2"}


def get_arch(name: str) -> ModelArch:
    key = ALIASES.get(name, name)
    if key not in ARCHS:
        known = ", ".join(sorted([*ARCHS, *ALIASES]))
        raise ValueError(f"unknown model architecture {name!r}; known: {known}")
    return ARCHS[key]
