"""Memory footprint of model parts: weights, adapters, gradients, optimizer state, activations.

All figures are bytes for one block (or the embedding / head) and one batch. They are analytic;
`sfsim profile` measures the same quantities on torch and the tests hold the two within 5%.

Saved activations (what autograd keeps for the backward pass of a block with frozen base weights
and LoRA adapters) are counted tensor by tensor, per token, and checked against torch's
``saved_tensors_hooks`` (one count per storage) within 5% (``tests/profiling``). A frozen matmul
keeps only its weight (no weight gradient is needed), so an activation is kept only where a
backward actually needs it. With ``G_in`` = the block input needs a gradient (every trainable block
but the lowest), ``G_att`` = ``G_in`` or a LoRA on q/k/v, ``G_mid`` = ``G_att`` or a LoRA on o:

=================================== ============== ===========================================
tensor (elements per token)          GPT-2          kept when
=================================== ============== ===========================================
norm-1 input + statistics            h + 2 (+1)     ``G_in`` (Llama's RMSNorm keeps 1 statistic)
norm-1 output                        h              LoRA on q, k or v (the adapters' input)
attention q, k, v                    3h / h + 2h_kv ``G_att`` (GPT-2: slices of the fused output)
attention output                     h              ``G_att`` (also the o adapter's input)
attention log-sum-exp (fp32)         heads          ``G_att``
norm-2 input + statistics            h + 2 (+1)     ``G_mid``
norm-2 output                        h              LoRA on up (GPT-2) or gate/up (Llama)
MLP pre-activation(s)                f / 3f         ``G_mid`` or a LoRA on the MLP input side
MLP activation output                f              LoRA on down (its input)
LoRA intermediate A·x                r              per target
=================================== ============== ===========================================

Llama's pre-activations are gate, SiLU(gate) and up; rotary embedding keeps its cos/sin tables
(``2·s·head_dim`` elements per batch). Everything is in the workload's dtype except the fp32
log-sum-exp; at 16 bits Llama's RMSNorm, which computes in fp32, keeps its input and statistic
in fp32. These counts assume the fused (flash / memory-efficient) attention kernel that
``scaled_dot_product_attention`` picks (no ``b·heads·s²`` matrix is kept);
``attention_scores_saved=True`` adds it for eager attention.
"""

from __future__ import annotations

from dataclasses import dataclass

from sfsim.costs.base import Workload

FP32 = 4
LABEL_BYTES_PER_TOKEN = 8  # int64 token ids sent with the boundary activations


@dataclass(frozen=True)
class AdapterState:
    """Bytes of one block's LoRA state while training."""

    adapters: int
    gradients: int
    optimizer: int

    @property
    def total(self) -> int:
        return self.adapters + self.gradients + self.optimizer


def block_weight_bytes(w: Workload) -> int:
    return w.arch.block_params() * w.dtype_bytes


def embedding_weight_bytes(w: Workload) -> int:
    return w.arch.embedding_params() * w.dtype_bytes


def head_weight_bytes(w: Workload) -> int:
    """Final norm and (untied) head; a tied head shares the embedding's bytes."""
    return w.arch.head_params() * w.dtype_bytes


def adapter_state(w: Workload, optimizer: str = "adam") -> AdapterState:
    """LoRA parameters, their gradients and optimizer state for one block.

    Adapters are trained in fp32 (the usual mixed-precision recipe keeps trainable parameters in
    fp32), so gradients are fp32 too; Adam keeps two fp32 moments per parameter, SGD none.
    """
    n = w.arch.lora_params(w.lora_rank, w.lora_targets)
    moments = {"adam": 2, "adamw": 2, "sgd": 0}[optimizer]
    return AdapterState(adapters=n * FP32, gradients=n * FP32, optimizer=moments * n * FP32)


def block_saved_activation_bytes(
    w: Workload, *, attention_scores_saved: bool = False, input_grad: bool = True
) -> int:
    """Bytes autograd keeps for one trainable block's backward (see the module docstring).

    ``input_grad=False`` is the lowest trainable block, whose input needs no gradient.
    """
    a = w.arch
    h, f, kv, heads = a.hidden, a.ffn, a.kv_hidden, a.n_heads
    targets = set(w.lora_targets) if w.lora_rank > 0 else set()
    llama = a.family == "llama"
    g_att = input_grad or bool(targets & {"q", "k", "v"})
    g_mid = g_att or "o" in targets
    mlp_in = {"gate", "up"} if llama else {"up"}
    stats = 1 if llama else 2
    per_token = 0
    per_batch = 0  # elements not proportional to tokens (rotary tables)
    lse = 0
    if input_grad:
        per_token += h + stats
    if targets & {"q", "k", "v"}:
        per_token += h
    if g_att:
        per_token += (h + 2 * kv if llama else 3 * h) + h
        lse = heads
        per_batch += 2 * w.seq * a.head_dim if llama else 0
    elif "o" in targets:
        per_token += h  # the o adapter's input, kept on its own when attention needs no grad
    if g_mid:
        per_token += h + stats
    if targets & mlp_in:
        per_token += h
    if not llama and (g_mid or "up" in targets):
        per_token += f  # GELU's input
    elif llama and (g_mid or mlp_in <= targets):
        per_token += 3 * f  # gate, SiLU(gate), up
    elif llama and targets & mlp_in:
        per_token += 2 * f if "gate" in targets else f  # only what the trainable branch needs
    if "down" in targets:
        per_token += f
    per_token += w.lora_rank * len(targets)
    total = (w.tokens * per_token + per_batch) * w.dtype_bytes + w.tokens * lse * FP32
    if llama and w.dtype_bytes < FP32:
        # RMSNorm computes in fp32 at 16-bit: it keeps its input and statistic in fp32.
        norms = int(input_grad) + int(g_mid)
        total += w.tokens * norms * (h + 1) * (FP32 - w.dtype_bytes)
    if attention_scores_saved:
        total += w.batch * heads * w.seq * w.seq * w.dtype_bytes
    return total


def stack_saved_activation_bytes(w: Workload, n_blocks: int, *, input_grad: bool) -> int:
    """Saved activations of ``n_blocks`` trainable blocks stacked on one another.

    Every block but the lowest passes a gradient to the block below; the lowest needs an input
    gradient only when its input comes from elsewhere (a server stack sends the cut gradient
    back: ``input_grad=True``; a device stack above the frozen embedding: ``False``).
    """
    if n_blocks <= 0:
        return 0
    lowest = block_saved_activation_bytes(w, input_grad=input_grad)
    return lowest + (n_blocks - 1) * block_saved_activation_bytes(w)


def head_saved_activation_bytes(w: Workload) -> int:
    """The LM head keeps its input and the fp32 logits for the cross-entropy backward."""
    return w.tokens * (w.arch.hidden * w.dtype_bytes + w.arch.vocab * FP32)


def boundary_bytes(w: Workload) -> int:
    """The hidden state leaving a block: ``b·s·h`` elements; what crosses a cut."""
    return w.tokens * w.arch.hidden * w.dtype_bytes


def label_bytes(w: Workload) -> int:
    return w.tokens * LABEL_BYTES_PER_TOKEN
