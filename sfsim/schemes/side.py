"""The server-side network of federated side-tuning (fedmobillm): its shape, FLOPs and memory.

Side-tuning trains a small network *beside* a frozen backbone instead of adapters *inside* it
(Ladder Side-Tuning, Sung et al., NeurIPS 2022): the backbone only runs forward, and the side
network reads the backbone's hidden states at a few tapped layers. In Fed MobiLLM (paper 001) the
backbones run on the devices and the side network on the server, fed from uploaded activations.

The paper's side network is not public, so this module fixes a documented assumption:

* width ``d = side_ratio × H`` (H: the hidden size of the scenario's model, the *reference*; LST's
  default reduction factor 8 gives ``side_ratio = 1/8``); head size as the reference's, at least
  one head; MLP width ``side_ratio × F``;
* one side block per tap, a transformer block of the reference family at width d; taps are
  ``taps`` backbone layers evenly spaced, the last layer included;
* per backbone kind and per tap, one alignment layer ``Linear(h_b → d)`` (Fed MobiLLM's layer-wise
  feature alignment, one set per backbone kind), added to the side stream before that tap's block;
* an up-projection ``Linear(d → H)``, then the reference model's frozen final norm and LM head
  (kept on the server, tied to the embedding matrix) and the loss.

Everything in the side network is trained (fp32 parameters, Adam), so its backward costs twice
its forward (input and weight gradients), except the alignment layers (their input is a frozen
activation: weight gradients only) and the frozen head (input gradient only). FLOPs are analytic
(docs/model.md §8); the head's time comes from the scenario's cost model.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sfsim.costs import ModelArch, Op, Workload
from sfsim.costs import footprint as fp
from sfsim.costs.analytic import ADAM_FLOPS_PER_PARAM
from sfsim.costs.base import CostModel, Processor


def tap_layers(n_layers: int, taps: int) -> list[int]:
    """``taps`` backbone layers (1-based), evenly spaced, the last layer included."""
    t = min(taps, n_layers)
    return sorted({round((i + 1) * n_layers / t) for i in range(t)})


def side_arch(ref: ModelArch, side_ratio: float, n_blocks: int) -> ModelArch:
    """The side network's blocks as a (narrow) model of the reference family."""
    d = max(1, round(side_ratio * ref.hidden))
    heads = max(1, d // ref.head_dim)
    return replace(
        ref, name=f"{ref.name}-side", n_layers=n_blocks, hidden=heads * ref.head_dim,
        n_heads=heads, n_kv_heads=min(ref.n_kv_heads, heads),
        ffn=max(1, round(side_ratio * ref.ffn)), source="side network (assumption)",
    )


@dataclass(frozen=True)
class SideNet:
    """The side network for one reference model, tap count and set of backbone kinds."""

    ref: ModelArch
    arch: ModelArch  # the side blocks
    backbone_hidden: dict[str, int]  # backbone kind -> its hidden size

    @property
    def width(self) -> int:
        return self.arch.hidden

    @property
    def taps(self) -> int:
        return self.arch.n_layers

    def align_params(self, kind: str) -> int:
        """One ``Linear(h_b → d)`` with bias per tap, for one backbone kind."""
        return self.taps * (self.backbone_hidden[kind] * self.width + self.width)

    def shared_params(self) -> int:
        """Side blocks and the up-projection (trained by every device's data)."""
        return self.taps * self.arch.block_params() + self.width * self.ref.hidden + self.ref.hidden

    def trainable_params(self) -> int:
        return self.shared_params() + sum(self.align_params(k) for k in self.backbone_hidden)

    def step_params(self, kind: str) -> int:
        """Parameters a batch from backbone ``kind`` updates."""
        return self.shared_params() + self.align_params(kind)

    # ---- one training step on a batch -----------------------------------------------------
    def fwd_flops(self, kind: str, batch: int, seq: int) -> float:
        """Alignment, side blocks and up-projection (the head is counted by the cost model)."""
        t = batch * seq
        align = 2.0 * t * self.taps * self.backbone_hidden[kind] * self.width
        blocks = self.taps * (self.arch.block_matmul_flops(batch, seq)
                              + self.arch.attention_flops(batch, seq))
        return align + blocks + 2.0 * t * self.width * self.ref.hidden

    def bwd_flops(self, kind: str, batch: int, seq: int) -> float:
        """Weight + input gradients of the side blocks and up-projection, weight gradients of
        the alignment layers, and an Adam step over the updated parameters."""
        t = batch * seq
        align = 2.0 * t * self.taps * self.backbone_hidden[kind] * self.width
        blocks = self.taps * 2.0 * (self.arch.block_matmul_flops(batch, seq)
                                    + self.arch.attention_flops(batch, seq))
        up = 4.0 * t * self.width * self.ref.hidden
        return align + blocks + up + ADAM_FLOPS_PER_PARAM * self.step_params(kind)

    def saved_activation_bytes(self, batch: int, seq: int, dtype: str) -> float:
        """What the step keeps for its backward: every side block trains all its matmuls (all
        projections counted as adapter targets), the side stream at the up-projection, and the
        head's input and fp32 logits. The tapped inputs are read from the cache, not copied."""
        targets = ("q", "k", "v", "o", "up", "down") if self.ref.family == "gpt2" else (
            "q", "k", "v", "o", "gate", "up", "down")
        w = Workload(self.arch, batch, seq, dtype, lora_rank=1, lora_targets=targets)
        blocks = self.taps * fp.block_saved_activation_bytes(w)
        up_in = batch * seq * self.width * w.dtype_bytes
        head = fp.head_saved_activation_bytes(Workload(self.ref, batch, seq, dtype))
        return float(blocks + up_in + head)

    def step_s(self, kind: str, batch: int, seq: int, dtype: str, cm: CostModel,
               proc: Processor) -> tuple[float, float, float, float]:
        """(forward s, backward s, forward FLOPs, backward FLOPs) of one training step."""
        w_ref = Workload(self.ref, batch, seq, dtype)
        rate = proc.flops_per_s(dtype)
        f_side, b_side = self.fwd_flops(kind, batch, seq), self.bwd_flops(kind, batch, seq)
        fwd_s = f_side / rate + cm.time_s(Op.HEAD_FWD, w_ref, proc)
        bwd_s = b_side / rate + cm.time_s(Op.HEAD_BWD, w_ref, proc)
        return (fwd_s, bwd_s, f_side + cm.flops(Op.HEAD_FWD, w_ref),
                b_side + cm.flops(Op.HEAD_BWD, w_ref))


def build_side_net(ref: ModelArch, backbones: dict[str, ModelArch], taps: int,
                   side_ratio: float) -> SideNet:
    """The side network for a fleet whose devices run ``backbones`` (kind -> arch)."""
    n = min(len(tap_layers(b.n_layers, taps)) for b in backbones.values())
    return SideNet(ref, side_arch(ref, side_ratio, n), {k: b.hidden for k, b in backbones.items()})
