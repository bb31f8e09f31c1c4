"""Plain-torch transformer parts with LoRA adapters, built from a :class:`ModelArch` alone.

The profiler and the fidelity check run these modules; nothing is downloaded. Weights are random
but drawn at the architecture's own scale (normal, std 0.02, as GPT-2 and Llama initialise): with
unit-scale weights the LM head's logits explode, the softmax underflows into denormal numbers and
the CPU backward runs about ten times slower, which would corrupt every timing.

Two block families, each a pre-norm residual block ``x + attn(norm(x))`` then ``x + mlp(norm(x))``:

* **GPT-2**: LayerNorm; one fused ``h → 3h`` q/k/v projection with bias; causal attention through
  ``scaled_dot_product_attention`` (memory-efficient kernel, no ``s²`` matrix kept); output
  projection ``o``; MLP ``up`` (``h → 4h``), tanh-GELU, ``down``.
* **Llama**: RMSNorm; separate ``q``, ``k``, ``v`` without bias where ``k``/``v`` are ``h_kv`` wide
  (grouped-query attention, each key/value head shared by ``heads / kv_heads`` query heads);
  rotary position embeddings on q and k; SwiGLU MLP ``down(silu(gate(x)) · up(x))``.

LoRA (Hu et al., 2021) adds ``(α/r)·B·A·x`` beside a frozen projection ``W·x``; ``A`` is
``r × d_in`` (Kaiming-uniform), ``B`` is ``d_out × r`` (zeros: training starts from the base model).
Target names are those of :data:`sfsim.costs.arch.LORA_TARGETS`; on GPT-2's fused projection the
q, k and v adapters add into their third of the output. Base weights are frozen; A and B train.

The embedding (token, plus learned positions for GPT-2) and the head (final norm, LM head tied to
the token embedding, cross-entropy) complete a model for split training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sfsim.costs.arch import LORA_TARGETS, ModelArch

INIT_STD = 0.02
TORCH_DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}


class LoRA(nn.Module):
    """The trainable low-rank update ``(α/r)·B·A·x`` of one projection."""

    def __init__(self, d_in: int, d_out: int, rank: int, alpha: float = 32.0) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.empty(rank, d_in))
        self.b = nn.Parameter(torch.zeros(d_out, rank))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.a), self.b) * self.scale


class Projection(nn.Module):
    """A frozen linear map with optional LoRA adapters on slices of its output.

    ``slices`` names consecutive output slices (e.g. q, k, v of a fused projection); an adapter is
    made for each name in ``targets``.
    """

    def __init__(
        self,
        d_in: int,
        slices: Sequence[tuple[str, int]],
        targets: Sequence[str],
        rank: int,
        bias: bool,
    ) -> None:
        super().__init__()
        d_out = sum(width for _, width in slices)
        self.base = nn.Linear(d_in, d_out, bias=bias)
        self.base.requires_grad_(False)
        self.slices = list(slices)
        self.adapters = nn.ModuleDict(
            {name: LoRA(d_in, width, rank) for name, width in slices if name in targets and rank}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if not self.adapters:
            return y
        if len(self.slices) == 1:
            name = self.slices[0][0]
            return y + self.adapters[name](x) if name in self.adapters else y
        start = 0
        for name, width in self.slices:  # add each adapter into its slice of the fused output
            if name in self.adapters:
                y.narrow(-1, start, width).add_(self.adapters[name](x))
            start += width
        return y


def _check_targets(arch: ModelArch, targets: Sequence[str]) -> None:
    for t in targets:
        arch.projection_shape(t)  # raises a ValueError naming the valid targets


class RMSNorm(nn.Module):
    """Llama's root-mean-square norm (no mean subtraction, no bias)."""

    def __init__(self, width: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


class GPT2Block(nn.Module):
    """GPT-2 block: LayerNorm, fused-qkv causal attention, tanh-GELU MLP."""

    def __init__(self, arch: ModelArch, rank: int, targets: Sequence[str]) -> None:
        super().__init__()
        _check_targets(arch, targets)
        h, f = arch.hidden, arch.ffn
        self.n_heads = arch.n_heads
        self.ln1 = nn.LayerNorm(h)
        self.qkv = Projection(h, [("q", h), ("k", h), ("v", h)], targets, rank, bias=True)
        self.o = Projection(h, [("o", h)], targets, rank, bias=True)
        self.ln2 = nn.LayerNorm(h)
        self.up = Projection(h, [("up", f)], targets, rank, bias=True)
        self.down = Projection(f, [("down", h)], targets, rank, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(h, dim=-1)
        q, k, v = (t.view(b, s, self.n_heads, -1).transpose(1, 2) for t in (q, k, v))
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o(attn.transpose(1, 2).reshape(b, s, h))
        return x + self.down(F.gelu(self.up(self.ln2(x)), approximate="tanh"))


def rope_tables(seq: int, head_dim: int, theta: float = 500_000.0) -> torch.Tensor:
    """cos and sin of rotary angles, shape ``(2, seq, head_dim)`` (fp32)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(seq, dtype=torch.float32), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return torch.stack([angles.cos(), angles.sin()])


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (i, i + d/2) of ``x`` (b, heads, s, d) by the position's angles."""
    cos, sin = table[0].to(x.dtype), table[1].to(x.dtype)
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


class LlamaBlock(nn.Module):
    """Llama block: RMSNorm, grouped-query attention with RoPE, SwiGLU MLP."""

    def __init__(self, arch: ModelArch, rank: int, targets: Sequence[str]) -> None:
        super().__init__()
        _check_targets(arch, targets)
        h, f, kv = arch.hidden, arch.ffn, arch.kv_hidden
        self.n_heads, self.n_kv_heads, self.head_dim = arch.n_heads, arch.n_kv_heads, arch.head_dim
        self.norm1 = RMSNorm(h)
        self.q = Projection(h, [("q", h)], targets, rank, bias=False)
        self.k = Projection(h, [("k", kv)], targets, rank, bias=False)
        self.v = Projection(h, [("v", kv)], targets, rank, bias=False)
        self.o = Projection(h, [("o", h)], targets, rank, bias=False)
        self.norm2 = RMSNorm(h)
        self.gate = Projection(h, [("gate", f)], targets, rank, bias=False)
        self.up = Projection(h, [("up", f)], targets, rank, bias=False)
        self.down = Projection(f, [("down", h)], targets, rank, bias=False)
        self._rope: torch.Tensor | None = None

    def _table(self, seq: int) -> torch.Tensor:
        if self._rope is None or self._rope.shape[1] < seq:
            self._rope = rope_tables(seq, self.head_dim)
        return self._rope[:, :seq]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, h = x.shape
        y = self.norm1(x)
        q = self.q(y).view(b, s, self.n_heads, -1).transpose(1, 2)
        k = self.k(y).view(b, s, self.n_kv_heads, -1).transpose(1, 2)
        v = self.v(y).view(b, s, self.n_kv_heads, -1).transpose(1, 2)
        table = self._table(s)
        q, k = apply_rope(q, table), apply_rope(k, table)
        attn = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o(attn.transpose(1, 2).reshape(b, s, h))
        y = self.norm2(x)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


class Embedding(nn.Module):
    """Token embedding (plus learned positions for GPT-2); frozen."""

    def __init__(self, arch: ModelArch) -> None:
        super().__init__()
        self.tokens = nn.Embedding(arch.vocab, arch.hidden)
        self.positions = (
            nn.Embedding(arch.max_positions, arch.hidden) if arch.family == "gpt2" else None
        )
        self.requires_grad_(False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids)
        if self.positions is not None:
            x = x + self.positions(torch.arange(ids.shape[1], device=ids.device))
        return x


class Head(nn.Module):
    """Final norm, LM head (tied to the token embedding when the arch says so) and the loss."""

    def __init__(self, arch: ModelArch, embedding: Embedding | None = None) -> None:
        super().__init__()
        self.norm: nn.Module = (
            nn.LayerNorm(arch.hidden) if arch.family == "gpt2" else RMSNorm(arch.hidden)
        )
        if arch.tied_embeddings and embedding is not None:
            self.weight = embedding.tokens.weight
        else:
            self.weight = nn.Parameter(torch.empty(arch.vocab, arch.hidden))
            nn.init.normal_(self.weight, std=INIT_STD)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = F.linear(self.norm(x), self.weight)
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())


def init_weights(module: nn.Module) -> None:
    """Normal(0, 0.02) for frozen matrices and embeddings, zero biases; LoRA keeps its own init."""
    for name, p in module.named_parameters():
        if ".adapters." in f".{name}" or not p.dim():
            continue
        with torch.no_grad():
            if p.dim() >= 2:
                p.normal_(0.0, INIT_STD)
            elif name.endswith("bias"):
                p.zero_()


def make_block(
    arch: ModelArch, rank: int = 8, targets: Sequence[str] = ("q", "v"), dtype: str = "fp32"
) -> nn.Module:
    """One transformer block of ``arch`` with LoRA rank ``rank`` (0: no adapters) on ``targets``.

    Everything is cast to ``dtype`` (the shipped profiles are fp32); base weights are frozen.
    """
    if arch.family == "gpt2":
        block: nn.Module = GPT2Block(arch, rank, targets)
    elif arch.family == "llama":
        block = LlamaBlock(arch, rank, targets)
    else:  # pragma: no cover - Family is a closed Literal
        raise ValueError(f"unknown family {arch.family!r}")
    init_weights(block)
    block.requires_grad_(False)
    for adapter in block.modules():
        if isinstance(adapter, LoRA):
            adapter.requires_grad_(True)
    return block.to(TORCH_DTYPES[dtype])


def make_embedding_and_head(arch: ModelArch, dtype: str = "fp32") -> tuple[Embedding, Head]:
    """The frozen embedding and head of ``arch`` (head weight tied when the arch ties it)."""
    embedding = Embedding(arch)
    head = Head(arch, embedding)
    init_weights(embedding)
    init_weights(head)
    return embedding.to(TORCH_DTYPES[dtype]), head.to(TORCH_DTYPES[dtype])


def lora_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The trainable (LoRA) parameters of a module."""
    return [p for p in module.parameters() if p.requires_grad]


def valid_targets(arch: ModelArch) -> tuple[str, ...]:
    return LORA_TARGETS[arch.family]
