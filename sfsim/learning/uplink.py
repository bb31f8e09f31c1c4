"""What the server learns from: the uplinked activations after ``training.compression``.

The simulation charges compression's bytes and time (`sfsim.compression`); here the proxy sees
its effect on the values, so a scenario can ask whether sending less costs accuracy:

* ``activations: fp16 | int8`` rounds the hidden state that crosses the cut (split schemes,
  splitfrozen) or each tapped hidden state (fedmobillm): fp16 by a cast, int8 by per-token absmax
  quantisation (scale = max |x| / 127 over the token's vector, as the byte count assumes). As in
  the simulation, a model already at that precision or narrower is sent as it is (no change).
  The backward treats the rounding as the identity (straight-through), so device adapters below
  the cut receive the server's gradient with respect to the values it was sent.
* ``tokens: pooled`` (fedmobillm) sends one token per sample, the mean of its tokens at each tap;
  ``tokens: topk`` keeps the same positions at every tap, those whose hidden state at the deepest
  tap has the largest norm (our choice of score: the simulation only counts tokens), in order.
  ``keep_tokens`` is a share of ``model.seq_len``: the proxy keeps
  ``max(1, round(keep_tokens / model.seq_len × learning.seq_len))`` of its shorter sequences.
* ``layers: sampled`` (fedmobillm) gives the side network ``sampled_taps`` taps (`n_taps`).

The same transform applies when the held-out set is evaluated: the server-side model only ever
sees what the uplink carries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sfsim import compression
from sfsim.costs.arch import DTYPE_BYTES
from sfsim.scenario import Scenario

#: int8 levels on each side of zero.
INT8_LEVELS = 127.0


def quantize(x: torch.Tensor, mode: str) -> torch.Tensor:
    """``x`` rounded to fp16 or to per-token int8 (absmax over the last dimension), with the
    identity as its gradient (straight-through)."""
    if mode == "fp16":
        q = x.half().float()
    elif mode == "int8":
        v = x.detach().double()  # float64: a tiny vector's scale is not flushed to zero
        amax = v.abs().amax(dim=-1, keepdim=True)
        scale = torch.where(amax > 0, amax / INT8_LEVELS, torch.ones_like(amax))
        q = (torch.round(v / scale).clamp(-INT8_LEVELS, INT8_LEVELS) * scale).to(x.dtype)
    else:
        raise ValueError(f"unknown quantisation {mode!r}")
    return x + (q - x).detach()


@dataclass(frozen=True)
class Uplink:
    """The compression the proxy's server side sees, resolved for the proxy's sequence length."""

    quant: str | None = None  # "fp16" | "int8" when it changes the values; None: exact
    tokens: str = "all"  # "all" | "topk" | "pooled"
    keep: int = 0  # tokens kept with "topk"

    @classmethod
    def of(cls, s: Scenario, proxy_seq_len: int) -> Uplink:
        c = s.training.compression
        mode = c.activations
        quant = (mode if mode != "none" and compression.QUANT_BYTES[mode]
                 < DTYPE_BYTES[s.model.dtype] else None)
        keep = 0
        if c.tokens == "topk":
            share = compression.kept_tokens(c, s.model.seq_len) / s.model.seq_len
            keep = min(proxy_seq_len, max(1, round(share * proxy_seq_len)))
        return cls(quant, c.tokens, keep)

    @property
    def exact(self) -> bool:
        return self.quant is None and self.tokens == "all"

    def at_cut(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden state a split device sends (quantisation only: split schemes refuse token
        selection)."""
        return x if self.quant is None else quantize(x, self.quant)

    def taps(self, tapped: list[torch.Tensor]) -> list[torch.Tensor]:
        """fedmobillm's tapped hidden states as uploaded: tokens selected, then quantised."""
        if self.tokens == "pooled":
            tapped = [t.mean(dim=1, keepdim=True) for t in tapped]
        elif self.tokens == "topk":
            score = tapped[-1].norm(dim=-1)  # (batch, seq): the deepest tap's token norms
            idx = torch.topk(score, self.keep, dim=1).indices.sort(dim=1).values
            gather = idx.unsqueeze(-1).expand(-1, -1, tapped[0].shape[-1])
            tapped = [t.gather(1, gather) for t in tapped]
        return tapped if self.quant is None else [quantize(t, self.quant) for t in tapped]


def n_taps(s: Scenario) -> int:
    """The side network's taps: ``fedmobillm.taps``, or ``compression.sampled_taps``."""
    return compression.taps(s.training.compression, s.training.fedmobillm.taps)
