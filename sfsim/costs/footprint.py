"""Memory footprint of model parts: weights, adapters, gradients, optimizer state, activations.

All figures are bytes for one block (or the embedding / head) and one batch. They are analytic;
`sfsim profile` measures the same quantities on torch and the tests hold the two within 5%.

Saved activations (what autograd keeps for the backward pass of a block with frozen base weights
and LoRA adapters) are counted tensor by tensor, per token, in the workload's dtype:

* GPT-2 block: the block input and LayerNorm-1 output (2h), q, k, v and the attention output
  (4h, kept by scaled-dot-product attention and by LoRA on ``o``), LayerNorm-2 input and output
  (2h), the MLP's pre-activation and GELU output (2f). Total ``8h + 2f`` per token.
* Llama block: the block input and RMSNorm-1 output (2h), q and the rotated q (2h), k, v and the
  rotated k (3·h_kv), the attention output and residual sum (2h), RMSNorm-2 output (h), gate, up,
  SiLU(gate) and their product (4f). Total ``7h + 3·h_kv + 4f`` per token.

plus, per LoRA target, the rank-r intermediate ``A·x`` (r per token). Frozen forward-only blocks keep
nothing. These counts assume a memory-efficient attention kernel (no b·s² score matrix saved);
``attention_scores_saved=True`` adds the ``b·heads·s²`` probabilities of eager attention.
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


def block_saved_activation_bytes(w: Workload, *, attention_scores_saved: bool = False) -> int:
    """Bytes autograd keeps for one trainable block's backward (see module docstring)."""
    a = w.arch
    h, f, kv = a.hidden, a.ffn, a.kv_hidden
    per_token = 8 * h + 2 * f if a.family == "gpt2" else 7 * h + 3 * kv + 4 * f
    per_token += w.lora_rank * len(w.lora_targets)
    total = w.tokens * per_token * w.dtype_bytes
    if attention_scores_saved:
        total += w.batch * a.n_heads * w.seq * w.seq * w.dtype_bytes
    return total


def head_saved_activation_bytes(w: Workload) -> int:
    """The LM head keeps its input and the fp32 logits for the cross-entropy backward."""
    return w.tokens * (w.arch.hidden * w.dtype_bytes + w.arch.vocab * FP32)


def boundary_bytes(w: Workload) -> int:
    """The hidden state leaving a block: ``b·s·h`` elements; what crosses a cut."""
    return w.tokens * w.arch.hidden * w.dtype_bytes


def label_bytes(w: Workload) -> int:
    return w.tokens * LABEL_BYTES_PER_TOKEN
